"""Evaluators: one contract for turning (architecture, training recipe, seed, fidelity) into
metrics, wherever and however that happens.

The search's own process builds, costs, gates, exports and times each child (edgenas.evaluate);
an evaluator gets what is left as jobs (`TrainJob`: architecture JSON, seed, where to pause or
stop, the state to continue from) and answers each with an outcome (`TrainOutcome`: validation
accuracy, learning curve, weights and training state, or why it failed or stopped). Registered
evaluators (`EVALUATORS`, `create(name, context)`):

  local    trains in this process, one job after another
  process  a pool of worker processes on this machine, each pinned to its own cores; on CUDA the
           workers are spread over the visible GPUs, so `children_per_gpu` workers share each GPU
  ray      one Ray task per child (local instance, or a cluster's address), with CPU/GPU requests
  table    looks results up in a table of precomputed results (NAS-Bench style); trains nothing

The same seed gives the same result whichever evaluator trains it: every job trains with a fixed
number of torch threads (`threads_per_job`), so float summation order does not depend on where.
A weight-sharing evaluator (a supernet whose subnetworks are evaluated without training) plugs
in the same way: register a class, answer jobs with outcomes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

import torch

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


@dataclass(frozen=True)
class EvaluatorContext:
    """What an evaluator may be built from: the search's settings and what `prepare` made of them."""

    pipeline_json: dict[str, Any]
    workers: int = 1  # process: worker processes (after children_per_gpu)
    threads_per_job: int = 1  # torch threads each job trains with
    ray_address: str | None = None
    gpus_per_job: float = 0.0  # ray: GPU share of each task (after children_per_gpu)
    space: Any = None  # the search space (table: to read the table's architectures)
    table: Any = None  # edgenas.table.Table of a tabular search


class Evaluator(ABC):
    """Contract: `run` yields one outcome per job, in completion order; jobs of one call may run
    at the same time; `jobs` may be lazy (the search makes each job's deadline when it is taken,
    so an evaluator that takes one job at a time gets the latest); a job that reaches its worker after its `not_after` is answered with
    `not_started` and not evaluated (the training job function does that wherever it runs; the
    table, which trains nothing, answers every job). The same job gives the same outcome on
    every evaluator that trains. `close` releases workers. `trains` is False where results are
    looked up: the search then needs no graph of an untimed child and stops nothing early."""

    name: str
    trains = True  # False: results are looked up (a table), so nothing needs a graph or early stopping
    inherits = False  # True: children are scored with weights inherited from a supernet, not trained

    @classmethod
    def check(cls, pipeline: Any, space: Any) -> None:
        """ConfigError for settings or a space this evaluator cannot serve, before any run
        directory exists. Default: it serves every one."""

    @classmethod
    def from_context(cls, context: EvaluatorContext) -> "Evaluator":
        """Build one for a search (what `create` calls); each evaluator takes what it uses."""
        raise NotImplementedError

    def warm_up(self) -> None:
        """One-off work before the search's clock starts (a supernet's training): --max-minutes
        and the progress lines' elapsed time do not count it. Default: none."""

    @abstractmethod
    def run(self, jobs: Iterable[TrainJob]) -> Iterator[TrainOutcome]: ...

    def close(self) -> None:
        """Release workers. Default: nothing to release."""


EVALUATORS: Registry[Evaluator] = Registry("executor")  # each registers itself with @EVALUATORS.register


def create(name: str, context: EvaluatorContext) -> Evaluator:
    """The registered evaluator `name` for a search; ConfigError for an unknown name. The
    context's numbers come checked (`SearchSettings`)."""
    return EVALUATORS.get(name).from_context(context)
