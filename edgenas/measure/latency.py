"""Timing an ONNX model under onnxruntime exactly as a profile says.

Warm-up runs first, then each timed run is measured on its own (perf_counter_ns) and the raw
samples are kept. The session must really use the execution provider the profile asks for: a
silent fallback to another provider would be a wrong measurement, so it is an error.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from edgenas.errors import MeasurementError, ModelFileError
from edgenas.profiles import Profile

_LEVELS = {
    "disabled": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}


@dataclass(frozen=True)
class LatencyStats:
    median_ms: float
    p90_ms: float
    mean_ms: float
    min_ms: float
    max_ms: float
    runs: int
    warmup_runs: int
    batch_size: int
    provider: str
    profile: str
    measured_on: str  # "host": this machine, whatever device the profile targets
    label: str  # "host-measured" etc., shown next to every number
    machine: dict[str, str] = field(default_factory=dict)
    samples_ms: tuple[float, ...] = ()

    def statistic(self, name: str) -> float:
        return self.p90_ms if name == "p90" else self.median_ms

    def to_json(self, with_samples: bool = False) -> dict:
        data = asdict(self)
        data["samples_ms"] = list(self.samples_ms) if with_samples else None
        if not with_samples:
            data.pop("samples_ms")
        return data


def machine_info() -> dict[str, str]:
    import onnxruntime

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "host": platform.node(),
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "system": f"{platform.system()} {platform.release()} {platform.machine()}",
        "onnxruntime": onnxruntime.__version__,
    }


def percentile(samples: list[float], q: float) -> float:
    """Linear-interpolation percentile, q in [0, 100]."""
    return float(np.percentile(np.asarray(samples), q))


def check_providers(profile: Profile) -> None:
    """MeasurementError unless this onnxruntime build has every provider the profile names."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    missing = [p for p in profile.execution_providers if p not in available]
    if missing:
        raise MeasurementError(
            f"profile '{profile.name}' asks for execution provider(s) {missing}, but this "
            f"onnxruntime build offers only {available}; install the onnxruntime package that "
            "provides them or choose another profile"
        )


def make_session(model: bytes | str, profile: Profile):
    import onnxruntime as ort

    check_providers(profile)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = profile.intra_op_threads
    opts.inter_op_num_threads = profile.inter_op_threads
    opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, _LEVELS[profile.graph_optimization_level])
    opts.log_severity_level = 3
    try:
        session = ort.InferenceSession(model, sess_options=opts, providers=list(profile.execution_providers))
    except Exception as exc:  # onnxruntime raises its own exception types for bad graphs
        where = model if isinstance(model, str) else "the model"
        raise ModelFileError(f"onnxruntime cannot load {where}: {exc}") from exc
    active = session.get_providers()
    if not active or active[0] != profile.execution_providers[0]:
        raise MeasurementError(
            f"profile '{profile.name}' asked for {profile.execution_providers[0]} but the session "
            f"runs on {active}; refusing to report a measurement from the wrong provider"
        )
    return session


def input_feed(session, batch_size: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Random float32 inputs of the model's shape, with dynamic axes set to `batch_size`."""
    rng = np.random.default_rng(seed)
    feed = {}
    for inp in session.get_inputs():
        if inp.type != "tensor(float)":
            raise MeasurementError(f"input '{inp.name}' has type {inp.type}; only float32 inputs are supported")
        shape = []
        for i, dim in enumerate(inp.shape):
            if isinstance(dim, int) and dim > 0:
                shape.append(dim)
            elif i == 0:
                shape.append(batch_size)
            else:
                raise MeasurementError(
                    f"input '{inp.name}' has a dynamic dimension {dim!r} at axis {i}; only the batch "
                    "axis may be dynamic. Export the model with a fixed input size"
                )
        feed[inp.name] = rng.standard_normal(shape).astype(np.float32)
    return feed


def measure_latency(model: bytes | str, profile: Profile, timeout_s: float | None = None) -> LatencyStats:
    """Time `model` (ONNX bytes or a file path) under `profile` on this machine.

    With `timeout_s`, a measurement whose runs add up to more than that raises
    MeasurementError (checked between runs: one run that never returns is not interrupted)."""
    session = make_session(model, profile)
    feed = input_feed(session, profile.batch_size)
    start = time.perf_counter()
    samples: list[float] = []
    try:
        for i in range(profile.warmup_runs + profile.timed_runs):
            t0 = time.perf_counter_ns()
            session.run(None, feed)
            if i >= profile.warmup_runs:
                samples.append((time.perf_counter_ns() - t0) / 1e6)
            if timeout_s is not None and time.perf_counter() - start > timeout_s:
                raise MeasurementError(
                    f"timing took longer than {timeout_s:g} s ({i + 1} of "
                    f"{profile.warmup_runs + profile.timed_runs} runs done)"
                )
    except MeasurementError:
        raise
    except Exception as exc:
        raise MeasurementError(f"onnxruntime failed while running the model: {exc}") from exc
    return LatencyStats(
        median_ms=statistics.median(samples),
        p90_ms=percentile(samples, 90),
        mean_ms=statistics.fmean(samples),
        min_ms=min(samples),
        max_ms=max(samples),
        runs=len(samples),
        warmup_runs=profile.warmup_runs,
        batch_size=profile.batch_size,
        provider=session.get_providers()[0],
        profile=profile.name,
        measured_on=profile.measured_on,
        label=profile.latency_label,
        machine=machine_info(),
        samples_ms=tuple(samples),
    )
