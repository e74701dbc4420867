"""Search spaces, by name: `create(name, input_shape=..., num_classes=..., **options)`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edgenas.config import Pipeline
from edgenas.spaces.base import SPACES, Decision, DecisionKind, SearchSpace
from edgenas.spaces.blocks import BlocksArch, BlocksSpace
from edgenas.spaces.cells import CellArch, CellLargeSpace, CellSmallSpace
from edgenas.spaces.layerwise import LayerwiseArch, LayerwiseSpace
from edgenas.spaces.mobile import MobileArch, MobileSpace
from edgenas.spaces.nb201 import NB201Arch, NB201Space
from edgenas.spaces.transform import TransformSpace


def names() -> list[str]:
    return SPACES.names()


def create(name: str, **options: Any) -> SearchSpace:
    """The space registered as `name`, built with `options` (ConfigError on unknown names or options)."""
    return SPACES.create(name, **options)


def from_pipeline(pipeline: "Pipeline", input_shape: tuple[int, ...], num_classes: int) -> SearchSpace:
    """The space a pipeline's [space] section names, for inputs of `input_shape`."""
    return create(pipeline.space.name, input_shape=input_shape, num_classes=num_classes, **pipeline.space.options)


__all__ = [
    "BlocksArch",
    "BlocksSpace",
    "CellArch",
    "CellLargeSpace",
    "CellSmallSpace",
    "Decision",
    "DecisionKind",
    "LayerwiseArch",
    "LayerwiseSpace",
    "MobileArch",
    "MobileSpace",
    "NB201Arch",
    "NB201Space",
    "SearchSpace",
    "TransformSpace",
    "create",
    "from_pipeline",
    "names",
    "SPACES",
]
