"""Hardware profiles: how a model is timed for one kind of device.

A profile is a TOML file (hardware_profiles/NAME.toml) validated on load into a frozen
`Profile`. Unknown keys, wrong types and impossible values raise `ProfileError` naming the
file, the key and what is allowed.
"""

from __future__ import annotations

import hashlib
import json
import os
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edgenas.errors import ProfileError

GRAPH_OPTIMIZATION_LEVELS = ("disabled", "basic", "extended", "all")
MEASURED_ON = ("host",)
PRECISIONS = ("fp32",)
STATISTICS = ("median", "p90")


@dataclass(frozen=True)
class Profile:
    """Settings for timing an ONNX model under onnxruntime.

    `measured_on = "host"` means the numbers come from the machine edgenas runs on, whatever
    `target` names; every latency taken with such a profile is labelled host-measured.
    """

    name: str
    description: str
    target: str
    measured_on: str
    execution_providers: tuple[str, ...]
    intra_op_threads: int
    inter_op_threads: int
    graph_optimization_level: str
    batch_size: int
    precision: str
    warmup_runs: int
    timed_runs: int
    statistic: str
    source_path: str = ""

    @property
    def latency_label(self) -> str:
        """Where this profile's latencies come from, for every place they are shown."""
        if self.measured_on == "host":
            return "host-measured"
        return self.measured_on

    def settings(self) -> dict[str, Any]:
        """The settings that determine a measurement (no file path)."""
        data = asdict(self)
        data.pop("source_path")
        data["execution_providers"] = list(self.execution_providers)
        return data

    def fingerprint(self) -> str:
        """Hash of the timing settings and the onnxruntime version."""
        import onnxruntime

        blob = json.dumps(
            {"settings": self.settings(), "onnxruntime": onnxruntime.__version__}, sort_keys=True
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


# key -> (python type, check, what is allowed)
def _positive(v: int) -> bool:
    return v >= 1


def _non_negative(v: int) -> bool:
    return v >= 0


_FIELDS: dict[str, tuple[type, Any, str]] = {
    "name": (str, lambda v: bool(v.strip()), "a non-empty string"),
    "description": (str, None, "a string"),
    "target": (str, None, "a string naming the device"),
    "measured_on": (str, lambda v: v in MEASURED_ON, f"one of {list(MEASURED_ON)}"),
    "execution_providers": (
        list,
        lambda v: bool(v) and all(isinstance(p, str) and p for p in v),
        "a non-empty list of onnxruntime execution provider names",
    ),
    "intra_op_threads": (int, _non_negative, "an integer >= 0 (0 lets onnxruntime choose)"),
    "inter_op_threads": (int, _non_negative, "an integer >= 0 (0 lets onnxruntime choose)"),
    "graph_optimization_level": (
        str,
        lambda v: v in GRAPH_OPTIMIZATION_LEVELS,
        f"one of {list(GRAPH_OPTIMIZATION_LEVELS)}",
    ),
    "batch_size": (int, _positive, "an integer >= 1"),
    "precision": (str, lambda v: v in PRECISIONS, f"one of {list(PRECISIONS)}"),
    "warmup_runs": (int, _non_negative, "an integer >= 0"),
    "timed_runs": (int, _positive, "an integer >= 1"),
    "statistic": (str, lambda v: v in STATISTICS, f"one of {list(STATISTICS)}"),
}
_OPTIONAL = {"description": "", "target": "", "measured_on": "host", "statistic": "median"}


def parse_profile(data: dict[str, Any], source: str) -> Profile:
    """Validate a parsed TOML table into a `Profile`; `source` names the file in errors."""
    unknown = sorted(set(data) - set(_FIELDS))
    if unknown:
        raise ProfileError(
            f"{source}: unknown key(s) {', '.join(unknown)}; allowed keys are "
            f"{', '.join(_FIELDS)}"
        )
    values: dict[str, Any] = {}
    for key, (typ, check, allowed) in _FIELDS.items():
        if key not in data:
            if key in _OPTIONAL:
                values[key] = _OPTIONAL[key]
                continue
            raise ProfileError(f"{source}: missing key '{key}' ({allowed})")
        value = data[key]
        # bool is an int subclass in Python; a profile saying `batch_size = true` is wrong.
        if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
            raise ProfileError(
                f"{source}: key '{key}' is {type(value).__name__} {value!r}; it must be {allowed}"
            )
        if check is not None and not check(value):
            raise ProfileError(f"{source}: key '{key}' = {value!r} is not allowed; it must be {allowed}")
        values[key] = tuple(value) if typ is list else value
    return Profile(**values, source_path=source)


def load_profile_file(path: str | os.PathLike[str]) -> Profile:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ProfileError(f"cannot read profile file {path}: {exc.strerror or exc}") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"{path}: not valid TOML ({exc}); fix the file's syntax") from exc
    return parse_profile(data, str(path))


def profile_dirs() -> list[Path]:
    """Where named profiles are looked up, first match wins.

    $EDGENAS_PROFILE_DIR (if set), then the source checkout's hardware_profiles/, then the copy
    packaged inside the wheel.
    """
    dirs = []
    env = os.environ.get("EDGENAS_PROFILE_DIR")
    if env:
        dirs.append(Path(env))
    here = Path(__file__).resolve().parent
    dirs.append(here.parent / "hardware_profiles")
    dirs.append(here / "_data" / "hardware_profiles")
    return [d for d in dirs if d.is_dir()]


def available_profiles() -> dict[str, Path]:
    """Name -> file of every profile found, earlier directories shadowing later ones."""
    found: dict[str, Path] = {}
    for d in profile_dirs():
        for f in sorted(d.glob("*.toml")):
            found.setdefault(f.stem, f)
    return found


def load_profile(name_or_path: str) -> Profile:
    """Load a profile by name (cpu-arm) or by path to a .toml file."""
    if name_or_path.endswith(".toml") or os.sep in name_or_path:
        return load_profile_file(name_or_path)
    found = available_profiles()
    if name_or_path not in found:
        names = ", ".join(sorted(found)) or "(none found)"
        raise ProfileError(
            f"unknown profile '{name_or_path}'; available profiles: {names} "
            "(or give the path of a profile .toml file)"
        )
    profile = load_profile_file(found[name_or_path])
    return profile
