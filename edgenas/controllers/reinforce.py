"""REINFORCE with an LSTM policy (Zoph & Le 2017).

One LSTM cell steps through the decisions; each step's input is the embedding of the previous
choice (a learned start vector for the first), each decision kind has its own softmax head.
Masked options get probability 0. Exploration: a probability floor mixes a uniform distribution
over the allowed options into every softmax (Mohandoss & Dwivedi), plus an entropy bonus.
Updates: one Adam step per minibatch of m architectures on
    loss = -mean_i (R_i - b) * sum_t log p(a_it)  -  entropy_weight * mean_i H_i
with b an exponential moving average of the rewards seen so far.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn as nn

from edgenas.controllers.base import Controller
from edgenas.spaces.base import SearchSpace


class LSTMPolicy(nn.Module):
    def __init__(self, kind_sizes: Sequence[int], hidden_size: int) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.start = nn.Parameter(torch.zeros(hidden_size))
        self.embeddings = nn.ModuleList(nn.Embedding(n, hidden_size) for n in kind_sizes)
        self.cell = nn.LSTMCell(hidden_size, hidden_size)
        self.heads = nn.ModuleList(nn.Linear(hidden_size, n) for n in kind_sizes)


class ReinforceController(Controller):
    def __init__(
        self,
        space: SearchSpace,
        seed: int = 0,
        hidden_size: int = 64,
        learning_rate: float = 0.005,
        baseline_decay: float = 0.8,
        entropy_weight: float = 0.01,
        probability_floor: float = 0.05,
        temperature: float = 1.0,
    ) -> None:
        super().__init__(space, seed)
        if not 0.0 <= probability_floor < 1.0:
            raise ValueError("probability_floor must be in [0, 1)")
        if not 0.0 <= baseline_decay < 1.0:
            raise ValueError("baseline_decay must be in [0, 1)")
        if temperature <= 0:
            raise ValueError("temperature must be > 0")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.policy = LSTMPolicy([k.size for k in space.kinds], hidden_size)
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=learning_rate)
        self.generator = torch.Generator().manual_seed(seed)
        self.baseline_decay = baseline_decay
        self.entropy_weight = entropy_weight
        self.probability_floor = probability_floor
        self.temperature = temperature
        self.baseline: float | None = None
        self.updates = 0

    # -- the policy, step by step -----------------------------------------------------------
    def _distribution(self, h: torch.Tensor, kind: int, mask: Sequence[bool]) -> torch.Tensor:
        logits = self.policy.heads[kind](h) / self.temperature
        allowed = torch.tensor(mask, dtype=torch.bool)
        logits = logits.masked_fill(~allowed, float("-inf"))
        probs = torch.softmax(logits, dim=-1)
        if self.probability_floor > 0:
            uniform = allowed.to(probs.dtype) / allowed.sum()
            probs = (1 - self.probability_floor) * probs + self.probability_floor * uniform
        return probs

    def _run(
        self, actions: Sequence[int] | None, prefix_only: bool = False
    ) -> tuple[list[int], torch.Tensor, torch.Tensor]:
        """Sample a sequence (actions=None) or score a given one (or only its first
        len(actions) decisions, with prefix_only).

        Returns the actions, the sum of their log-probabilities and the summed entropy."""
        p = self.policy
        h = torch.zeros(1, p.hidden_size)
        c = torch.zeros(1, p.hidden_size)
        inp = p.start.unsqueeze(0)
        out: list[int] = []
        log_prob = torch.zeros(())
        entropy = torch.zeros(())
        while (d := self.space.next_decision(out)) is not None:
            if prefix_only and actions is not None and len(out) == len(actions):
                break
            h, c = p.cell(inp, (h, c))
            probs = self._distribution(h[0], d.kind, d.mask)
            if actions is None:
                a = int(torch.multinomial(probs.detach(), 1, generator=self.generator))
            else:
                a = int(actions[len(out)])
            logp = torch.log(probs.clamp_min(1e-12))
            log_prob = log_prob + logp[a]
            entropy = entropy - (probs * logp).sum()
            out.append(a)
            inp = p.embeddings[d.kind](torch.tensor([a]))
        if actions is not None and len(out) != len(actions) and not prefix_only:
            raise ValueError("action sequence does not match the search space")
        return out, log_prob, entropy

    def propose(self, n: int) -> list[list[int]]:
        with torch.no_grad():
            return [self._run(None)[0] for _ in range(n)]

    def log_prob(self, actions: Sequence[int]) -> float:
        """log p(actions) under the current policy."""
        with torch.no_grad():
            return float(self._run(actions)[1])

    def log_prob_prefix(self, prefix: Sequence[int]) -> float:
        """log p(the sequence starts with `prefix`) under the current policy."""
        with torch.no_grad():
            return float(self._run(prefix, prefix_only=True)[1])

    def learn(self, actions: Sequence[Sequence[int]], rewards: Sequence[float]) -> dict[str, float]:
        if len(actions) != len(rewards) or not actions:
            raise ValueError("learn() needs one reward per action sequence, at least one")
        r = torch.tensor(rewards, dtype=torch.float32)
        if self.baseline is None:
            self.baseline = float(r.mean())
        advantages = r - self.baseline
        log_probs, entropies = [], []
        for seq in actions:
            _, lp, ent = self._run(seq)
            log_probs.append(lp)
            entropies.append(ent)
        lp = torch.stack(log_probs)
        ent = torch.stack(entropies)
        loss = -(advantages * lp).mean() - self.entropy_weight * ent.mean()
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        baseline_used = self.baseline
        for value in rewards:
            self.baseline = self.baseline_decay * self.baseline + (1 - self.baseline_decay) * float(value)
        self.updates += 1
        return {
            "loss": float(loss.detach()),
            "entropy": float(ent.detach().mean()),
            "baseline": baseline_used,
            "mean_reward": float(r.mean()),
        }

    def state_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "baseline": self.baseline,
            "updates": self.updates,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.policy.load_state_dict(state["policy"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        self.baseline = state["baseline"]
        self.updates = state["updates"]
