"""Controllers, by name: `create(name, space, seed=..., **options)`."""

from __future__ import annotations

from typing import Any

from edgenas.controllers.base import CONTROLLERS, Controller, History
from edgenas.controllers.evolution import EvolutionController
from edgenas.controllers.ppo import PPOController
from edgenas.controllers.predictor import PredictorController
from edgenas.controllers.random_search import RandomController
from edgenas.controllers.reinforce import ReinforceController
from edgenas.spaces.base import SearchSpace


def names() -> list[str]:
    return CONTROLLERS.names()


def create(name: str, space: SearchSpace, seed: int = 0, **options: Any) -> Controller:
    """The controller registered as `name` (ConfigError on unknown names or options)."""
    return CONTROLLERS.create(name, space, seed=seed, **options)


__all__ = [
    "CONTROLLERS",
    "Controller",
    "EvolutionController",
    "History",
    "PPOController",
    "PredictorController",
    "RandomController",
    "ReinforceController",
    "create",
    "names",
]
