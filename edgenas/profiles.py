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
MEASURED_ON = ("host", "agent", "calibrated")
PRECISIONS = ("fp32", "int8")
STATISTICS = ("median", "p90")
LABELS = {"host": "host-measured", "agent": "device-measured", "calibrated": "predicted"}


@dataclass(frozen=True)
class Profile:
    """How a model is timed (or only checked) for one kind of device.

    measured_on: "host" (this machine, whatever `target` says: labelled host-measured), "agent"
    (an `edgenas agent` on the device at `agent_url`: device-measured) or "calibrated" (timed on
    this machine with these settings, then mapped to the device by the fitted `calibration`
    model: predicted). `timing = false` profiles have only limits (microcontrollers).
    """

    name: str
    description: str
    target: str
    measured_on: str
    agent_url: str
    token_file: str
    calibration: str
    timing: bool
    execution_providers: tuple[str, ...]
    intra_op_threads: int
    inter_op_threads: int
    spinning: bool
    cpu_cores: tuple[int, ...]
    graph_optimization_level: str
    batch_size: int
    precision: str
    warmup_runs: int
    timed_runs: int
    sessions: int
    min_timed_ms: float
    spread_threshold: float
    statistic: str
    max_params: int | None
    max_model_bytes: int | None
    max_latency_ms: float | None
    source_path: str = ""

    @property
    def latency_label(self) -> str:
        """Where this profile's latencies come from, for every place they are shown."""
        if not self.timing:
            return "not timed"
        return LABELS[self.measured_on]

    def settings(self) -> dict[str, Any]:
        """Every setting (no file path), JSON-ready."""
        data = asdict(self)
        data.pop("source_path")
        data["execution_providers"] = list(self.execution_providers)
        data["cpu_cores"] = list(self.cpu_cores)
        return data

    def calibration_path(self) -> Path:
        base = Path(self.source_path).parent if self.source_path else Path.cwd()
        return (base / self.calibration).resolve()

    def fingerprint(self, identity: str | None = None) -> str:
        """Hash of the settings, the onnxruntime version and who measures (this host's name and
        CPU unless `identity` names an agent); for calibrated profiles, the calibration too."""
        import onnxruntime

        if identity is None:
            import platform

            identity = f"host:{platform.node()}:{platform.processor() or platform.machine()}"
        settings = self.settings()
        if not settings["min_timed_ms"]:
            del settings["min_timed_ms"]  # added later: off, it keeps the fingerprints (and caches) of before
        parts: dict[str, Any] = {"settings": settings, "onnxruntime": onnxruntime.__version__, "who": identity}
        if self.measured_on == "calibrated" and self.calibration:
            try:
                parts["calibration"] = hashlib.sha256(self.calibration_path().read_bytes()).hexdigest()
            except OSError:
                parts["calibration"] = "missing"
        blob = json.dumps(parts, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _positive(v: Any) -> bool:
    return v >= 1


def _non_negative(v: Any) -> bool:
    return v >= 0


REQUIRED = object()
TIMING_REQUIRED = object()  # required unless timing = false

# key -> (python type, check, what is allowed, default)
_FIELDS: dict[str, tuple[type, Any, str, Any]] = {
    "name": (str, lambda v: bool(v.strip()), "a non-empty string", REQUIRED),
    "description": (str, None, "a string", ""),
    "target": (str, None, "a string naming the device", ""),
    "measured_on": (str, lambda v: v in MEASURED_ON, f"one of {list(MEASURED_ON)}", "host"),
    "agent_url": (str, lambda v: v == "" or v.startswith("http://"), "an http://HOST:PORT address of an edgenas agent", ""),
    "token_file": (str, None, "the path of a file holding the agent's shared secret", ""),
    "calibration": (str, None, "the path of a calibration file (edgenas calibrate writes one)", ""),
    "timing": (bool, None, "true or false", True),
    "execution_providers": (
        list,
        lambda v: bool(v) and all(isinstance(p, str) and p for p in v),
        "a non-empty list of onnxruntime execution provider names",
        TIMING_REQUIRED,
    ),
    "intra_op_threads": (int, _non_negative, "an integer >= 0 (0 lets onnxruntime choose)", TIMING_REQUIRED),
    "inter_op_threads": (int, _non_negative, "an integer >= 0 (0 lets onnxruntime choose)", TIMING_REQUIRED),
    "spinning": (bool, None, "true or false (onnxruntime's thread spinning)", True),
    "cpu_cores": (
        list,
        lambda v: all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in v),
        "a list of CPU core numbers (empty: no pinning)",
        [],
    ),
    "graph_optimization_level": (
        str, lambda v: v in GRAPH_OPTIMIZATION_LEVELS, f"one of {list(GRAPH_OPTIMIZATION_LEVELS)}", "all"
    ),
    "batch_size": (int, _positive, "an integer >= 1", TIMING_REQUIRED),
    "precision": (str, lambda v: v in PRECISIONS, f"one of {list(PRECISIONS)}", "fp32"),
    "warmup_runs": (int, _non_negative, "an integer >= 0", 10),
    "timed_runs": (int, _positive, "an integer >= 1", 40),
    "sessions": (int, _positive, "an integer >= 1 (fresh onnxruntime sessions)", 3),
    "min_timed_ms": (
        float, lambda v: v >= 0,
        "a number >= 0 (ms: the sessions keep taking turns until their timed runs last this long together, "
        "up to 10 x timed_runs each)",
        0.0,
    ),
    "spread_threshold": (float, lambda v: v > 0, "a number > 0 (relative spread of session medians)", 0.1),
    "statistic": (str, lambda v: v in STATISTICS, f"one of {list(STATISTICS)}", "median"),
    "max_params": (int, _positive, "an integer >= 1", None),
    "max_model_bytes": (int, _positive, "an integer >= 1", None),
    "max_latency_ms": (float, lambda v: v > 0, "a number > 0", None),
}


