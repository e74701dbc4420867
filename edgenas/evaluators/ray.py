"""The Ray evaluator: one Ray task per child, on a local Ray instance or a cluster."""

from __future__ import annotations

import os
from typing import Any, Iterable, Iterator

from edgenas.errors import ConfigError
from edgenas.evaluators.base import EVALUATORS, Evaluator, EvaluatorContext, TrainJob, TrainOutcome
from edgenas.evaluators.jobs import WORKER, setup, train


def _ray_train(pipeline_json: dict[str, Any], threads: int, job: TrainJob) -> TrainOutcome:
    """A Ray task: set the worker up once per pipeline, then train."""
    import hashlib
    import json

    tag = hashlib.sha256(json.dumps(pipeline_json, sort_keys=True).encode()).hexdigest()
    if WORKER.get("tag") != tag:
        setup(pipeline_json, threads, None)
        WORKER["tag"] = tag
    return train(job)


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


@EVALUATORS.register
class RayEvaluator(Evaluator):
    """Each child is a Ray task asking for `cpus_per_job` CPUs and `gpus_per_job` GPUs
    (fractions allowed), on a local Ray instance or the cluster at `address`."""

    name = "ray"

    @classmethod
    def from_context(cls, context: EvaluatorContext) -> "RayEvaluator":
        t = context.threads_per_job
        return cls(context.pipeline_json, context.ray_address, t, float(t), context.gpus_per_job)

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

    def run(self, jobs: Iterable[TrainJob]) -> Iterator[TrainOutcome]:
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
