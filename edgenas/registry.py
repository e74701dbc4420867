"""Name -> class registries for search spaces, controllers and evaluators (timm's `register_model`).

A class registers itself where it is defined, under the `name` it already carries, so every
name is written exactly once:

    @SPACES.register
    class LayerwiseSpace(SearchSpace):
        name = "layerwise"

`create(name, ...)` builds one; an unknown name, or options the class does not take, is a
ConfigError that lists what is available. Registering a name twice is a programming error
(ValueError) and fails at import.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from edgenas.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str) -> None:
        self.kind = kind  # "search space", "controller", ...: used in messages
        self._entries: dict[str, type[T]] = {}

    def register(self, cls: type[T]) -> type[T]:
        """Class decorator: register `cls` under `cls.name`."""
        name = getattr(cls, "name", None)
        if not isinstance(name, str) or not name:
            raise ValueError(f"{cls.__name__} needs a class attribute `name` to be registered as a {self.kind}")
        if name in self._entries:
            raise ValueError(f"{self.kind} '{name}' is already registered (by {self._entries[name].__name__})")
        self._entries[name] = cls
        return cls

    def names(self) -> list[str]:
        return sorted(self._entries)

    def get(self, name: str) -> type[T]:
        if name not in self._entries:
            raise ConfigError(f"unknown {self.kind} '{name}'; available: {', '.join(self.names())}")
        return self._entries[name]

    def create(self, name: str, *args: Any, **options: Any) -> T:
        """`name`'s class called with `args` and `options`; a TypeError or ValueError from bad
        options becomes a ConfigError naming the class's registered name."""
        cls = self.get(name)
        try:
            return cls(*args, **options)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{self.kind} '{name}': {exc}") from exc

    def __contains__(self, name: object) -> bool:
        return name in self._entries