def parse_profile(data: dict[str, Any], source: str) -> Profile:
    """Validate a parsed TOML table into a `Profile`; `source` names the file in errors."""
    unknown = sorted(set(data) - set(_FIELDS))
    if unknown:
        raise ProfileError(
            f"{source}: unknown key(s) {', '.join(unknown)}; allowed keys are "
            f"{', '.join(_FIELDS)}"
        )
    timing = data.get("timing", True)
    values: dict[str, Any] = {}
    for key, (typ, check, allowed, default) in _FIELDS.items():
        if key not in data or (data[key] is None and default is None):
            if default is REQUIRED or (default is TIMING_REQUIRED and timing is not False):
                raise ProfileError(f"{source}: missing key '{key}' ({allowed})")
            if default is TIMING_REQUIRED:
                default = {"execution_providers": ["CPUExecutionProvider"], "batch_size": 1}.get(key, 0)
            value = default
        else:
            value = data[key]
            ok_type = isinstance(value, typ) and not (typ in (int, float) and isinstance(value, bool))
            if typ is float and isinstance(value, int) and not isinstance(value, bool):
                ok_type, value = True, float(value)
            if not ok_type:
                raise ProfileError(
                    f"{source}: key '{key}' is {type(value).__name__} {value!r}; it must be {allowed}"
                )
            if check is not None and not check(value):
                raise ProfileError(f"{source}: key '{key}' = {value!r} is not allowed; it must be {allowed}")
        values[key] = tuple(value) if isinstance(value, list) else value
    if values["measured_on"] == "agent" and not values["agent_url"]:
        raise ProfileError(f"{source}: measured_on = \"agent\" needs agent_url (http://HOST:PORT of an edgenas agent)")
    if values["measured_on"] == "calibrated" and not values["calibration"]:
        raise ProfileError(
            f"{source}: measured_on = \"calibrated\" needs calibration (a file written by edgenas calibrate)"
        )
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
    return load_profile_file(found[name_or_path])
