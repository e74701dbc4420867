"""The interface every controller shares.

A controller sees integer action sequences and float rewards only. It asks the search space's
`next_decision(prefix)` for the kind and mask of each choice; it never sees modules, datasets
or profiles.
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from typing import Any, Callable, Sequence

import numpy as np

from edgenas.registry import Registry
from edgenas.spaces.base import SearchSpace


class Controller(ABC):
    """Contract: `propose` is deterministic given the seed and the history of `learn` calls;
    `state_dict`/`load_state_dict` round-trip everything needed to continue identically.
    Not thread-safe: one search loop owns a controller."""

    # Which architectures the search will accept (e.g. parameters under a hard budget), when the
    # search knows before evaluating: set by `set_feasibility`. Controllers that can use it
    # (the predictor) propose only what passes; the others learn from the rejections.
    feasible: Callable[[Sequence[int]], bool] | None = None

    def __init__(self, space: SearchSpace, seed: int = 0) -> None:
        self.space = space
        self.seed = seed

    @abstractmethod
    def propose(self, n: int) -> list[list[int]]:
        """Sample `n` complete action sequences."""

    def learn(self, actions: Sequence[Sequence[int]], rewards: Sequence[float]) -> dict[str, float]:
        """Update from the results of one batch; returns statistics to record. Default: nothing."""
        return {}

    def learn_rungs(self, actions: Sequence[Sequence[int]], rungs: Sequence[int], rewards: Sequence[float]) -> None:
        """Multi-fidelity: children already learned from (at the first rung) reached higher rungs
        with these rewards. Rewards of different rungs are not comparable; a controller that uses
        this ranks a child by (highest rung, reward there). Default (REINFORCE, PPO, evolution,
        random): nothing, they learn from every child's first rung, one fidelity per batch."""

    def learn_objectives(self, actions: Sequence[Sequence[int]], vectors: Sequence[tuple[float, ...] | None]) -> None:
        """Multi-objective search (`--objectives`): each child's objective vector (every entry
        to maximise; None for a child that was rejected or failed), given before `learn`. The
        rewards `learn` then gets are a random scalarisation of these vectors, one weight vector
        per batch (ParEGO's augmented Tchebycheff), which is all REINFORCE, PPO, evolution and
        random search use: a different trade-off each batch covers the front over the search.
        Default: nothing. The predictor keeps the vectors and scalarises the whole history anew
        with a fresh weight vector for every batch it proposes (ParEGO)."""

    def set_feasibility(self, check: Callable[[Sequence[int]], bool] | None) -> None:
        """`check(actions)` is False for an architecture the search would reject without
        evaluating it. Deterministic and not part of the state: the search sets it again on resume."""
        self.feasible = check

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned. Default: nothing to restore."""


# -- helpers for controllers that work on whole sequences (evolution, the predictor) -----------


def complete_uniformly(space: SearchSpace, prefix: Sequence[int], rng: np.random.Generator) -> list[int]:
    """`prefix` completed with uniformly random allowed choices."""
    out = list(prefix)
    while (d := space.next_decision(out)) is not None:
        allowed = _allowed(tuple(d.mask))
        out.append(allowed[rng.integers(len(allowed))])
    return out


@functools.lru_cache(maxsize=4096)
def _allowed(mask: tuple[bool, ...]) -> tuple[int, ...]:
    """The allowed options of a mask (masks repeat: a space has few distinct ones)."""
    return tuple(i for i, ok in enumerate(mask) if ok)


def mutate(space: SearchSpace, actions: Sequence[int], rng: np.random.Generator) -> list[int]:
    """One random change: a different allowed option at one random position; the rest of the
    sequence is kept where it is still valid after the change, else completed at random (a
    changed depth or resolution can change what follows). Returns `actions` unchanged only when
    no position has a second option."""
    positions = [i for i in range(len(actions)) if sum(space.next_decision(actions[:i]).mask) > 1]  # type: ignore[union-attr]
    if not positions:
        return list(actions)
    i = positions[rng.integers(len(positions))]
    mask = space.next_decision(actions[:i]).mask  # type: ignore[union-attr]
    options = [a for a in np.flatnonzero(mask) if a != actions[i]]
    changed = list(actions[:i]) + [int(options[rng.integers(len(options))])]
    out = list(changed)
    for a in actions[i + 1 :]:
        d = space.next_decision(out)
        if d is None or not (0 <= a < len(d.mask)) or not d.mask[a]:
            break
        out.append(int(a))
    return complete_uniformly(space, out, rng)


def neighbours(space: SearchSpace, actions: Sequence[int], swaps: bool = False) -> list[list[int]]:
    """Every sequence that differs from `actions` in exactly one decision whose suffix stays
    valid unchanged (the one-edit neighbourhood local search walks). With `swaps`, also every
    exchange of the choices of two decisions of the same kind (e.g. the operations of two cell
    edges): one move between the symmetric basins that one-edit walks cannot cross."""
    out = []
    kinds = []
    for i in range(len(actions)):
        decision = space.next_decision(actions[:i])
        kinds.append(decision.kind)  # type: ignore[union-attr]
        mask = decision.mask  # type: ignore[union-attr]
        for a in np.flatnonzero(mask):
            if a == actions[i]:
                continue
            cand = list(actions[:i]) + [int(a)] + list(actions[i + 1 :])
            try:
                space.validate(cand)
            except ValueError:
                continue
            out.append(cand)
    if swaps:
        for i in range(len(actions)):
            for j in range(i + 1, len(actions)):
                if kinds[i] != kinds[j] or actions[i] == actions[j]:
                    continue
                cand = list(actions)
                cand[i], cand[j] = cand[j], cand[i]
                try:
                    space.validate(cand)
                except ValueError:
                    continue
                out.append(cand)
    return out


def rng_state(rng: np.random.Generator) -> dict[str, Any]:
    return dict(rng.bit_generator.state)


def rng_from_state(state: dict[str, Any]) -> np.random.Generator:
    rng = np.random.Generator(np.random.PCG64())
    rng.bit_generator.state = state
    return rng


CONTROLLERS: Registry[Controller] = Registry("controller")  # each registers itself with @CONTROLLERS.register
