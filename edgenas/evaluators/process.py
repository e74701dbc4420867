"""The process evaluator: a pool of worker processes on this machine, each pinned to its own cores
(and, on CUDA, spread over the visible GPUs)."""

from __future__ import annotations

import os
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from typing import Any, Iterable, Iterator

import torch

from edgenas.errors import ConfigError
from edgenas.evaluators.base import EVALUATORS, Evaluator, EvaluatorContext, TrainJob, TrainOutcome
from edgenas.evaluators.jobs import setup, train


def slot_devices(device: str, workers: int, gpu_count: int) -> list[str]:
    """The training device of each process-evaluator worker. `device` is the pipeline's
    (auto / cpu / cuda / cuda:N). On CUDA with `auto` or `cuda`, workers fill the visible GPUs
    round-robin (worker i on GPU i mod gpu_count), so workers > GPUs puts several training
    slots on each GPU; `cuda:N` keeps every worker on GPU N."""
    if device == "cpu" or (device == "auto" and gpu_count == 0):
        return ["cpu"] * workers
    if device.startswith("cuda:"):
        return [device] * workers
    if gpu_count == 0:
        raise ConfigError(f"device '{device}' needs CUDA, and torch sees no GPU on this machine; use --device cpu")
    return [f"cuda:{i % gpu_count}" for i in range(workers)]


def _gpu_count() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


@EVALUATORS.register
class ProcessEvaluator(Evaluator):
    name = "process"

    @classmethod
    def from_context(cls, context: EvaluatorContext) -> "ProcessEvaluator":
        return cls(context.pipeline_json, context.workers, context.threads_per_job)

    def __init__(
        self, pipeline_json: dict[str, Any], workers: int, threads_per_job: int, devices: list[str] | None = None
    ) -> None:
        import multiprocessing as mp

        cores = (
            sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
        )
        self.workers = workers
        self.devices = devices or slot_devices(pipeline_json["search"]["device"], workers, _gpu_count())
        self._pools = []
        # One single-worker pool per slot, so each worker can be pinned to its own cores and device.
        for i in range(workers):
            mine = cores[i * len(cores) // workers : (i + 1) * len(cores) // workers] or [cores[i % len(cores)]]
            self._pools.append(
                ProcessPoolExecutor(
                    max_workers=1,
                    mp_context=mp.get_context("spawn"),
                    initializer=setup,
                    initargs=(pipeline_json, threads_per_job, mine, self.devices[i]),
                )
            )

    def run(self, jobs: Iterable[TrainJob]) -> Iterator[TrainOutcome]:
        from concurrent.futures.process import BrokenProcessPool

        futures: dict[Future, TrainJob] = {}
        for i, job in enumerate(jobs):
            futures[self._pools[i % self.workers].submit(train, job)] = job
        for fut in as_completed(futures):
            job = futures[fut]
            try:
                yield fut.result()
            except BrokenProcessPool as exc:
                yield TrainOutcome(job.key, False, error=f"the worker process died while training ({exc})")

    def close(self) -> None:
        for pool in self._pools:
            pool.shutdown(wait=True, cancel_futures=True)


def training_slots(
    executor: str, device: str, workers: int, children_per_gpu: int, gpus_per_job: float, gpu_count: int
) -> tuple[int, float]:
    """(worker processes, GPUs per Ray task) for `children_per_gpu` children at once on each GPU.

    process: workers = children_per_gpu x GPUs (or `cuda:N`: children_per_gpu); ray: each task
    asks for 1 / children_per_gpu of a GPU. children_per_gpu = 1 changes nothing."""
    if children_per_gpu == 1:
        return workers, gpus_per_job
    if device == "cpu" or gpu_count == 0:
        raise ConfigError(
            f"--children-per-gpu {children_per_gpu} shares GPUs between children, and training runs on the CPU here "
            f"(device '{device}', {gpu_count} GPU(s) visible to torch); leave it at 1, or use --workers N for CPU workers"
        )
    if executor == "local":
        raise ConfigError("--children-per-gpu trains several children at once: use --executor process or ray")
    if executor == "ray":
        return workers, (gpus_per_job or 1.0) / children_per_gpu
    return children_per_gpu * (1 if device.startswith("cuda:") else gpu_count), gpus_per_job
