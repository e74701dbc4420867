"""Pruners: what decides how long a child trains, from results at equal fidelity (Optuna's
`Pruner`). One per search, chosen by the pipeline:

- `NoPruner`: every child trains `training.epochs`;
- `MedianStop` (`early_stopping = "median"`): a child stops at the first epoch where its
  validation accuracy is below the median of earlier children's at that epoch;
- `Asha` (`fidelity = "asha"`): every child trains the first rung's epochs; at the start of each
  update the best of each rung continue to the next (`edgenas.loop.fidelity`).

Each decides from results of earlier updates only, so a resumed search decides the same.
"""

from __future__ import annotations

from typing import Sequence

from edgenas.loop.fidelity import Standing, promotions, rung_epochs
from edgenas.run.store import Store
from edgenas.settings.pipeline import Pipeline


class Pruner:
    """Contract: pure functions of the store and the update index. The default does nothing:
    one rung, no thresholds, no promotions."""

    def __init__(self, epochs: int) -> None:
        self.rungs: tuple[int, ...] = (epochs,)

    @property
    def multi_fidelity(self) -> bool:
        return len(self.rungs) > 1

    @property
    def first_stop(self) -> int | None:
        """Epochs a new child trains before it pauses (None: to the end of its schedule)."""
        return self.rungs[0] if self.multi_fidelity else None

    def thresholds(self, store: Store, update_index: int) -> tuple[float | None, ...]:
        """Per epoch, the validation accuracy below which a new child of this update stops."""
        return ()

    def due(self, store: Store, update_index: int) -> list[tuple[int, int]]:
        """(trial id, rung) of every child that goes on to the next rung in this update."""
        return []


class NoPruner(Pruner):
    """Every child trains its whole schedule."""


class MedianStop(Pruner):
    """The median stopping rule over the curves of children first sampled in earlier updates."""

    def __init__(self, epochs: int, min_children: int) -> None:
        super().__init__(epochs)
        self.epochs, self.min_children = epochs, min_children

    def thresholds(self, store: Store, update_index: int) -> tuple[float | None, ...]:
        return store.stop_thresholds(update_index, self.epochs, self.min_children)


class Asha(Pruner):
    """Asynchronous successive halving over epochs (`edgenas.loop.fidelity`)."""

    def __init__(self, rungs: Sequence[int], reduction: int) -> None:
        self.rungs, self.reduction = tuple(rungs), reduction

    def due(self, store: Store, update_index: int) -> list[tuple[int, int]]:
        if not self.multi_fidelity:
            return []
        params = {t.id: t.params for t in store.trials("ok")}
        standings = [
            Standing(r.trial_id, r.rung, r.reward, params.get(r.trial_id, 0)) for r in store.rung_results(update_index)
        ]
        return promotions(standings, len(self.rungs), self.reduction)


def search_rungs(pipeline: Pipeline) -> tuple[int, ...]:
    """The epochs of each rung (one rung, training.epochs, without multi-fidelity)."""
    cfg = pipeline.search
    if cfg.fidelity != "asha":
        return (pipeline.training.epochs,)
    return rung_epochs(pipeline.training.epochs, cfg.min_epochs, cfg.reduction)


def create(pipeline: Pipeline, trains: bool = True) -> Pruner:
    """The pipeline's pruner. `trains=False` (a table is looked up): nothing to stop early."""
    cfg, epochs = pipeline.search, pipeline.training.epochs
    if cfg.fidelity == "asha":
        return Asha(search_rungs(pipeline), cfg.reduction)
    if cfg.early_stopping == "median" and trains:
        return MedianStop(epochs, cfg.early_stop_min_children)
    return NoPruner(epochs)
