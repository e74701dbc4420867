"""Evaluators (see `edgenas.evaluators.base` for the contract): each registers itself under its
name in `EVALUATORS`; importing this package registers local, process, ray, supernet and table."""

from edgenas.evaluators.base import (
    EVALUATORS,
    Evaluator,
    EvaluatorContext,
    TrainJob,
    TrainOutcome,
    create,
)
from edgenas.evaluators.local import LocalEvaluator
from edgenas.evaluators.process import ProcessEvaluator, slot_devices, training_slots
from edgenas.evaluators.ray import RayEvaluator, check_reachable
from edgenas.evaluators.supernet import SupernetEvaluator
from edgenas.evaluators.table import TableEvaluator, table_dataset

__all__ = [
    "EVALUATORS",
    "Evaluator",
    "EvaluatorContext",
    "LocalEvaluator",
    "ProcessEvaluator",
    "RayEvaluator",
    "SupernetEvaluator",
    "TableEvaluator",
    "TrainJob",
    "TrainOutcome",
    "check_reachable",
    "create",
    "slot_devices",
    "table_dataset",
    "training_slots",
]
