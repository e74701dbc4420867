"""Search spaces, by name: `create(name, input_shape=..., num_classes=..., **options)`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edgenas.settings.pipeline import Pipeline
from edgenas.errors import ConfigError
from edgenas.spaces.base import SPACES, Decision, DecisionKind, SearchSpace
from edgenas.spaces.blocks import BlocksArch, BlocksSpace
from edgenas.spaces.cells import CellArch, CellLargeSpace, CellSmallSpace
from edgenas.spaces.layerwise import LayerwiseArch, LayerwiseSpace
from edgenas.spaces.mobile import MobileArch, MobileSpace
from edgenas.spaces.nb201 import NB201Arch, NB201Space
from edgenas.spaces.transform import TransformSpace

ENTRY_POINT_GROUP = "edgenas.spaces"  # a package's own spaces: [project.entry-points."edgenas.spaces"]


def names() -> list[str]:
    """The spaces edgenas ships (registered with @SPACES.register)."""
    return SPACES.names()


def available() -> list[str]:
    """Every name `create` accepts: the shipped spaces and those installed packages declare
    under the `edgenas.spaces` entry point group (a 'module:Class' path works too)."""
    return sorted(set(SPACES.names()) | {ep.name for ep in _entry_points()})


def _entry_points() -> list[Any]:
    from importlib.metadata import entry_points

    return list(entry_points(group=ENTRY_POINT_GROUP))


def space_class(name: str) -> type[SearchSpace]:
    """The class behind a space name: a shipped space, an `edgenas.spaces` entry point, or a
    'module:Class' path (the module importable where the search runs, worker processes too)."""
    if name in SPACES:
        return SPACES.get(name)
    if ":" in name:
        import importlib

        module_name, _, attr = name.partition(":")
        try:
            obj: Any = importlib.import_module(module_name)
        except ImportError as exc:
            raise ConfigError(f"space '{name}': cannot import module '{module_name}' ({exc}); put it on PYTHONPATH")
        for part in attr.split("."):
            if not hasattr(obj, part):
                raise ConfigError(f"space '{name}': module '{module_name}' has no '{attr}'")
            obj = getattr(obj, part)
        where = f"'{name}'"
    else:
        eps = [ep for ep in _entry_points() if ep.name == name]
        if not eps:
            raise ConfigError(
                f"unknown search space '{name}'; available: {', '.join(available())} "
                "(or a 'module:Class' path to your own SearchSpace subclass)"
            )
        try:
            obj = eps[0].load()
        except Exception as exc:  # the plug-in's own import failed
            raise ConfigError(f"space '{name}' (entry point {eps[0].value}) cannot be loaded: {exc}") from exc
        where = f"'{name}' (entry point {eps[0].value})"
    if not (isinstance(obj, type) and issubclass(obj, SearchSpace)):
        raise ConfigError(f"space {where} is not a subclass of edgenas.spaces.SearchSpace")
    return obj


def space_name(space: "str | type[SearchSpace]") -> str:
    """The name a pipeline stores for `space`: a name as given; a class: its registered name if
    it is a shipped space, else 'module:Class' (so worker processes can import it)."""
    if isinstance(space, str):
        return space
    if isinstance(space, type) and issubclass(space, SearchSpace):
        if getattr(space, "name", None) in SPACES and SPACES.get(space.name) is space:
            return space.name
        return f"{space.__module__}:{space.__qualname__}"
    if isinstance(space, SearchSpace):
        raise ConfigError(
            f"give the space's class ({type(space).__name__}), not an instance: edgenas builds it for the "
            "dataset's input shape and number of classes"
        )
    raise ConfigError(f"space must be a name or a SearchSpace subclass, got {type(space).__name__}")


def create(name: str, **options: Any) -> SearchSpace:
    """The space called `name` (see `space_class`), built with `options` (ConfigError on unknown
    names or options)."""
    if name in SPACES:
        return SPACES.create(name, **options)
    cls = space_class(name)
    try:
        return cls(**options)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"search space '{name}': {exc}") from exc


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
    "available",
    "names",
    "space_class",
    "space_name",
    "SPACES",
]
