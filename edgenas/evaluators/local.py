"""The local evaluator: trains each job in this process, one after another."""

from __future__ import annotations

from typing import Any, Iterable, Iterator

from edgenas.evaluators.base import EVALUATORS, Evaluator, EvaluatorContext, TrainJob, TrainOutcome
from edgenas.evaluators.jobs import setup, train


@EVALUATORS.register
class LocalEvaluator(Evaluator):
    name = "local"

    @classmethod
    def from_context(cls, context: EvaluatorContext) -> "LocalEvaluator":
        return cls(context.pipeline_json, context.threads_per_job)

    def __init__(self, pipeline_json: dict[str, Any], threads_per_job: int) -> None:
        self._args = (pipeline_json, threads_per_job, None)
        self._ready = False

    def run(self, jobs: Iterable[TrainJob]) -> Iterator[TrainOutcome]:
        if not self._ready:
            setup(*self._args)
            self._ready = True
        for job in jobs:
            yield train(job)
