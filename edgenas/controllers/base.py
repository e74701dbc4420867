"""The interface every controller shares.

A controller sees integer action sequences and float rewards only. It asks the search space's
`next_decision(prefix)` for the kind and mask of each choice; it never sees modules, datasets
or profiles.
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from edgenas.registry import Registry
from edgenas.spaces.base import SearchSpace


@dataclass(frozen=True)
class History:
    """What a search has told its controller, oldest first; read-only. The search reads it from
    its store before each `propose` and `learn` (so a controller keeps no copy of it, and a
    resumed search has it back without replaying anything); `extended` builds one by hand.

    `rewards` are what each sample was told: the reward at the first rung (one fidelity per
    update), scalarised with the update's weights under `--objectives`. `rungs` and `vectors` are
    keyed by action sequence (every sequence told has its own entry, so two sequences that build
    one network share what it reached)."""

    actions: tuple[tuple[int, ...], ...] = ()
    rewards: tuple[float, ...] = ()
    updates: tuple[int, ...] = ()  # the update each sample was told in
    rungs: Mapping[tuple[int, ...], tuple[int, float]] = field(default_factory=dict)  # multi-fidelity: the
    # highest rung above the first that the network reached, and its reward there
    vectors: Mapping[tuple[int, ...], tuple[float, ...]] = field(default_factory=dict)  # --objectives: the
    # network's objective vector (every entry maximised); none for a rejected or failed one

    def __len__(self) -> int:
        return len(self.actions)

    def told(self) -> list[tuple[list[int], float]]:
        """(actions, reward) of every sample, in the order told."""
        return [(list(a), r) for a, r in zip(self.actions, self.rewards)]

    def _last_start(self) -> int:
        """Where the latest update's samples begin."""
        i = len(self.updates)
        while i > 0 and self.updates[i - 1] == self.updates[-1]:
            i -= 1
        return i

    def batches(self) -> list[tuple[list[list[int]], list[float]]]:
        """The samples grouped by update, in order: (actions, rewards) of each."""
        out: list[tuple[list[list[int]], list[float]]] = []
        last = None
        for a, r, u in zip(self.actions, self.rewards, self.updates):
            if u != last:
                out.append(([], []))
                last = u
            out[-1][0].append(list(a))
            out[-1][1].append(r)
        return out

    def last(self) -> tuple[list[list[int]], list[float]]:
        """The latest update's samples and rewards (what `learn` learns from)."""
        i = self._last_start()
        return [list(a) for a in self.actions[i:]], list(self.rewards[i:])

    def before_last(self) -> History:
        """The history without its latest update's samples (`rungs` and `vectors` kept)."""
        n = self._last_start()
        return replace(self, actions=self.actions[:n], rewards=self.rewards[:n], updates=self.updates[:n])

    def extended(
        self,
        actions: Sequence[Sequence[int]],
        rewards: Sequence[float],
        vectors: Sequence[Sequence[float] | None] | None = None,
        rungs: Mapping[tuple[int, ...], tuple[int, float]] | None = None,
    ) -> History:
        """One more update told: these samples with their rewards (and objective vectors; and
        rungs reached since), as a search would record it."""
        if len(actions) != len(rewards):
            raise ValueError("one reward per action sequence")
        update = self.updates[-1] + 1 if self.updates else 0
        new_vectors = dict(self.vectors)
        for a, v in zip(actions, vectors or [None] * len(actions)):
            if v is not None:
                new_vectors[tuple(a)] = tuple(float(x) for x in v)
        return History(
            self.actions + tuple(tuple(int(x) for x in a) for a in actions),
            self.rewards + tuple(float(r) for r in rewards),
            self.updates + (update,) * len(actions),
            {**self.rungs, **(rungs or {})},
            new_vectors,
        )


class Controller(ABC):
    """Contract: `propose(n, history)` is deterministic given the seed, the controller's own
    learned state (policy weights, random generator, counters) and the history; `learn(history)`
    updates that state from the history's latest update. `state_dict`/`load_state_dict` round-trip
    the learned state, never the history (the search's store holds that). Not thread-safe: one
    search loop owns a controller."""

    # Which architectures the search will accept (e.g. parameters under a hard budget), when the
    # search knows before evaluating: set by `set_feasibility`. Controllers that can use it
    # (the predictor) propose only what passes; the others learn from the rejections.
    feasible: Callable[[Sequence[int]], bool] | None = None

    def __init__(self, space: SearchSpace, seed: int = 0) -> None:
        self.space = space
        self.seed = seed

    @abstractmethod
    def propose(self, n: int, history: History) -> list[list[int]]:
        """Sample `n` complete action sequences, given what was told so far."""

    def learn(self, history: History) -> dict[str, float]:
        """Update from the history's latest update (`history.last()`; under multi-fidelity
        `history.rungs` also holds the rungs reached up to now, under `--objectives`
        `history.vectors` the objective vectors; the rewards are the update's scalarisation of them,
        one weight vector per update, ParEGO's augmented Tchebycheff, which is all REINFORCE, PPO,
        evolution and random search use); returns statistics to record. Default: nothing."""
        return {}

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
