"""Latency of an ONNX model under a hardware profile, from wherever the profile says.

- host: timed on this machine, in a separate worker process pinned to the profile's cores
  (`edgenas.hardware.worker`), labelled host-measured.
- agent: sent to an `edgenas agent` on the device, labelled device-measured.
- calibrated: timed on this machine, then mapped to the device by the profile's calibration
  model (`edgenas calibrate`), labelled predicted. A graph-only calibration gives the same number
  on any host (the host time is still taken and kept as `host_median_ms`); the profile's
  `host_calibration`, where this host has the CPU it was fitted on, uses the host time too.
Results are cached by (graph hash, profile fingerprint): the graph hash ignores weight values,
which do not change onnxruntime's work, so a network measured once is never measured again.
"""

from __future__ import annotations

import atexit
import hashlib
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from edgenas.hardware.profiles import Profile
from edgenas.hardware.timing import check_providers as _check_providers
from edgenas.hardware.timing import input_feed, machine_info  # noqa: F401
from edgenas.hardware.timing import make_session as _make_session


@dataclass(frozen=True)
class LatencyStats:
    median_ms: float  # median of the session medians (the prediction, for calibrated profiles)
    p90_ms: float
    mean_ms: float
    min_ms: float
    max_ms: float
    runs: int
    warmup_runs: int
    batch_size: int
    provider: str
    profile: str
    measured_on: str  # host | agent | calibrated
    label: str  # host-measured | device-measured | predicted: shown next to every number
    sessions: int = 1
    session_medians_ms: tuple[float, ...] = ()
    spread: float = 0.0
    repeated: bool = False
    unstable: bool = False
    precision: str = "fp32"
    machine: dict[str, str] = field(default_factory=dict)
    pinned_cores: tuple[int, ...] = ()
    host_median_ms: float | None = None  # calibrated profiles: what this host measured
    cached: bool = False
    samples_ms: tuple[float, ...] = ()
    prediction: str = ""  # calibrated profiles: "calibration", or "outside the fit (...)" and what was done
    calibration: str = ""  # calibrated profiles: which calibration file predicted (its name)
    outside_fit: tuple[str, ...] = ()  # work groups the calibration never saw (the number is rough)
    energy_mj: float | None = None  # profiles with an energy calibration: predicted energy per inference
    energy_prediction: str = ""  # how energy_mj was predicted ("calibration", or "outside the fit (...)")

    def statistic(self, name: str) -> float:
        return self.p90_ms if name == "p90" else self.median_ms

    def to_json(self, with_samples: bool = False) -> dict[str, Any]:
        data = asdict(self)
        data["session_medians_ms"] = list(self.session_medians_ms)
        data["pinned_cores"] = list(self.pinned_cores)
        data["outside_fit"] = list(self.outside_fit)
        if with_samples:
            data["samples_ms"] = list(self.samples_ms)
        else:
            data.pop("samples_ms")
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "LatencyStats":
        data = dict(data)
        for key in ("session_medians_ms", "pinned_cores", "samples_ms", "outside_fit"):
            data[key] = tuple(data.get(key) or ())
        return cls(**data)


def outside_fit_note(latency: "LatencyStats | dict[str, Any] | None") -> str:
    """'' for a measured latency or a prediction inside its calibration's fit; else one sentence
    saying which work the calibration never saw, for every place a latency is shown."""
    if latency is None:
        return ""
    data = latency.to_json() if isinstance(latency, LatencyStats) else latency
    groups = data.get("outside_fit") or []
    how = data.get("prediction") or ""
    if not groups and not how.startswith("outside the fit"):
        return ""
    return how or f"outside the fit (the calibration pairs had no {', '.join(groups)} work)"


def check_providers(profile: Profile) -> None:
    """MeasurementError unless this onnxruntime build has every provider a host-timed profile names."""
    if profile.timing and profile.measured_on != "agent":
        _check_providers(list(profile.execution_providers), profile.name)


def make_session(model: bytes | str, profile: Profile):
    """An onnxruntime session configured as `profile` says (provider asserted)."""
    return _make_session(model, profile.settings())


