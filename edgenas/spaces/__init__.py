"""Search spaces, by name: `create(name, input_shape=..., num_classes=..., **options)`."""

from __future__ import annotations

from typing import Any, Callable

from edgenas.errors import ConfigError
from edgenas.spaces.base import Decision, DecisionKind, SearchSpace
from edgenas.spaces.blocks import BlocksArch, BlocksSpace
from edgenas.spaces.cells import CellArch, CellLargeSpace, CellSmallSpace
from edgenas.spaces.layerwise import LayerwiseArch, LayerwiseSpace
from edgenas.spaces.nb201 import NB201Arch, NB201Space
from edgenas.spaces.transform import TransformSpace

_REGISTRY: dict[str, Callable[..., SearchSpace]] = {}


def register(name: str, factory: Callable[..., SearchSpace]) -> None:
    if name in _REGISTRY:
        raise ValueError(f"search space '{name}' is already registered")
    _REGISTRY[name] = factory


def names() -> list[str]:
    return sorted(_REGISTRY)


def create(name: str, **options: Any) -> SearchSpace:
    if name not in _REGISTRY:
        raise ConfigError(f"unknown search space '{name}'; available: {', '.join(names())}")
    try:
        return _REGISTRY[name](**options)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"search space '{name}': {exc}") from exc


register("layerwise", LayerwiseSpace)
register("nb201", NB201Space)
register("cell-small", CellSmallSpace)
register("cell-large", CellLargeSpace)
register("blocks", BlocksSpace)
register("transform", TransformSpace)

__all__ = [
    "BlocksArch", "BlocksSpace", "CellArch", "CellLargeSpace", "CellSmallSpace", "Decision", "DecisionKind",
    "LayerwiseArch", "LayerwiseSpace", "NB201Arch", "NB201Space", "SearchSpace", "TransformSpace", "create",
    "names", "register",
]
