"""REINFORCE with an LSTM policy (Zoph & Le 2017).

One LSTM cell steps through the decisions; each step's input is the embedding of the previous
choice (a learned start vector for the first), each decision kind has its own softmax head.
Masked options get probability 0. Exploration: a probability floor mixes a uniform distribution
over the allowed options into every softmax (Mohandoss & Dwivedi), plus an entropy bonus.
Updates: one Adam step per minibatch of m architectures on
    loss = -mean_i (R_i - b) * sum_t log p(a_it)  -  entropy_weight * mean_i H_i
with b an exponential moving average of the rewards seen so far. Optional experience replay
(Mohandoss & Dwivedi): the best `replay_count` of the results seen so far join every update.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn as nn

from edgenas.controllers.base import CONTROLLERS, Controller, History
from edgenas.spaces.base import SearchSpace


class LSTMPolicy(nn.Module):
    def __init__(self, kind_sizes: Sequence[int], hidden_size: int) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.start = nn.Parameter(torch.zeros(hidden_size))
        self.embeddings = nn.ModuleList(nn.Embedding(n, hidden_size) for n in kind_sizes)
        self.cell = nn.LSTMCell(hidden_size, hidden_size)
        self.heads = nn.ModuleList(nn.Linear(hidden_size, n) for n in kind_sizes)


@CONTROLLERS.register
class ReinforceController(Controller):
    name = "reinforce"

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
        replay_size: int = 0,
        replay_count: int = 0,
    ) -> None:
        super().__init__(space, seed)
        if replay_size < 0 or replay_count < 0 or (replay_count > 0 and replay_size == 0):
            raise ValueError("replay_size and replay_count must be >= 0, and replay_count > 0 needs replay_size > 0")
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
        # Experience replay (Mohandoss & Dwivedi): the best `replay_size` results seen so far;
        # `replay_count` of them join every update's batch.
        self.replay_size = replay_size
        self.replay_count = replay_count

    # -- the policy, step by step -----------------------------------------------------------
    def _distribution(self, h: torch.Tensor, kind: int, mask: Sequence[bool]) -> torch.Tensor:
        logits = self.policy.heads[kind](h) / self.temperature
        allowed = torch.tensor(mask, dtype=torch.bool)
        logits = logits.masked_fill(~allowed, float("-inf"))
        probs = torch.softmax(logits, dim=-1)
        if self.probability_floor > 0:
            uniform = allowed.to(probs.dtype) / allowed.sum(dim=-1, keepdim=True)
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

    def propose(self, n: int, history: History) -> list[list[int]]:
        with torch.no_grad():
            return [self._run(None)[0] for _ in range(n)]

    def sample_batch(self, n: int) -> list[list[int]]:
        """`n` sequences sampled from the policy at once (one batched LSTM step per position):
        the cheap way to draw thousands of candidates. Same distribution as `propose`, other
        random draws."""
        p = self.policy
        with torch.no_grad():
            h = torch.zeros(n, p.hidden_size)
            c = torch.zeros(n, p.hidden_size)
            inp = p.start.unsqueeze(0).expand(n, -1).clone()
            seqs: list[list[int]] = [[] for _ in range(n)]
            active = list(range(n))
            while active:
                steps = [(i, d) for i in active if (d := self.space.next_decision(seqs[i])) is not None]
                if not steps:
                    break
                rows = torch.tensor([i for i, _ in steps])
                h_new, c_new = p.cell(inp[rows], (h[rows], c[rows]))
                h[rows], c[rows] = h_new, c_new
                for kind in sorted({d.kind for _, d in steps}):
                    group = [(i, d) for i, d in steps if d.kind == kind]
                    idx = torch.tensor([i for i, _ in group])
                    probs = self._distribution(h[idx], kind, [d.mask for _, d in group])
                    picks = torch.multinomial(probs, 1, generator=self.generator)[:, 0]
                    inp[idx] = p.embeddings[kind](picks)
                    for (i, _), a in zip(group, picks.tolist()):
                        seqs[i].append(int(a))
                active = [i for i, _ in steps]
        return seqs

    def log_prob(self, actions: Sequence[int]) -> float:
        """log p(actions) under the current policy."""
        with torch.no_grad():
            return float(self._run(actions)[1])

    def log_prob_prefix(self, prefix: Sequence[int]) -> float:
        """log p(the sequence starts with `prefix`) under the current policy."""
        with torch.no_grad():
            return float(self._run(prefix, prefix_only=True)[1])

    def learn(self, history: History) -> dict[str, float]:
        batch, values = history.last()
        if not batch:
            raise ValueError("learn() needs a history whose latest update told at least one result")
        replayed = self.replayed(history.before_last())[: self.replay_count]
        batch_r = torch.tensor(values + [v for _, v in replayed], dtype=torch.float32)
        if self.baseline is None:
            self.baseline = float(torch.tensor(values).mean())
        advantages = batch_r - self.baseline
        loss, ent = self._policy_step(batch + [a for a, _ in replayed], advantages)
        baseline_used = self.baseline
        for value in values:
            self.baseline = self.baseline_decay * self.baseline + (1 - self.baseline_decay) * value
        self.updates += 1
        return {
            "loss": loss,
            "entropy": ent,
            "baseline": baseline_used,
            "mean_reward": float(torch.tensor(values).mean()),
        }

    def _scores(self, batch: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed log-probabilities and entropies of whole sequences, with gradients."""
        log_probs, entropies = [], []
        for seq in batch:
            _, lp, e = self._run(seq)
            log_probs.append(lp)
            entropies.append(e)
        return torch.stack(log_probs), torch.stack(entropies)

    def _policy_step(self, batch: list[list[int]], advantages: torch.Tensor) -> tuple[float, float]:
        """One REINFORCE step: loss = -mean(A * log p) - entropy_weight * mean(H)."""
        lp, ent = self._scores(batch)
        loss = -(advantages * lp).mean() - self.entropy_weight * ent.mean()
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return float(loss.detach()), float(ent.detach().mean())

    def replayed(self, history: History) -> list[tuple[list[int], float]]:
        """The experience-replay buffer after `history`: the best `replay_size` distinct sequences
        told, best first (ties: the one told first, within an update the earlier position)."""
        replay: list[tuple[list[int], float]] = []
        if self.replay_size == 0:
            return replay
        for batch, values in history.batches():
            known = {tuple(a) for a, _ in replay}
            fresh = [(a, v) for a, v in zip(batch, values) if tuple(a) not in known]
            replay = sorted(replay + fresh, key=lambda item: -item[1])[: self.replay_size]
        return replay

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