def graph_hash(model: bytes) -> str:
    """Hash of the graph's structure: ops, attributes, shapes and dtypes, not weight values."""
    import onnx

    proto = onnx.load_from_string(model)
    for init in proto.graph.initializer:  # keep name, dims and dtype; drop the values
        for f in ("raw_data", "float_data", "int32_data", "int64_data", "double_data", "uint64_data"):
            init.ClearField(f)
    del proto.metadata_props[:]
    proto.doc_string = ""
    proto.producer_version = ""
    return hashlib.sha256(proto.SerializeToString(deterministic=True)).hexdigest()


def quantize_for_timing(model: bytes) -> bytes:
    """Static QDQ int8 version of `model`, calibrated on random inputs: its latency does not
    depend on the calibration, only on the int8 graph."""
    import onnxruntime as ort

    from edgenas.hardware.quantize import quantize_int8

    sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    return quantize_int8(model, [input_feed(sess, 4)])


class Measurer:
    """Measures models for profiles, with the latency cache. One per process is enough."""

    def __init__(self, use_cache: bool = True) -> None:
        from edgenas.hardware.worker import TimingWorker

        self.worker = TimingWorker()
        self.use_cache = use_cache
        self._cache = None
        self._agents: dict[str, Any] = {}
        self._calibrations: dict[str, Any] = {}

    @property
    def cache(self):
        if self._cache is None and self.use_cache:
            from edgenas.hardware.cache import LatencyCache

            self._cache = LatencyCache.default()
        return self._cache

    def _agent(self, profile: Profile):
        from edgenas.hardware.agent_client import AgentClient

        key = (profile.agent_url, profile.token_file)
        if key not in self._agents:
            self._agents[key] = AgentClient.for_profile(profile)
        return self._agents[key]

    def identity(self, profile: Profile) -> str | None:
        if profile.measured_on == "agent":
            return "agent:" + self._agent(profile).identity()
        return None

    def measure(self, model: bytes | str, profile: Profile, timeout_s: float | None = None) -> LatencyStats | None:
        """Latency of `model` (bytes or path) under `profile`; None for a profile without timing."""
        if not profile.timing:
            return None
        if isinstance(model, str):
            with open(model, "rb") as fh:
                model = fh.read()
        fingerprint = profile.fingerprint(self.identity(profile))
        key = graph_hash(model)
        if self.cache is not None:
            hit = self.cache.get(key, fingerprint)
            if hit is not None:
                return replace(LatencyStats.from_json(hit), cached=True)
        timed = quantize_for_timing(model) if profile.precision == "int8" else model
        settings = profile.settings()
        if profile.measured_on == "agent":
            raw = self._agent(profile).measure(timed, settings, timeout_s)
        else:
            raw = self.worker.measure(timed, settings, timeout_s)
        stats = LatencyStats(
            median_ms=raw["median_ms"],
            p90_ms=raw["p90_ms"],
            mean_ms=raw["mean_ms"],
            min_ms=raw["min_ms"],
            max_ms=raw["max_ms"],
            runs=raw["runs"],
            warmup_runs=raw["warmup_runs"],
            batch_size=raw["batch_size"],
            provider=raw["provider"],
            profile=profile.name,
            measured_on=profile.measured_on,
            label=profile.latency_label,
            sessions=raw["sessions"],
            session_medians_ms=tuple(raw["session_medians_ms"]),
            spread=raw["spread"],
            repeated=raw["repeated"],
            unstable=raw["unstable"],
            precision=profile.precision,
            machine=raw["machine"],
            pinned_cores=tuple(raw["pinned_cores"]),
            samples_ms=tuple(raw["samples_ms"]),
        )
        if profile.measured_on == "calibrated":
            stats = self._predict(profile, model, stats)
        if self.cache is not None and not stats.unstable:
            self.cache.put(key, fingerprint, stats.to_json(with_samples=True))
        return stats

    def _calibration(self, profile: Profile):
        """The calibration that predicts for `profile` on this host: its `host_calibration` where
        this host has the CPU that one was fitted on, else its `calibration`."""
        chosen = None
        for which in ("host_calibration", "calibration"):
            if not getattr(profile, which):
                continue
            path = str(profile.calibration_path(which))
            chosen = self._load(path)
            if chosen.applies_here():
                return chosen, Path(path).name
        return chosen, Path(path).name  # does not apply here: predict_model says why

    def _load(self, path: str):
        """A calibration file, read once per measurer."""
        from edgenas.hardware.calibration import Calibration

        if path not in self._calibrations:
            self._calibrations[path] = Calibration.load(path)
        return self._calibrations[path]

    def graph_only_ms(self, model: bytes, profile: Profile, known: dict | None = None) -> float | None:
        """The latency `measure` would gate on (the profile's statistic), known from the graph
        alone: a calibrated profile whose calibration here predicts without host timing, with the
        median as its statistic (a p90 needs the host's spread). None where timing is needed.
        The search tells the controller this, as it tells it the parameter budget. `known`: graph
        features already read for this model (`features`), shared with the energy prediction."""
        if not self.predicts_from_graph(profile):
            return None
        cal = self._calibration(profile)[0]
        return cal.predict_explained(None, features(model, cal.fold_constants, known))[0]

    def predicts_from_graph(self, profile: Profile) -> bool:
        """Does `graph_only_ms` know this profile's latency on this host?"""
        if not profile.timing or profile.measured_on != "calibrated" or profile.statistic != "median":
            return False
        cal, _ = self._calibration(profile)
        return cal is not None and not cal.uses_host

    def _predict(self, profile: Profile, model: bytes, host: LatencyStats) -> LatencyStats:
        cal, name = self._calibration(profile)
        ratio_p90 = host.p90_ms / host.median_ms if host.median_ms > 0 else 1.0
        cal.check_host()
        known: dict = {}
        feats = features(model, cal.fold_constants, known)
        predicted, how = cal.predict_explained(host.median_ms, feats)
        energy, energy_how = self._energy(profile, model, known)
        return replace(
            host,
            median_ms=predicted,
            p90_ms=predicted * ratio_p90,
            mean_ms=predicted,
            min_ms=predicted,
            max_ms=predicted * ratio_p90,
            host_median_ms=host.median_ms,
            samples_ms=(),
            prediction=how,
            calibration=name,
            outside_fit=tuple(cal.outside(feats, predicted)),
            energy_mj=energy,
            energy_prediction=energy_how,
        )

    def _energy(self, profile: Profile, model: bytes, known: dict | None = None) -> tuple[float | None, str]:
        """Predicted energy per inference (mJ) and how, for a profile with an energy calibration
        (`known`: graph features already read for this model)."""
        if not profile.energy_calibration:
            return None, ""
        cal = self._load(str(profile.calibration_path("energy_calibration")))
        return cal.predict_explained(None, features(model, cal.fold_constants, known))

    def graph_only_energy_mj(self, model: bytes, profile: Profile, known: dict | None = None) -> float | None:
        """Energy per inference (mJ) from the graph alone; None for a profile without energy data."""
        return self._energy(profile, model, known)[0]

    def close(self) -> None:
        self.worker.close()
        if self._cache is not None:
            self._cache.close()


def features(model: bytes, fold_constants: bool, known: dict | None = None) -> dict[str, float]:
    """The graph features of `model` (as exported, or as a constant-folding converter leaves it),
    read once per `known` (a dict the caller keeps for this model; None: read them now)."""
    from edgenas.hardware.calibration import graph_features

    if known is None:
        return graph_features(model, fold_constants)
    if fold_constants not in known:
        known[fold_constants] = graph_features(model, fold_constants)
    return known[fold_constants]


_DEFAULT: Measurer | None = None


def default_measurer() -> Measurer:
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = Measurer()
        atexit.register(_DEFAULT.close)
    return _DEFAULT


def measure_latency(model: bytes | str, profile: Profile, timeout_s: float | None = None) -> LatencyStats | None:
    """Latency of `model` under `profile` with the process's shared measurer and cache."""
    return default_measurer().measure(model, profile, timeout_s)


__all__ = [
    "LatencyStats",
    "Measurer",
    "check_providers",
    "graph_hash",
    "machine_info",
    "make_session",
    "measure_latency",
    "default_measurer",
    "outside_fit_note",
]
