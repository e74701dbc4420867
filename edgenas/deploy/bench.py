"""Latency of ONNX files, or of a run's candidates, under hardware profiles (`edgenas bench`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgenas.errors import ModelFileError
from edgenas.hardware.latency import Measurer, default_measurer
from edgenas.hardware.profiles import Profile, load_profile


@dataclass(frozen=True)
class BenchTarget:
    label: str  # what the table calls it
    path: Path
    trial: int | None = None


def check_onnx_file(path: str) -> None:
    """Raise ModelFileError unless `path` is a readable, valid ONNX model."""
    import onnx

    p = Path(path)
    if not p.is_file():
        raise ModelFileError(
            f"'{path}' does not exist or is not a file; give the path of an .onnx model or a run directory"
        )
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


def expand_targets(items: list[str], top: int | None) -> list[BenchTarget]:
    """ONNX files as given; a run directory becomes its trained candidates (best first, top k)."""
    from edgenas.run.rundir import DB_NAME
    from edgenas.run.store import Store

    targets = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            if not (p / DB_NAME).is_file():
                raise ModelFileError(f"'{item}' is a directory but not an edgenas run directory (no {DB_NAME})")
            with Store(p / DB_NAME, readonly=True) as store:
                trials = store.top(top if top else 10**9)
            if not trials:
                raise ModelFileError(f"run directory '{item}' has no trained candidate yet")
            for t in trials:
                if not (p / str(t.onnx_path)).is_file():
                    raise ModelFileError(
                        f"the model of trial {t.id} ({p / str(t.onnx_path)}) is missing; the run directory is "
                        "incomplete (restore children/ or bench fewer candidates with --top)"
                    )
                targets.append(BenchTarget(f"{p.name}:trial {t.id}", p / str(t.onnx_path), t.id))
        else:
            check_onnx_file(item)
            targets.append(BenchTarget(item, p))
    return targets


def bench_models(
    items: list[str], profiles: list[str], top: int | None = None, measurer: Measurer | None = None
) -> list[dict[str, Any]]:
    """Every target under every profile; all inputs are checked before anything is timed.

    One row per (model, profile); `fastest` marks the lowest median per profile. Where several
    profiles time one board (`target`: the Pi 5 under onnxruntime, LiteRT and PyTorch Mobile),
    `fastest_on_board` / `most_frugal_on_board` mark, per model, the runtime with the lowest
    median / predicted energy on that board."""
    loaded: list[Profile] = [load_profile(p) for p in profiles]
    targets = expand_targets(items, top)
    measurer = measurer or default_measurer()
    rows = []
    for t in targets:
        size = t.path.stat().st_size
        for profile in loaded:
            row: dict[str, Any] = {
                "model": t.label,
                "path": str(t.path),
                "trial": t.trial,
                "profile": profile.name,
                "label": profile.latency_label,
                "board": profile.target or profile.name,
                "model_bytes": size,
            }
            if profile.max_model_bytes is not None:
                row["fits_model_bytes"] = size <= profile.max_model_bytes
            if not profile.timing or profile.max_peak_ram_bytes or profile.max_flash_bytes:
                from edgenas.constraints import Constraints
                from edgenas.hardware.memory import memory_estimate
                from edgenas.reward import RewardConfig

                mem = memory_estimate(t.path.read_bytes(), profile.precision)
                row.update(peak_ram_bytes=mem.peak_ram_bytes, flash_bytes=mem.flash_bytes)
                limits = Constraints.build(RewardConfig(budget_params=None), profile)
                if limits.needs_memory:
                    row["fits_memory"] = limits.check_memory(mem.peak_ram_bytes, mem.flash_bytes) is None
            stats = measurer.measure(str(t.path), profile)
            if stats is not None:
                row.update(stats.to_json(with_samples=True))
            rows.append(row)
    for profile in loaded:
        timed = [r for r in rows if r["profile"] == profile.name and "median_ms" in r]
        if timed:
            min(timed, key=lambda r: r["median_ms"])["fastest"] = True
    for model in dict.fromkeys(r["model"] for r in rows):
        for board in dict.fromkeys(r["board"] for r in rows):
            here = [r for r in rows if r["model"] == model and r["board"] == board and "median_ms" in r]
            if len(here) > 1:
                min(here, key=lambda r: r["median_ms"])["fastest_on_board"] = True
            spent = [r for r in here if r.get("energy_mj") is not None]
            if len(spent) > 1:
                min(spent, key=lambda r: r["energy_mj"])["most_frugal_on_board"] = True
    return rows
