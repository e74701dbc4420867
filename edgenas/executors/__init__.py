"""Executors: where children are trained.

Only training is farmed out. Building, costing, the budget gate, export and latency timing run
in the search's own process, one child at a time, before the batch trains, so timing never
shares cores with training. A training job is (architecture JSON, seed); the result is the
trained state dict and its validation accuracy, or the failure. The same seed gives the same
result whichever executor runs it: every job trains with a fixed number of torch threads
(`threads_per_job`), so float summation order does not depend on the executor.

  local    in this process, one job after another
  process  a pool of worker processes on this machine, each pinned to its own cores; on CUDA the
           workers are spread over the visible GPUs, so `children_per_gpu` workers share each GPU
           (tiny children leave a GPU mostly idle: several of them train at once)
  ray      one Ray task per child (local instance, or a cluster's address), with CPU/GPU requests
           (1 / children_per_gpu of a GPU each on CUDA)
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any, Iterator

import torch

from edgenas.errors import ConfigError
from edgenas.registry import Registry


@dataclass(frozen=True)
class TrainJob:
    key: str  # the architecture's canonical key
    arch: dict[str, Any]
    seed: int
    stop_thresholds: tuple[float | None, ...] = ()  # median rule, per epoch (empty: no early stopping)
    stop_epoch: int | None = None  # multi-fidelity: pause the schedule after this many epochs
    resume: bytes | None = None  # multi-fidelity: the saved training state (torch.save) to continue from
    not_after: float | None = None  # --max-minutes: not started after this time.time() (the outcome says so)


@dataclass
class TrainOutcome:
    key: str
    ok: bool
    val_accuracy: float | None = None
    train_seconds: float | None = None
    state_dict: dict[str, torch.Tensor] | None = None
    error: str | None = None
    curve: tuple[float, ...] = ()
    stopped: str | None = None  # why training stopped early (then `ok` is False and `error` None)
    train_state: bytes | None = None  # paused at `stop_epoch`: what a later rung resumes (torch.save)
    not_started: bool = False  # reached the worker after `TrainJob.not_after`: nothing was trained


# -- the job itself (runs wherever the executor puts it) -------------------------------------

_WORKER: dict[str, Any] = {}


def _setup(pipeline_json: dict[str, Any], threads: int, cores: list[int] | None, device: str | None = None) -> None:
    """Load the dataset and the space once per worker; `device` overrides the pipeline's."""
    from edgenas import spaces
    from edgenas.config import Pipeline
    from edgenas.training.data import load_pipeline_dataset
    from edgenas.training.trainer import resolve_device

    if cores and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, cores)
    torch.set_num_threads(threads)
    pipeline = Pipeline.from_json(pipeline_json, "executor")
    data = load_pipeline_dataset(pipeline)
    _WORKER.update(
        pipeline=pipeline,
        data=data,
        space=spaces.from_pipeline(pipeline, data.input_shape, data.num_classes),
        device=resolve_device(device or pipeline.search.device),
    )


def _train(job: TrainJob) -> TrainOutcome:
    import io
    import time

    from edgenas.training.trainer import EarlyStopped, train_child

    if job.not_after is not None and time.time() > job.not_after:
        return TrainOutcome(job.key, False, not_started=True)
    space, data, pipeline = _WORKER["space"], _WORKER["data"], _WORKER["pipeline"]
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
            _WORKER["device"],
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


# -- executors -------------------------------------------------------------------------------


class Executor(ABC):
    """Contract: `run` yields one outcome per job, in completion order; jobs of one call may run
    at the same time; a job that reaches its worker after its `not_after` is answered with
    `not_started` and not trained (the training job function does that wherever it runs; the
    table executor, which trains nothing, answers every job). `close` releases workers."""

    name: str
    trains = True  # False: results are looked up (a table), so nothing needs a graph or early stopping

    @classmethod
    def from_settings(
        cls,
        pipeline_json: dict[str, Any],
        workers: int,
        threads_per_job: int,
        ray_address: str | None,
        gpus_per_job: float,
    ) -> "Executor":
        """Build one from the search settings (what `create` calls); each executor takes what it uses."""
        raise NotImplementedError

    @abstractmethod
    def run(self, jobs: list[TrainJob]) -> Iterator[TrainOutcome]: ...

    def close(self) -> None:
        """Release workers. Default: nothing to release."""


EXECUTORS: Registry[Executor] = Registry("executor")  # each registers itself with @EXECUTORS.register


@EXECUTORS.register
class LocalExecutor(Executor):
    name = "local"

    @classmethod
    def from_settings(cls, pipeline_json, workers, threads_per_job, ray_address, gpus_per_job):  # type: ignore[override]
        return cls(pipeline_json, threads_per_job)

    def __init__(self, pipeline_json: dict[str, Any], threads_per_job: int) -> None:
        self._args = (pipeline_json, threads_per_job, None)
        self._ready = False

    def run(self, jobs: list[TrainJob]) -> Iterator[TrainOutcome]:
        if not self._ready:
            _setup(*self._args)
            self._ready = True
        for job in jobs:
            yield _train(job)


