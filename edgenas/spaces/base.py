"""What every search space provides.

A search space is data: a list of decision kinds (a name and a number of options), a rule for
which decision comes next after a prefix of actions (with a mask of the options allowed there),
and a decoder from a finished action sequence to a plain, hashable `Architecture`-like object
with a canonical key. Controllers see only the integers: kind index, option mask, action.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Sequence

import torch.nn as nn

from edgenas.registry import Registry


@dataclass(frozen=True)
class DecisionKind:
    name: str
    options: tuple[Any, ...]

    @property
    def size(self) -> int:
        return len(self.options)


@dataclass(frozen=True)
class Decision:
    """The next choice after a prefix: its kind (index into `SearchSpace.kinds`) and which
    options are allowed (a mask with at least one True)."""

    kind: int
    mask: tuple[bool, ...]


class ActionReader:
    """Reads an action sequence decision by decision while a space walks its structure:
    `take(decision)` returns the next action (checked against the decision's mask) or None when
    the prefix ends there; `exhausted` says whether every action was read."""

    def __init__(self, actions: Sequence[int]) -> None:
        self.actions = actions
        self.pos = 0

    def take(self, decision: Decision) -> int | None:
        if self.pos == len(self.actions):
            return None
        a = self.actions[self.pos]
        if not (0 <= a < len(decision.mask)) or not decision.mask[a]:
            raise ValueError(f"action {a} at position {self.pos} is not allowed")
        self.pos += 1
        return a

    @property
    def exhausted(self) -> bool:
        return self.pos == len(self.actions)


class SearchSpace(ABC):
    """Contract: `next_decision` is a pure function of the prefix; a sequence is complete when
    it returns None; every complete sequence decodes to a buildable network. Instances are
    immutable and safe to share between threads."""

    name: str
    kinds: tuple[DecisionKind, ...]

    @abstractmethod
    def next_decision(self, prefix: Sequence[int]) -> Decision | None:
        """The decision that follows `prefix`, or None if `prefix` is a complete sequence."""

    @abstractmethod
    def decode(self, actions: Sequence[int]) -> Any:
        """The architecture a complete, valid action sequence describes."""

    @abstractmethod
    def build(self, arch: Any) -> nn.Module:
        """A freshly initialised module for `arch` (initialisation uses torch's global RNG)."""

    @abstractmethod
    def smallest(self) -> Any:
        """An architecture with the fewest parameters the space can produce."""

    # Is `smallest()` also the cheapest network in every cost a hard limit checks (RAM, flash,
    # latency, energy)? Then a search whose limits it breaks is refused before anything trains.
    smallest_is_cheapest: bool = False

    @abstractmethod
    def arch_from_json(self, data: dict[str, Any]) -> Any:
        """Inverse of `arch.to_json()`."""

    def parse(self, text: str) -> Any:
        """An architecture from its text form (its canonical key without the `space|` prefix).
        Spaces that have one override this; ValueError naming what is wrong."""
        raise ValueError(f"the {self.name} space cannot read architectures from text")

    def encode(self, arch: Any) -> list[int]:
        """The action sequence that decodes to `arch` (inverse of `decode`)."""
        raise ValueError(f"the {self.name} space cannot encode architectures")

    def references(self) -> dict[str, Any]:
        """Known-good networks of this space (name -> architecture): the templates a search
        evaluates first, scaled to its limits with `scaled`. Default: none."""
        return {}

    def scaled(self, arch: Any, width: float, depth: float) -> Any | None:
        """`arch` with every width times `width` and every depth times `depth`, each rounded to an
        allowed value (EON's and MCUNet's width and depth multipliers; above 1 they grow it); None
        where this space cannot scale it so. Default: only `arch` itself (1, 1)."""
        return arch if width == 1 and depth == 1 else None

    def option_index(self, kind: int, value: Any, what: str) -> int:
        """The action that picks `value` for decisions of `kinds[kind]`; ValueError if none does."""
        options = self.kinds[kind].options
        if value not in options:
            raise ValueError(f"{what} {value} is not one of {list(options)}")
        return options.index(value)

    def actions_from_text(self, text: str) -> list[int]:
        """The action sequence of an architecture given as its key (as reports and manifests print
        it, e.g. `mobile|w16:k3e1/...`) or as the space's text form; ValueError naming the problem."""
        prefix = f"{self.name}|"
        arch = self.parse(text[len(prefix) :] if text.startswith(prefix) else text)
        actions = self.encode(arch)
        self.validate(actions)
        if self.decode(actions).key() != arch.key():
            raise ValueError(f"'{text}' is not a network of this {self.name} space")
        return actions

    def validate(self, actions: Sequence[int]) -> None:
        """Raise ValueError unless `actions` is a complete sequence of allowed choices."""
        for i, action in enumerate(actions):
            decision = self.next_decision(actions[:i])
            if decision is None:
                raise ValueError(f"sequence is complete after {i} actions, got {len(actions)}")
            if not (0 <= action < len(decision.mask)) or not decision.mask[action]:
                raise ValueError(f"action {action} at position {i} is not allowed there")
        if self.next_decision(actions) is not None:
            raise ValueError(f"sequence of {len(actions)} actions is incomplete")


SPACES: Registry[SearchSpace] = Registry("search space")  # each space registers itself with @SPACES.register


def snap(value: float, options: Sequence[int]) -> int:
    """The largest allowed option at or below `value` (the smallest option where none is)."""
    below = [o for o in options if o <= value + 1e-9]
    return max(below) if below else min(options)
