"""Hardware profiles: how a model is timed for one kind of device.

A profile is a TOML file (hardware_profiles/NAME.toml) validated on load into a frozen
`Profile`. Unknown keys, wrong types and impossible values raise `ProfileError` naming the
file, the key and what is allowed.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from edgenas.errors import ProfileError
from edgenas.settings import schema
from edgenas.settings.schema import INTERNAL, allowed, read_toml

GRAPH_OPTIMIZATION_LEVELS = ("disabled", "basic", "extended", "all")
MEASURED_ON = ("host", "agent", "calibrated")
PRECISIONS = ("fp32", "int8")
STATISTICS = ("median", "p90")
LABELS = {"host": "host-measured", "agent": "device-measured", "calibrated": "predicted"}


def _positive(v: Any) -> bool:
    return v >= 1


def _non_negative(v: Any) -> bool:
    return v >= 0


@dataclass(frozen=True)
class Profile:
    """How a model is timed (or only checked) for one kind of device. The fields are the schema of
    a profile file (`edgenas.settings.schema`): type, default and what is allowed, in one place.

    measured_on: "host" (this machine, whatever `target` says: labelled host-measured), "agent"
    (an `edgenas agent` on the device at `agent_url`: device-measured) or "calibrated" (timed on
    this machine with these settings, then mapped to the device by the fitted `calibration`
    model: predicted). A graph-only `calibration` predicts the same on every host; an optional
    `host_calibration` (fitted with host timings) refines it on a host with the CPU it was fitted
    on. `timing = false` profiles have only limits (microcontrollers); the keys
    marked "timed" are required unless `timing = false`.
    """

    name: str = field(
        metadata=allowed(
            lambda v: re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", v) is not None,
            "a plain name: letters, digits, '.', '_' and '-' (it names run directories)",
        )
    )
    description: str = ""
    target: str = field(default="", metadata=allowed(None, "a string naming the device"))
    measured_on: str = field(
        default="host", metadata=allowed(lambda v: v in MEASURED_ON, f"one of {list(MEASURED_ON)}")
    )
    agent_url: str = field(
        default="",
        metadata=allowed(
            lambda v: v == "" or v.startswith("http://"), "an http://HOST:PORT address of an edgenas agent"
        ),
    )
    token_file: str = field(default="", metadata=allowed(None, "the path of a file holding the agent's shared secret"))
    calibration: str = field(
        default="", metadata=allowed(None, "the path of a calibration file (edgenas calibrate writes one)")
    )
    host_calibration: str = field(
        default="",
        metadata=allowed(
            None,
            "the path of a host-timing calibration file, used instead of `calibration` on a host with the CPU "
            "it was fitted on",
        ),
    )
    energy_calibration: str = field(
        default="",
        metadata=allowed(
            None,
            "the path of a calibration file that predicts energy per inference in mJ from the graph (edgenas "
            "calibrate writes one from a file with an energy_mj column)",
        ),
    )
    timing: bool = True
    execution_providers: tuple[str, ...] = field(
        default=("CPUExecutionProvider",),
        metadata=allowed(
            lambda v: bool(v) and all(v), "a non-empty list of onnxruntime execution provider names", timed=True
        ),
    )
    intra_op_threads: int = field(
        default=0, metadata=allowed(_non_negative, "an integer >= 0 (0 lets onnxruntime choose)", timed=True)
    )
    inter_op_threads: int = field(
        default=0, metadata=allowed(_non_negative, "an integer >= 0 (0 lets onnxruntime choose)", timed=True)
    )
    spinning: bool = field(default=True, metadata=allowed(None, "true or false (onnxruntime's thread spinning)"))
    cpu_cores: tuple[int, ...] = field(
        default=(), metadata=allowed(lambda v: all(c >= 0 for c in v), "a list of CPU core numbers (empty: no pinning)")
    )
    graph_optimization_level: str = field(
        default="all",
        metadata=allowed(lambda v: v in GRAPH_OPTIMIZATION_LEVELS, f"one of {list(GRAPH_OPTIMIZATION_LEVELS)}"),
    )
    batch_size: int = field(default=1, metadata=allowed(_positive, "an integer >= 1", timed=True))
    precision: str = field(default="fp32", metadata=allowed(lambda v: v in PRECISIONS, f"one of {list(PRECISIONS)}"))
    warmup_runs: int = field(default=10, metadata=allowed(_non_negative, "an integer >= 0"))
    timed_runs: int = field(default=40, metadata=allowed(_positive, "an integer >= 1"))
    sessions: int = field(default=3, metadata=allowed(_positive, "an integer >= 1 (fresh onnxruntime sessions)"))
    min_timed_ms: float = field(
        default=0.0,
        metadata=allowed(
            _non_negative,
            "a number >= 0 (ms: the sessions keep taking turns until their timed runs last this long together, "
            "up to 10 x timed_runs each)",
        ),
    )
    spread_threshold: float = field(
        default=0.1, metadata=allowed(lambda v: v > 0, "a number > 0 (relative spread of session medians)")
    )
    statistic: str = field(default="median", metadata=allowed(lambda v: v in STATISTICS, f"one of {list(STATISTICS)}"))
    max_params: int | None = field(default=None, metadata=allowed(_positive, "an integer >= 1"))
    max_model_bytes: int | None = field(default=None, metadata=allowed(_positive, "an integer >= 1"))
    max_latency_ms: float | None = field(default=None, metadata=allowed(lambda v: v > 0, "a number > 0"))
    max_peak_ram_bytes: int | None = field(
        default=None, metadata=allowed(_positive, "an integer >= 1 (bytes of SRAM for the tensor arena and runtime)")
    )
    max_flash_bytes: int | None = field(
        default=None, metadata=allowed(_positive, "an integer >= 1 (bytes of flash for the model and runtime)")
    )
    ram_headroom_bytes: int = field(
        default=0, metadata=allowed(_non_negative, "an integer >= 0 (RAM kept for the runtime, stack and app)")
    )
    flash_headroom_bytes: int = field(
        default=0, metadata=allowed(_non_negative, "an integer >= 0 (flash kept for the runtime and app code)")
    )
    source_path: str = field(default="", metadata=INTERNAL)

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
        for key in ("host_calibration", "energy_calibration", "max_peak_ram_bytes", "max_flash_bytes"):
            if not data[key]:
                del data[key]  # added later: unset, agents of before still accept the settings
        for key in ("ram_headroom_bytes", "flash_headroom_bytes"):
            if not data[key]:
                del data[key]
        data["execution_providers"] = list(self.execution_providers)
        data["cpu_cores"] = list(self.cpu_cores)
        return data

    @property
    def has_energy(self) -> bool:
        """Does this profile predict energy per inference (an `energy_calibration`)?"""
        return bool(self.energy_calibration)

    def calibration_path(self, which: str = "calibration") -> Path:
        """The resolved path of `calibration` (or `host_calibration`, `energy_calibration`), relative
        to the profile file."""
        base = Path(self.source_path).parent if self.source_path else Path.cwd()
        return (base / getattr(self, which)).resolve()

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
        for which in ("calibration", "host_calibration", "energy_calibration"):
            if self.measured_on == "calibrated" and getattr(self, which):
                try:
                    parts[which] = hashlib.sha256(self.calibration_path(which).read_bytes()).hexdigest()
                except OSError:
                    parts[which] = "missing"
        blob = json.dumps(parts, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def parse_profile(data: dict[str, Any], source: str) -> Profile:
    """Validate a parsed TOML table into a `Profile`; `source` names the file in errors."""
    data = {k: v for k, v in data.items() if v is not None or k not in schema.keys(Profile)}
    profile = schema.from_table(Profile, data, source, ProfileError, source_path=source)
    if profile.timing:
        for f in fields(Profile):
            if f.metadata.get("timed") and f.name not in data:
                raise ProfileError(f"{source}: missing key '{f.name}' ({f.metadata['allowed']})")
    if profile.measured_on == "agent" and not profile.agent_url:
        raise ProfileError(f'{source}: measured_on = "agent" needs agent_url (http://HOST:PORT of an edgenas agent)')
    for which in ("host_calibration", "energy_calibration"):
        if getattr(profile, which) and profile.measured_on != "calibrated":
            raise ProfileError(f'{source}: {which} needs measured_on = "calibrated"')
    if profile.measured_on == "calibrated" and not profile.calibration:
        raise ProfileError(
            f'{source}: measured_on = "calibrated" needs calibration (a file written by edgenas calibrate)'
        )
    return profile


def load_profile_file(path: str | os.PathLike[str]) -> Profile:
    path = Path(path)
    return parse_profile(read_toml(path, "profile", ProfileError), str(path))


def profile_dirs() -> list[Path]:
    """Where named profiles are looked up, first match wins.

    $EDGENAS_PROFILE_DIR (if set), then the source checkout's hardware_profiles/, then the copy
    packaged inside the wheel.
    """
    dirs = []
    env = os.environ.get("EDGENAS_PROFILE_DIR")
    if env:
        dirs.append(Path(env))
    here = Path(__file__).resolve().parents[1]  # the edgenas package
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
            f"unknown profile '{name_or_path}'; available profiles: {names} (or give the path of a profile .toml file)"
        )
    return load_profile_file(found[name_or_path])
