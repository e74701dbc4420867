"""Controllers, by name: `create(name, space, seed=..., **options)`."""

from __future__ import annotations

from typing import Any, Callable

from edgenas.controllers.base import Controller
from edgenas.controllers.evolution import EvolutionController
from edgenas.controllers.ppo import PPOController
from edgenas.controllers.predictor import PredictorController
from edgenas.controllers.random_search import RandomController
from edgenas.controllers.reinforce import ReinforceController
from edgenas.errors import ConfigError
from edgenas.spaces.base import SearchSpace

_REGISTRY: dict[str, Callable[..., Controller]] = {}


def register(name: str, factory: Callable[..., Controller]) -> None:
    if name in _REGISTRY:
        raise ValueError(f"controller '{name}' is already registered")
    _REGISTRY[name] = factory


def names() -> list[str]:
    return sorted(_REGISTRY)


def create(name: str, space: SearchSpace, seed: int = 0, **options: Any) -> Controller:
    if name not in _REGISTRY:
        raise ConfigError(f"unknown controller '{name}'; available: {', '.join(names())}")
    try:
        return _REGISTRY[name](space, seed=seed, **options)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"controller '{name}': {exc}") from exc


register("reinforce", ReinforceController)
register("random", RandomController)
register("evolution", EvolutionController)
register("ppo", PPOController)
register("predictor", PredictorController)

__all__ = [
    "Controller", "EvolutionController", "PPOController", "PredictorController", "RandomController",
    "ReinforceController", "create", "names", "register",
]
