"""Timing an ONNX model under onnxruntime: the part that runs where the model is timed.

Imports only onnxruntime, numpy and the standard library (plus edgenas.errors), so it runs in
the timing worker process and in the on-device agent, where torch is not installed.

Method: k fresh sessions (`sessions`) x n timed runs (`timed_runs`) after `warmup_runs`
warm-up runs each; every run is timed on its own (perf_counter_ns) and the raw samples kept.
The sessions take turns (one run each per round), and the rounds go on until the timed runs
last `min_timed_ms` together (at most 10 x `timed_runs` rounds), so a burst of interference from
elsewhere on the machine lands on a few runs of every session, not on all runs of one or two,
and the medians stay put.
The reported median is the median of the session medians, p90 is over all samples, and the
spread is (max - min) of the session medians over their median. If the spread exceeds
`spread_threshold`, the whole measurement is repeated once; if it is still above, the result is
flagged `unstable`.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from typing import Any

import numpy as np

from edgenas.errors import MeasurementError, ModelFileError

_LEVELS = {
    "disabled": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}


def machine_info() -> dict[str, str]:
    import onnxruntime

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
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


def check_providers(providers: list[str], profile_name: str) -> None:
    import onnxruntime as ort

    available = ort.get_available_providers()
    missing = [p for p in providers if p not in available]
    if missing:
        raise MeasurementError(
            f"profile '{profile_name}' asks for execution provider(s) {missing}, but this "
            f"onnxruntime build offers only {available}; install the onnxruntime package that "
            "provides them or choose another profile"
        )


def make_session(model: bytes | str, settings: dict[str, Any]):
    import onnxruntime as ort

    providers = list(settings["execution_providers"])
    check_providers(providers, settings.get("name", "?"))
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = settings["intra_op_threads"]
    opts.inter_op_num_threads = settings["inter_op_threads"]
    opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, _LEVELS[settings["graph_optimization_level"]])
    opts.log_severity_level = 3
    spinning = "1" if settings.get("spinning", True) else "0"
    opts.add_session_config_entry("session.intra_op.allow_spinning", spinning)
    opts.add_session_config_entry("session.inter_op.allow_spinning", spinning)
    try:
        session = ort.InferenceSession(model, sess_options=opts, providers=providers)
    except Exception as exc:  # onnxruntime raises its own exception types for bad graphs
        where = model if isinstance(model, str) else "the model"
        raise ModelFileError(f"onnxruntime cannot load {where}: {exc}") from exc
    active = session.get_providers()
    if not active or active[0] != providers[0]:
        raise MeasurementError(
            f"profile '{settings.get('name')}' asked for {providers[0]} but the session runs on "
            f"{active}; refusing to report a measurement from the wrong provider"
        )
    return session


def check_model_file(model: bytes | str, batch_size: int, max_input_bytes: int | None = None) -> None:
    """Refuse, before any session is created, a model that refers to external data files (it
    would make onnxruntime read files from this machine's disk) or whose declared inputs need
    more than `max_input_bytes` at `batch_size`. Needs the onnx package; where it is missing
    (a board with only onnxruntime), the worker's private model directory and `input_feed`'s
    own size check cover both."""
    try:
        import onnx
    except ImportError:
        return
    try:
        proto = onnx.load_from_string(model) if isinstance(model, bytes) else onnx.load(model, load_external_data=False)
    except Exception:
        return  # not ONNX at all: onnxruntime refuses it with its own message

    def tensors(graph):
        yield from graph.initializer
        for sparse in graph.sparse_initializer:
            yield sparse.values
            yield sparse.indices
        for node in graph.node:
            for attr in node.attribute:
                if attr.HasField("t"):
                    yield attr.t
                yield from attr.tensors
                for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                    yield from tensors(sub)

    for t in tensors(proto.graph):
        if t.data_location == onnx.TensorProto.EXTERNAL or len(t.external_data):
            where = next((e.value for e in t.external_data if e.key == "location"), "?")
            raise ModelFileError(
                f"tensor '{t.name}' keeps its data in an external file ('{where}'); models with external data "
                "are refused: send one file with the weights inside it"
            )
    if max_input_bytes is not None:
        weights = {t.name for t in proto.graph.initializer}
        for inp in proto.graph.input:
            if inp.name in weights or not inp.type.HasField("tensor_type"):
                continue
            dims = [
                d.dim_value if d.dim_value > 0 else (batch_size if i == 0 else 1)
                for i, d in enumerate(inp.type.tensor_type.shape.dim)
            ]
            _check_input_size(inp.name, dims, 4, max_input_bytes)


def _check_input_size(name: str, shape: list[int], itemsize: int, max_input_bytes: int | None) -> None:
    need = int(np.prod(shape, dtype=np.float64)) * itemsize
    if max_input_bytes is not None and need > max_input_bytes:
        raise ModelFileError(
            f"input '{name}' of shape {shape} needs {need / 2**20:,.0f} MiB, over the limit of "
            f"{max_input_bytes / 2**20:,.0f} MiB for one input (the agent's --max-input-mb)"
        )


def input_feed(session, batch_size: int, seed: int = 0, max_input_bytes: int | None = None) -> dict[str, np.ndarray]:
    """Random float32 inputs of the model's shape, with a dynamic batch axis set to `batch_size`;
    ModelFileError, before anything is allocated, for an input over `max_input_bytes`."""
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
        _check_input_size(inp.name, shape, 4, max_input_bytes)
        feed[inp.name] = rng.standard_normal(shape).astype(np.float32)
    return feed


def _one_pass(model: bytes | str, settings: dict[str, Any], deadline: float | None) -> tuple[list[list[float]], str]:
    k, n = settings["sessions"], settings["timed_runs"]
    min_ns = float(settings.get("min_timed_ms", 0.0)) * 1e6
    sessions = [make_session(model, settings) for _ in range(k)]
    provider = sessions[0].get_providers()[0]
    feeds = [input_feed(s, settings["batch_size"], max_input_bytes=settings.get("_max_input_bytes")) for s in sessions]
    samples: list[list[float]] = [[] for _ in range(k)]
    try:
        for session, feed in zip(sessions, feeds):
            for _ in range(settings["warmup_runs"]):
                session.run(None, feed)
                _check_deadline(deadline, settings)
        timed_ns = 0
        rounds = 0
        while rounds < n or (timed_ns < min_ns and rounds < 10 * n):
            for session, feed, out in zip(sessions, feeds, samples):
                t0 = time.perf_counter_ns()
                session.run(None, feed)
                dt = time.perf_counter_ns() - t0
                timed_ns += dt
                out.append(dt / 1e6)
            rounds += 1
            _check_deadline(deadline, settings)
    except MeasurementError:
        raise
    except Exception as exc:
        raise MeasurementError(f"onnxruntime failed while running the model: {exc}") from exc
    finally:
        del sessions
    return samples, provider


def _check_deadline(deadline: float | None, settings: dict[str, Any]) -> None:
    if deadline is not None and time.perf_counter() > deadline:
        raise MeasurementError(f"timing took longer than the {settings['_timeout_s']:g} s allowed")


def time_model(
    model: bytes | str, settings: dict[str, Any], timeout_s: float | None = None, max_input_bytes: int | None = None
) -> dict[str, Any]:
    """Measure `model` (ONNX bytes or path) with profile `settings`; returns plain numbers.
    A model with external data, or (given `max_input_bytes`) an input over that size, is refused
    before a session is created (`check_model_file`)."""
    check_model_file(model, settings["batch_size"], max_input_bytes)
    deadline = None if timeout_s is None else time.perf_counter() + timeout_s
    settings = {**settings, "_timeout_s": timeout_s or 0, "_max_input_bytes": max_input_bytes}
    threshold = settings.get("spread_threshold", 0.1)
    repeated = False
    sessions, provider = _one_pass(model, settings, deadline)
    spread = _spread(sessions)
    if spread > threshold:
        repeated = True
        sessions, provider = _one_pass(model, settings, deadline)
        spread = _spread(sessions)
    medians = [statistics.median(s) for s in sessions]
    flat = [x for s in sessions for x in s]
    return {
        "median_ms": statistics.median(medians),
        "p90_ms": float(np.percentile(np.asarray(flat), 90)),
        "mean_ms": statistics.fmean(flat),
        "min_ms": min(flat),
        "max_ms": max(flat),
        "runs": len(flat),
        "sessions": len(sessions),
        "session_medians_ms": medians,
        "spread": spread,
        "repeated": repeated,
        "unstable": spread > threshold,
        "warmup_runs": settings["warmup_runs"],
        "batch_size": settings["batch_size"],
        "provider": provider,
        "machine": machine_info(),
        "pinned_cores": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else [],
        "samples_ms": flat,
    }


def _spread(sessions: list[list[float]]) -> float:
    medians = [statistics.median(s) for s in sessions]
    mid = statistics.median(medians)
    return (max(medians) - min(medians)) / mid if mid > 0 else 0.0
