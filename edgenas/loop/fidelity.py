"""Multi-fidelity evaluation: asynchronous successive halving (ASHA, Li et al. 2020) over epochs.

Every new child trains for the first rung's epochs; the best of each rung continue, from where
they stopped (weights, optimizer, schedule and random streams saved at the rung), to the next
rung's epochs, until the last rung (`training.epochs`, the schedule's full length). With
reduction eta, rung r has about eta^r times the first rung's epochs, and a child is promoted out
of rung r once it is among the top 1/eta of everything that rung has seen (ASHA's rule: nobody
waits for a rung to fill).

The search decides promotions at the start of each controller update, from the rung results of
earlier updates only, so a resumed search makes exactly the same decisions. Rewards are only
compared within one rung: promotions rank a rung's results, the winner comes from the highest
rung reached, and the controllers that use fidelity rank a child by (highest rung, reward there).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence


def rung_epochs(max_epochs: int, min_epochs: int, reduction: int) -> tuple[int, ...]:
    """The epochs of each rung, ascending, ending at `max_epochs`: max_epochs / reduction^i
    (rounded) for as long as that is at least `min_epochs`. One rung (no halving) when
    max_epochs < min_epochs * reduction."""
    out: list[int] = []
    budget = float(max_epochs)
    while budget >= min_epochs - 1e-9:
        e = max(min_epochs, int(round(budget)))
        if not out or e < out[-1]:
            out.append(e)
        budget /= reduction
    return tuple(reversed(out))


@dataclass(frozen=True)
class Standing:
    """One child's result at one rung, as promotion sees it."""

    trial_id: int
    rung: int
    reward: float
    params: int


def promotions(results: Sequence[Standing], rungs: int, reduction: int) -> list[tuple[int, int]]:
    """(trial_id, from_rung) for every child to promote now: at each rung below the last, the
    top floor(n / reduction) of the n results there (reward, then fewer parameters, then the
    earlier trial), minus those already at the next rung. Highest rungs first: the children
    closest to the full schedule go on first."""
    by_rung: dict[int, list[Standing]] = {}
    for r in results:
        by_rung.setdefault(r.rung, []).append(r)
    out: list[tuple[int, int]] = []
    for rung in sorted(by_rung, reverse=True):
        if rung >= rungs - 1:
            continue
        ranked = sorted(by_rung[rung], key=lambda s: (-s.reward, s.params, s.trial_id))
        above = {s.trial_id for s in by_rung.get(rung + 1, [])}
        for s in ranked[: len(ranked) // reduction]:
            if s.trial_id not in above:
                out.append((s.trial_id, rung))
    return out
