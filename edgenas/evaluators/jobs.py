"""The training job itself, run wherever an evaluator puts it (this process, a worker process, a
Ray task): the worker loads the dataset and the space once (`setup`), then trains jobs (`train`)."""

from __future__ import annotations

import os
from typing import Any

import torch

from edgenas.evaluators.base import TrainJob, TrainOutcome

WORKER: dict[str, Any] = {}


def setup(pipeline_json: dict[str, Any], threads: int, cores: list[int] | None, device: str | None = None) -> None:
    """Load the dataset and the space once per worker; `device` overrides the pipeline's."""
    from edgenas import spaces
    from edgenas.settings.pipeline import Pipeline
    from edgenas.training.data import load_pipeline_dataset
    from edgenas.training.trainer import resolve_device

    if cores and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, cores)
    torch.set_num_threads(threads)
    pipeline = Pipeline.from_json(pipeline_json, "executor")
    data = load_pipeline_dataset(pipeline)
    WORKER.update(
        pipeline=pipeline,
        data=data,
        space=spaces.from_pipeline(pipeline, data.input_shape, data.num_classes),
        device=resolve_device(device or pipeline.search.device),
    )


def train(job: TrainJob) -> TrainOutcome:
    import io
    import time

    from edgenas.training.trainer import EarlyStopped, train_child

    if job.not_after is not None and time.time() > job.not_after:
        return TrainOutcome(job.key, False, not_started=True)
    space, data, pipeline = WORKER["space"], WORKER["data"], WORKER["pipeline"]
    torch.manual_seed(job.seed)
    model = space.build(space.arch_from_json(job.arch))
    t0 = time.perf_counter()
    try:
        resume = torch.load(io.BytesIO(job.resume), weights_only=False) if job.resume is not None else None
        res = train_child(
            model,
            data.x_train,
            data.y_train,
            data.x_val,
            data.y_val,
            pipeline.training,
            job.seed,
            WORKER["device"],
            list(job.stop_thresholds) or None,
            job.stop_epoch,
            resume,
        )
    except EarlyStopped as stop:
        return TrainOutcome(
            job.key, False, stop.val_accuracy, time.perf_counter() - t0, curve=tuple(stop.curve), stopped=str(stop)
        )
    except Exception as exc:  # diverged, out of memory, anything: a failed child, never a dead search
        return TrainOutcome(job.key, False, error=f"{type(exc).__name__}: {exc}")
    return TrainOutcome(
        job.key,
        True,
        res.val_accuracy,
        res.train_seconds,
        {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        curve=res.curve,
        train_state=_saved(res.state),
    )


def _saved(state: dict[str, Any] | None) -> bytes | None:
    import io

    if state is None:
        return None
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()
