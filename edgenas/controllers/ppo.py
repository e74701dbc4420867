"""PPO with the clipped objective (Arora & Krone, after Schulman et al. 2017).

The same LSTM policy as REINFORCE. Each update takes `ppo_epochs` Adam steps on one batch:
    loss = -mean_i min(rho_i A_i, clip(rho_i, 1 - eps, 1 + eps) A_i) - entropy_weight * mean_i H_i
with rho_i = p(a_i) / p_old(a_i) the probability ratio against the policy that sampled the
batch and A_i = R_i - b (moving-average baseline), so several steps reuse one batch of expensive
rewards without moving the policy too far from the one that produced them.
"""

from __future__ import annotations

from typing import Any

import torch

from edgenas.controllers.base import CONTROLLERS
from edgenas.controllers.reinforce import ReinforceController
from edgenas.spaces.base import SearchSpace


@CONTROLLERS.register
class PPOController(ReinforceController):
    name = "ppo"

    def __init__(
        self, space: SearchSpace, seed: int = 0, clip: float = 0.2, ppo_epochs: int = 4, **options: Any
    ) -> None:
        super().__init__(space, seed, **options)
        if not 0 < clip < 1:
            raise ValueError("clip must be in (0, 1)")
        if ppo_epochs < 1:
            raise ValueError("ppo_epochs must be >= 1")
        self.clip = clip
        self.ppo_epochs = ppo_epochs

    def _policy_step(self, batch: list[list[int]], advantages: torch.Tensor) -> tuple[float, float]:
        with torch.no_grad():
            old_lp, _ = self._scores(batch)
        loss_value, ent_value = 0.0, 0.0
        for _ in range(self.ppo_epochs):
            lp, ent = self._scores(batch)
            ratio = torch.exp(lp - old_lp)
            clipped = torch.clamp(ratio, 1 - self.clip, 1 + self.clip)
            loss = -torch.min(ratio * advantages, clipped * advantages).mean() - self.entropy_weight * ent.mean()
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            loss_value, ent_value = float(loss.detach()), float(ent.detach().mean())
        return loss_value, ent_value