def slot_devices(device: str, workers: int, gpu_count: int) -> list[str]:
    """The training device of each process-executor worker. `device` is the pipeline's
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


@EXECUTORS.register
class ProcessExecutor(Executor):
    name = "process"

    @classmethod
    def from_settings(cls, pipeline_json, workers, threads_per_job, ray_address, gpus_per_job):  # type: ignore[override]
        return cls(pipeline_json, workers, threads_per_job)

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
                    initializer=_setup,
                    initargs=(pipeline_json, threads_per_job, mine, self.devices[i]),
                )
            )

    def run(self, jobs: list[TrainJob]) -> Iterator[TrainOutcome]:
        from concurrent.futures.process import BrokenProcessPool

        futures: dict[Future, TrainJob] = {}
        for i, job in enumerate(jobs):
            futures[self._pools[i % self.workers].submit(_train, job)] = job
        for fut in as_completed(futures):
            job = futures[fut]
            try:
                yield fut.result()
            except BrokenProcessPool as exc:
                yield TrainOutcome(job.key, False, error=f"the worker process died while training ({exc})")

    def close(self) -> None:
        for pool in self._pools:
            pool.shutdown(wait=True, cancel_futures=True)


def _ray_train(pipeline_json: dict[str, Any], threads: int, job: TrainJob) -> TrainOutcome:
    """A Ray task: set the worker up once per pipeline, then train."""
    import hashlib
    import json

    tag = hashlib.sha256(json.dumps(pipeline_json, sort_keys=True).encode()).hexdigest()
    if _WORKER.get("tag") != tag:
        _setup(pipeline_json, threads, None)
        _WORKER["tag"] = tag
    return _train(job)


def check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail fast on an address nothing listens on (Ray itself retries for a long time).
    `auto` (Ray finds the local cluster) is left to Ray."""
    import socket

    if address == "auto":
        return
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ConfigError(f"--ray-address '{address}' is not HOST:PORT (e.g. 10.0.0.5:6379, from `ray start --head`)")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            pass
    except OSError as exc:
        raise ConfigError(
            f"cannot reach Ray at {address}: {exc}; check --ray-address (HOST:PORT of a running `ray start --head`)"
        ) from exc


@EXECUTORS.register
class RayExecutor(Executor):
    """Each child is a Ray task asking for `cpus_per_job` CPUs and `gpus_per_job` GPUs
    (fractions allowed), on a local Ray instance or the cluster at `address`."""

    name = "ray"

    @classmethod
    def from_settings(cls, pipeline_json, workers, threads_per_job, ray_address, gpus_per_job):  # type: ignore[override]
        return cls(pipeline_json, ray_address, threads_per_job, float(threads_per_job), gpus_per_job)

    def __init__(
        self,
        pipeline_json: dict[str, Any],
        address: str | None,
        threads_per_job: int,
        cpus_per_job: float,
        gpus_per_job: float,
    ) -> None:
        try:
            import ray
        except ImportError as exc:
            raise ConfigError("--executor ray needs Ray: pip install 'edgenas[ray]'") from exc
        self.ray = ray
        self.started = False
        if address:
            check_reachable(address)
        if not ray.is_initialized():
            try:
                if address:
                    ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
                else:
                    ray.init(
                        num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False, logging_level="ERROR"
                    )
            except Exception as exc:  # ConnectionError and Ray's own errors
                raise ConfigError(
                    f"cannot start or reach Ray{f' at {address}' if address else ''}: {exc}; check --ray-address "
                    "(HOST:PORT of a running `ray start --head`)"
                ) from exc
            self.started = True
        self.task = ray.remote(num_cpus=cpus_per_job, num_gpus=gpus_per_job)(_ray_train)
        self.pipeline_ref = ray.put(pipeline_json)
        self.threads = threads_per_job

    def run(self, jobs: list[TrainJob]) -> Iterator[TrainOutcome]:
        ray = self.ray
        refs = {self.task.remote(self.pipeline_ref, self.threads, job): job for job in jobs}
        waiting = list(refs)
        while waiting:
            done, waiting = ray.wait(waiting, num_returns=1)
            try:
                yield ray.get(done[0])
            except Exception as exc:  # a worker that died, a task that raised
                yield TrainOutcome(refs[done[0]].key, False, error=f"Ray task failed: {type(exc).__name__}: {exc}")

    def close(self) -> None:
        if self.started:
            self.ray.shutdown()


def training_slots(
    executor: str, device: str, workers: int, children_per_gpu: int, gpus_per_job: float, gpu_count: int
) -> tuple[int, float]:
    """(worker processes, GPUs per Ray task) for `children_per_gpu` children at once on each GPU.

    process: workers = children_per_gpu x GPUs (or `cuda:N`: children_per_gpu); ray: each task
    asks for 1 / children_per_gpu of a GPU. children_per_gpu = 1 changes nothing."""
    if children_per_gpu < 1:
        raise ConfigError(f"--children-per-gpu must be >= 1, got {children_per_gpu}")
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


def create(
    name: str,
    pipeline_json: dict[str, Any],
    workers: int = 1,
    threads_per_job: int = 1,
    ray_address: str | None = None,
    gpus_per_job: float = 0.0,
) -> Executor:
    if workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {workers}")
    return EXECUTORS.get(name).from_settings(pipeline_json, workers, threads_per_job, ray_address, gpus_per_job)


__all__ = [
    "EXECUTORS",
    "Executor",
    "LocalExecutor",
    "ProcessExecutor",
    "RayExecutor",
    "TrainJob",
    "TrainOutcome",
    "create",
    "check_reachable",
    "slot_devices",
    "training_slots",
]
