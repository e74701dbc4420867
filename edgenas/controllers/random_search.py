"""Random search: every allowed option of every decision equally likely."""

from __future__ import annotations

from typing import Any

import torch

from edgenas.controllers.base import CONTROLLERS, Controller, History
from edgenas.spaces.base import SearchSpace


@CONTROLLERS.register
class RandomController(Controller):
    name = "random"

    def __init__(self, space: SearchSpace, seed: int = 0) -> None:
        super().__init__(space, seed)
        self.generator = torch.Generator().manual_seed(seed)

    def propose(self, n: int, history: History) -> list[list[int]]:
        out = []
        for _ in range(n):
            actions: list[int] = []
            while (d := self.space.next_decision(actions)) is not None:
                probs = torch.tensor(d.mask, dtype=torch.float64)
                actions.append(int(torch.multinomial(probs, 1, generator=self.generator)))
            out.append(actions)
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
