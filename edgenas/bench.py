"""Latency of ONNX files under hardware profiles (the library side of `edgenas bench`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgenas.errors import ModelFileError
from edgenas.measure.latency import measure_latency
from edgenas.profiles import load_profile


def check_onnx_file(path: str) -> None:
    """Raise ModelFileError unless `path` is a readable, valid ONNX model."""
    import onnx

    p = Path(path)
    if not p.is_file():
        raise ModelFileError(f"'{path}' does not exist or is not a file; give the path of an .onnx model")
    try:
        model = onnx.load(str(p), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError and friends
        raise ModelFileError(f"'{path}' is not an ONNX model (it does not parse: {exc})") from exc
    if not model.graph.node and not model.graph.input:
        raise ModelFileError(f"'{path}' is not an ONNX model (no graph in it)")
    try:
        onnx.checker.check_model(model)
    except Exception as exc:
        raise ModelFileError(f"'{path}' is not a valid ONNX model: {exc}") from exc


def bench_models(models: list[str], profiles: list[str]) -> list[dict[str, Any]]:
    """Every model under every profile; all inputs are checked before anything is timed."""
    loaded = [load_profile(p) for p in profiles]
    for m in models:
        check_onnx_file(m)
    results = []
    for m in models:
        for profile in loaded:
            stats = measure_latency(m, profile)
            results.append({"model": m, **stats.to_json(with_samples=True)})
    return results
