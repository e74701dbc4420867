"""The table evaluator: jobs answered from a table of precomputed results (no training).

`edgenas search --table FILE` (NAS-Bench style): the controller, the dedup cache, the gates and
the store work exactly as in a trained search; only the accuracy comes from the table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator

import torch

from edgenas.errors import ConfigError
from edgenas.evaluators.base import EVALUATORS, Evaluator, EvaluatorContext, TrainJob, TrainOutcome
from edgenas.settings.pipeline import SearchSettings
from edgenas.spaces.base import SearchSpace
from edgenas.table import Table
from edgenas.training.data import Dataset


def table_dataset(cfg: SearchSettings) -> Dataset:
    """A stand-in dataset for tabular searches: no images, only the shape and the classes the
    table's networks were built for (what params, FLOPs and latency are computed on)."""
    c, h, w = cfg.table_input_shape
    empty = torch.zeros(0, c, h, w)
    none = torch.zeros(0, dtype=torch.int64)
    return Dataset(
        f"table:{Path(str(cfg.table)).name}",
        empty,
        none,
        empty,
        none,
        empty,
        none,
        [str(i) for i in range(cfg.table_classes)],
        [0.0] * c,
        [1.0] * c,
        "unknown (table)",
    )


@EVALUATORS.register
class TableEvaluator(Evaluator):
    """Answers jobs from a table of precomputed results (no training). A search with
    `search.table` set uses it whatever `search.executor` says."""

    name = "table"
    trains = False

    @classmethod
    def from_context(cls, context: EvaluatorContext) -> "TableEvaluator":
        if context.table is None or context.space is None:
            raise ConfigError("the table evaluator looks results up in a table: give --table FILE (search.table)")
        return cls(context.table, context.space)

    def __init__(self, table: Table, space: SearchSpace) -> None:
        self.table, self.space = table, space

    def run(self, jobs: Iterable[TrainJob]) -> Iterator[TrainOutcome]:
        for job in jobs:
            val, _ = self.table.lookup(self.space, self.space.arch_from_json(job.arch))
            yield TrainOutcome(job.key, True, val_accuracy=val, train_seconds=0.0, curve=(val,))
