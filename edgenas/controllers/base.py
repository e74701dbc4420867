"""The interface every controller shares.

A controller sees integer action sequences and float rewards only. It asks the search space's
`next_decision(prefix)` for the kind and mask of each choice; it never sees modules, datasets
or profiles.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Sequence

from edgenas.spaces.base import SearchSpace


class Controller(ABC):
    """Contract: `propose` is deterministic given the seed and the history of `learn` calls;
    `state_dict`/`load_state_dict` round-trip everything needed to continue identically.
    Not thread-safe: one search loop owns a controller."""

    def __init__(self, space: SearchSpace, seed: int = 0) -> None:
        self.space = space
        self.seed = seed

    @abstractmethod
    def propose(self, n: int) -> list[list[int]]:
        """Sample `n` complete action sequences."""

    def learn(self, actions: Sequence[Sequence[int]], rewards: Sequence[float]) -> dict[str, float]:
        """Update from the results of one batch; returns statistics to record. Default: nothing."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned. Default: nothing to restore."""
