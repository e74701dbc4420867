"""Regularized (aging) evolution (Real et al., 2019), a baseline.

The first `population_size` proposals are uniformly random. After that each proposal is a
mutation (one changed decision, `controllers.base.mutate`) of the best of `sample_size`
members drawn from the population; every result joins the population and the oldest member
leaves, so good networks must keep being rediscovered.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from edgenas.controllers.base import (
    CONTROLLERS,
    Controller,
    History,
    complete_uniformly,
    mutate,
    rng_from_state,
    rng_state,
)
from edgenas.spaces.base import SearchSpace


def spread(population: Sequence[Sequence[int]]) -> float:
    """How diverse a population is: the mean number of decisions in which two members differ
    (positions past the shorter sequence count as different); 0 for fewer than two members."""
    pairs = [(a, b) for i, a in enumerate(population) for b in population[i + 1 :]]
    if not pairs:
        return 0.0
    return float(np.mean([sum(x != y for x, y in zip(a, b)) + abs(len(a) - len(b)) for a, b in pairs]))


@CONTROLLERS.register
class EvolutionController(Controller):
    name = "evolution"

    def __init__(self, space: SearchSpace, seed: int = 0, population_size: int = 20, sample_size: int = 5) -> None:
        super().__init__(space, seed)
        if population_size < 2:
            raise ValueError("population_size must be >= 2")
        if not 1 <= sample_size <= population_size:
            raise ValueError("sample_size must be between 1 and population_size")
        self.population_size = population_size
        self.sample_size = sample_size
        self.rng = np.random.default_rng(seed)

    def population(self, history: History) -> list[tuple[list[int], float]]:
        """The latest `population_size` results told, oldest first (aging: the oldest leaves)."""
        return history.told()[-self.population_size :]

    def propose(self, n: int, history: History) -> list[list[int]]:
        population = self.population(history)
        out = []
        for i in range(n):
            if len(history) + i < self.population_size or not population:
                out.append(complete_uniformly(self.space, [], self.rng))
                continue
            members = self.rng.choice(len(population), size=min(self.sample_size, len(population)), replace=False)
            parent = max((population[int(k)] for k in members), key=lambda m: m[1])
            out.append(mutate(self.space, parent[0], self.rng))
        return out

    def learn(self, history: History) -> dict[str, float]:
        _, rewards = history.last()
        if not rewards:
            raise ValueError("learn() needs a history whose latest update told at least one result")
        population = self.population(history)
        values = [r for _, r in population]
        return {
            "mean_reward": float(np.mean(rewards)),
            "population_best": max(values),
            "population_mean": float(np.mean(values)),
            "population_spread": spread([a for a, _ in population]),
        }

    def state_dict(self) -> dict[str, Any]:
        return {"rng": rng_state(self.rng)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng = rng_from_state(state["rng"])
