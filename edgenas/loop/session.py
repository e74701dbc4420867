"""The search as ask / tell (Optuna's shape, one controller update at a time):

    while (batch := session.ask()) is not None:
        session.evaluate(batch)      # gates, training, every result recorded as it arrives
        if batch.cut: break          # --max-minutes reached inside the batch
        session.tell(batch)          # the controller learns; the update is checkpointed

`ask` asks the stop rules, the pruner for promotions due, the enqueued networks (`--start`) and
then the controller; `evaluate` runs each proposal through the middleware and the rest on the
evaluator; `tell` records what the controller is told for the batch (rewards, scalarised for
`--objectives`) and has it learn. The controller reads its history (every sample told, the rungs
reached, the objective vectors) from the store through `history()`; it keeps no copy. The store
is written the moment a result exists: a resumed search reuses every finished trial.
"""

from __future__ import annotations

import copy
import dataclasses
import random
import statistics
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from edgenas import controllers, faults, pareto
from edgenas.evaluate import (
    ChildResult,
    PendingChild,
    finish_child,
    pending_from_trial,
    record_promotion,
    record_trial,
)
from edgenas.evaluators.base import Evaluator, TrainJob, TrainOutcome
from edgenas.fsutil import atomic_write_bytes
from edgenas.hardware.latency import Measurer
from edgenas.loop import middleware, pruners, stops
from edgenas.loop.history import read_history
from edgenas.loop.log import RunLog
from edgenas.run.rundir import PIPELINE_NAME, describe_dataset, load_checkpoint, save_checkpoint, versions
from edgenas.run.store import Store, Trial
from edgenas.settings.pipeline import Pipeline, SearchSettings
from edgenas.spaces.base import SearchSpace

if TYPE_CHECKING:
    from edgenas.constraints import Constraints
    from edgenas.hardware.profiles import Profile
    from edgenas.table import Table
    from edgenas.training.data import Dataset


@dataclass
class Progress:
    """A snapshot for progress displays; numbers only."""

    sampled: int
    total: int
    trained: int
    rejected: int
    failed: int
    reused: int
    stopped: int
    best_reward: float | None
    best_val_accuracy: float | None
    best_params: int | None
    last_reward: float | None
    last_status: str | None
    elapsed_seconds: float
    phase: str = "search"
    took_over_lock_from: int | None = None  # PID of a dead search whose stale lock was taken
    # what this snapshot is about (None: a plain refresh)
    trial: Trial | None = None  # the child that just finished (or was reused, or reached a rung)
    epochs: int | None = None  # the epochs it was trained to (None: not trained: rejected, failed early, looked up)
    was_reused: bool = False  # answered from an earlier trial of the same network
    rung: int | None = None  # a promotion: the rung (1, 2, ...) the child just trained to
    update: int | None = None  # the controller update that just finished (0-based)
    update_stats: dict[str, float] | None = None  # what the controller reported for it
    seconds_left: float | None = None  # to --max-minutes' deadline (None: no time limit)


@dataclass
class Prepared:
    """What `edgenas.search.prepare` checked and built from a pipeline, before any run directory."""

    profile: Profile
    data: Dataset
    space: SearchSpace
    device: Any  # torch.device
    constraints: Constraints
    table: Table | None = None
    starts: tuple[tuple[int, ...], ...] = ()  # search.start as action sequences, in order
    workers: int = 1  # training slots (process evaluator), after children_per_gpu
    gpus_per_job: float = 0.0  # GPU share of each Ray task, after children_per_gpu
    setup: str | None = None  # why the pipeline was chosen for the data (photos), said at the start of the run
    templates: tuple[Any, ...] = ()  # loop.templates.Template: evaluated first, before the --start networks


def curriculum_space(space: SearchSpace, cfg: SearchSettings, update_index: int) -> SearchSpace:
    """Zoph & Le's depth curriculum: the space with its maximum depth capped at
    curriculum_start + update_index // curriculum_every (the space itself once that reaches it).
    Same decision kinds, so the controller's policy carries over as the depth grows."""
    if not cfg.curriculum_start:
        return space
    depth = cfg.curriculum_start + update_index // cfg.curriculum_every
    if depth >= space.max_layers:  # type: ignore[attr-defined]
        return space
    capped = copy.copy(space)
    capped.max_layers = depth  # type: ignore[attr-defined]
    return capped


@dataclass
class Enqueued:
    """Networks evaluated before the controller's proposals (`--start`, Optuna's enqueued trials),
    `per_update` of them per update, in order. Which ones an update takes follows from its index
    alone, so a resumed search takes the same."""

    actions: tuple[tuple[int, ...], ...]
    per_update: int

    def take(self, update_index: int, n: int) -> list[list[int]]:
        start = update_index * self.per_update
        return [list(a) for a in self.actions[start : start + self.per_update]][:n]


@dataclass
class Batch:
    """One update's work, as `ask` gives it, and its results as they arrive."""

    update_index: int
    space: SearchSpace  # the (curriculum-capped) space its proposals are decoded in
    actions: list[list[int]]  # enqueued networks first, then the controller's proposals
    promotions: list[tuple[int, int]]  # (trial id, rung) continuing to the next rung
    trials: list[Trial | None] = field(default_factory=list)  # per position, once answered
    answers: list[float | None] = field(default_factory=list)  # first-rung reward per position
    pending: dict[str, tuple[PendingChild, list[int]]] = field(default_factory=dict)  # key -> (child, positions)
    promoted: dict[str, tuple[Trial, int]] = field(default_factory=dict)  # key -> (trial, rung it trains to)
    cut: bool = False  # --max-minutes stopped a training job of this batch from starting

    def __post_init__(self) -> None:
        self.trials = [None] * len(self.actions)
        self.answers = [None] * len(self.actions)


class SearchSession:
    """One search in one run directory, as ask / tell. Owns the update counter, the progress
    counters and the order of side effects; the controller, the store and the evaluator are given."""

    def __init__(
        self,
        pipeline: Pipeline,
        prepared: Prepared,
        run_dir: Path,
        store: Store,
        evaluator: Evaluator,
        controller: controllers.Controller,
        measurer: Measurer | None = None,
        on_progress: Callable[[Progress], None] | None = None,
        not_after: float | None = None,
        took_over_lock_from: int | None = None,
    ) -> None:
        cfg = pipeline.search
        self.pipeline, self.prepared, self.run_dir = pipeline, prepared, run_dir
        self.store, self.evaluator, self.measurer = store, evaluator, measurer
        self.on_progress, self.not_after, self.took_over_lock_from = on_progress, not_after, took_over_lock_from
        self.controller = controller
        self.pruner = pruners.create(pipeline, trains=evaluator.trains)
        self.stops = stops.stop_rules(cfg, self.deadline if not_after is not None else None)
        self.failures = stops.FailureHandler(cfg.abort_min_evaluated, cfg.abort_failed_fraction)
        self.middleware: Sequence[middleware.Middleware] = middleware.DEFAULT
        self.enqueued = Enqueued(
            tuple(t.actions for t in prepared.templates) + prepared.starts, cfg.architectures_per_update
        )
        self.update_index, self.sampled = 0, 0
        self.last: tuple[float | None, str | None] = (None, None)
        self.stopped_by = "children"  # what ended the search: every child sampled, or a stop rule
        self.t_start = time.perf_counter()
        self.warm_up_seconds = 0.0  # the evaluator's one-off work (a supernet's training), outside the clock
        self.log = RunLog(run_dir)
        self._history: tuple[int, controllers.History] | None = None  # the last history read

    # -- the run directory -----------------------------------------------------------------
    def begin(self, resume: bool, command: str | None) -> None:
        """A new run writes its settings and an initial checkpoint; a resumed one continues
        from its last checkpoint: the controller's learned state (the history it reads is in the
        store) and the update in flight, asked again (it gets the same proposals, and the samples
        already recorded for it are replaced, not added)."""
        store, p = self.store, self.prepared
        if self.took_over_lock_from is not None:
            store.set_meta("lock_taken_over_from", self.took_over_lock_from)
        if resume:
            ckpt = load_checkpoint(self.run_dir)
            if ckpt is not None:
                self.controller.load_state_dict(ckpt["controller"])
                self.update_index = int(ckpt["update_index"])
            store.set_meta("resumed_at", datetime.now(timezone.utc).isoformat())
        else:
            store.set_meta("pipeline", self.pipeline.to_json())
            store.set_meta("profile", {**p.profile.settings(), "fingerprint": p.profile.fingerprint()})
            store.set_meta("dataset", describe_dataset(p.data))
            store.set_meta("versions", versions())
            store.set_meta("command", command)
            store.set_meta("started_at", datetime.now(timezone.utc).isoformat())
            store.set_meta("templates", [{"name": t.name, "key": t.key} for t in p.templates])
            atomic_write_bytes(self.run_dir / PIPELINE_NAME, self.pipeline.to_toml().encode("utf-8"))
            save_checkpoint(self.run_dir, 0, self.controller)
        self.sampled = store.sample_count(before_update=self.update_index)

    def warm_up(self) -> None:
        """The evaluator's one-off work (a supernet's training, or reading the trained one), then
        the search's clock: --max-minutes and the progress lines' elapsed time and ETA start after
        it. (Trained once per dataset and reused by later searches, the supernet is not part of
        a search's time; a supernet that outlasts the limit would otherwise leave nothing scored.)"""
        t0 = time.perf_counter()
        self.evaluator.warm_up()
        took = time.perf_counter() - t0
        self.warm_up_seconds += took
        self.t_start += took
        if self.not_after is not None:
            self.not_after += took

    # -- ask -------------------------------------------------------------------------------
    def ask(self) -> Batch | None:
        """The next update's batch, or None when the search is over (`stopped_by` says why)."""
        for rule in self.stops:
            if (reason := rule.reason(self.store)) is not None:
                self.stopped_by = reason
                return None
        cfg = self.pipeline.search
        due = self.pruner.due(self.store, self.update_index)
        m = min(cfg.architectures_per_update, cfg.children - self.sampled)
        if m <= 0 and not due:  # every child sampled; with multi-fidelity, every promotion made
            return None
        space = self.controller.space = curriculum_space(self.prepared.space, cfg, self.update_index)
        actions = self.enqueued.take(self.update_index, m)
        if m > len(actions):
            actions += self.controller.propose(m - len(actions), self.history(self.update_index))
        return Batch(self.update_index, space, actions, due)

    # -- evaluate --------------------------------------------------------------------------
    def evaluate(self, batch: Batch) -> None:
        """Every proposal through the middleware (answered at once or queued), then the queued
        children and the promotions on the evaluator; each result recorded as it arrives."""
        for position, actions in enumerate(batch.actions):
            arch = batch.space.decode(actions)
            for piece in self.middleware:
                if piece(self, batch, position, actions, arch):
                    break
        jobs = self._jobs(batch)  # each job's deadline taken when the evaluator takes the job
        lazy = (
            dataclasses.replace(job, not_after=self.deadline()) if self.not_after is not None else job for job in jobs
        )
        for outcome in self.evaluator.run(lazy):
            if outcome.not_started:  # past --max-minutes: nothing recorded for it
                batch.cut = True
            elif outcome.key in batch.promoted:
                self._record_promotion(batch, outcome)
            else:
                self._record_trained(batch, outcome)

    def _jobs(self, batch: Batch) -> list[TrainJob]:
        """The queued children's training jobs, then the promoted children's (continued from
        their saved state; one that reached its next rung before an interruption keeps it)."""
        thresholds = self.pruner.thresholds(self.store, batch.update_index)
        first_stop = self.pruner.first_stop
        jobs = [
            TrainJob(key, pre.arch.to_json(), pre.seed, thresholds, first_stop)
            for key, (pre, _) in batch.pending.items()
        ]
        rungs = self.pruner.rungs
        for trial_id, rung in batch.promotions:
            trial = self.store.trial(trial_id)
            assert trial is not None
            done = self.store.rung_result(trial_id, rung + 1)
            if done is not None:  # reached before an interruption: in the store, nothing to train
                continue
            below = self.store.rung_result(trial_id, rung)
            assert below is not None and below.state_path is not None
            batch.promoted[trial.arch_key] = (trial, rung + 1)
            stop = rungs[rung + 1] if rung + 2 < len(rungs) else None
            state = (self.run_dir / below.state_path).read_bytes()
            jobs.append(TrainJob(trial.arch_key, trial.arch, trial.seed, (), stop, state))
        return jobs

    def _finish(self, batch: Batch, pre: PendingChild, outcome: TrainOutcome) -> ChildResult:
        p = self.prepared
        return finish_child(batch.space, p.data, self.pipeline.reward, pre, outcome, p.profile.precision)

    def _record_promotion(self, batch: Batch, outcome: TrainOutcome) -> None:
        trial, rung = batch.promoted[outcome.key]
        epochs = self.pruner.rungs[rung]
        trial, reward = self._promote(batch.space, trial, outcome, rung, epochs, batch.update_index)
        self.last = (reward, f"{epochs} epochs")
        self.report(trial=trial, epochs=epochs, rung=rung)

    def _promote(
        self, space: SearchSpace, trial: Trial, outcome: TrainOutcome, rung: int, epochs: int, update_index: int
    ) -> tuple[Trial, float]:
        """A trial's further training recorded as its result at `rung`: the trial and its reward there."""
        p = self.prepared
        pre = pending_from_trial(space, trial, p.profile.statistic)
        res = finish_child(space, p.data, self.pipeline.reward, pre, outcome, p.profile.precision)
        trial = record_promotion(self.store, self.run_dir, trial, res, rung, epochs, update_index, outcome)
        return trial, res.reward.total

    def _record_trained(self, batch: Batch, outcome: TrainOutcome) -> None:
        pre, positions = batch.pending[outcome.key]
        res = self._finish(batch, pre, outcome)
        first_rung = (self.pruner.rungs[0], outcome.train_state) if self.pruner.multi_fidelity else None
        trial = self.record_new(batch, positions[0], pre.arch, res, first_rung)
        for p in positions[1:]:  # repeats within the batch: the same trial, reused
            self.store.add_sample(batch.update_index, p, batch.actions[p], outcome.key, trial.id,
                                  self.first_rung_reward(trial), True)  # fmt: skip
            self.answer(batch, p, trial, True)

    def record_new(
        self,
        batch: Batch,
        position: int,
        arch: Any,
        res: ChildResult,
        first_rung: tuple[int, bytes | None] | None = None,
    ) -> Trial:
        """A new child's result: its files, trial and sample written; the failure rule asked."""
        trial = record_trial(self.store, self.run_dir / "children", batch.actions[position], arch, res,
                             batch.update_index, position, first_rung)  # fmt: skip
        self.answer(batch, position, trial, False)
        self.failures.check(self.store)
        return trial

    def answer(self, batch: Batch, position: int, trial: Trial, reused: bool) -> None:
        batch.answers[position] = self.first_rung_reward(trial)
        batch.trials[position] = trial
        self.sampled += 1
        self.last = (trial.reward, "reused" if reused else trial.status)
        trained = trial.status in ("ok", "stopped") and not reused and self.evaluator.trains
        trained = trained and not self.evaluator.inherits  # a supernet's candidates are not trained
        epochs = (len(trial.curve or ()) if trial.status == "stopped" else self.pruner.rungs[0]) if trained else None
        self.report(trial=trial, epochs=epochs, was_reused=reused)

    def first_rung_reward(self, trial: Trial) -> float:
        """What the controller is told for a sample: the reward at the first rung (one fidelity
        for every child of a batch); without multi-fidelity, the trial's reward."""
        if self.pruner.multi_fidelity:
            r0 = self.store.rung_result(trial.id, 0)
            if r0 is not None:
                return r0.reward
        return trial.reward

    # -- after the search: the best candidates trained again, the winner chosen among them -----
    def retrain_inherited(self, trainer: Evaluator) -> None:
        """Weight sharing ranks candidates cheaply and roughly: the `retrain_top` best by inherited
        score, and the templates that fit, are trained stand-alone on `trainer` ([training], as
        any child), and each result becomes the trial's rung 1 (its accuracy and reward), so the
        winner, the top-candidates table and the fronts come from them: the answer is never worse
        than the best template that fits, measured alike. Each result is committed as it arrives;
        a resumed search retrains only the ones not yet done (the same ones: those at rung 1
        count, the rest are the next best at rung 0). --max-minutes stops the scoring, not these
        trainings: a winner picked by inherited score alone would be a rough guess (--retrain-top
        0 asks for one)."""
        todo = self.finalists(self.pipeline.search.retrain_top, every_template=True)
        self._train_again(trainer, todo, self.pipeline.training.epochs, "retrain")

    def train_finalists(self, trainer: Evaluator) -> None:
        """--finalists: a search's own scores (one short training each) order close networks
        roughly, so the K best children that are not templates, and the best template, are
        trained again on `trainer` (a recipe of `finalist_epochs`) and each result becomes the
        trial's rung 1: the winner is the best of them at that fidelity. The search kept their
        estimated time inside --max-minutes (`deadline`); they are not cut by it. Committed as
        they arrive; a resumed search trains only the ones not yet done."""
        self._train_again(trainer, self.finalists(self.pipeline.search.finalists), self.finalist_epochs, "final")

    @property
    def finalist_epochs(self) -> int:
        return self.pipeline.search.finalist_epochs or 2 * self.pipeline.training.epochs

    def finalists(self, k: int, every_template: bool = False) -> list[Trial]:
        """The trials still to train again: the `k` best at rung 0 that are not templates (fewer by
        those already at rung 1), and the templates that finished (`every_template`) or the best
        of them, unless one is at rung 1 already. The same ones after an interruption."""
        if not k:
            return []
        keys = list(dict.fromkeys(t.key for t in self.prepared.templates))  # in their order, each once
        others = len([t for t in self.store.at_rung(1, k + len(keys)) if t.arch_key not in keys])
        best = [t for t in self.store.at_rung(0, k + len(keys)) if t.arch_key not in keys]
        todo = best[: max(0, k - others)]
        ran = [t for key in keys if (t := self.store.trial_by_key(key)) and t.status == "ok"]
        if every_template:
            return todo + [t for t in ran if not t.rung]
        if ran and not any(t.rung for t in ran):
            todo.append(max(ran, key=lambda t: t.reward))
        return todo

    def deadline(self) -> float:
        """--max-minutes as a time.time(): the limit, less the finalists' estimated training (each
        one's own training time, scaled from [training] epochs to `finalist_epochs`) and less a
        child's median training time (a child started just before it would otherwise delay them)."""
        assert self.not_after is not None
        cfg = self.pipeline.search
        if not cfg.finalists or not self.evaluator.trains or self.evaluator.inherits:
            return self.not_after
        scale = self.finalist_epochs / self.pipeline.training.epochs
        finalists = scale * sum(t.train_seconds or 0.0 for t in self.finalists(cfg.finalists))
        child = statistics.median([t.train_seconds or 0.0 for t in self.store.trials("ok")] or [0.0])
        return self.not_after - finalists - child

    def _train_again(self, trainer: Evaluator, todo: list[Trial], epochs: int, phase: str) -> None:
        if not todo:
            return
        space = self.prepared.space
        self.report(phase)
        again = {t.arch_key: t for t in todo}
        jobs = [TrainJob(t.arch_key, t.arch, t.seed, (), None) for t in todo]
        for outcome in trainer.run(jobs):
            trial = again[outcome.key]
            trial, reward = self._promote(space, trial, outcome, 1, epochs, self.update_index)
            self.last = (reward, f"{epochs} epochs stand-alone" if phase == "retrain" else f"{epochs} epochs")
            self.report(phase, trial=trial, epochs=epochs, rung=1)

    # -- tell ------------------------------------------------------------------------------
    def history(self, before_update: int) -> controllers.History:
        """What the controller was told before `before_update`, read from the store. `tell` of one
        update and `ask` of the next read it for the same update with nothing written between, so
        the last read serves again."""
        if self._history is None or self._history[0] != before_update:
            self._history = (before_update, read_history(self.store, before_update, self.pipeline.reward.objectives))
        return self._history[1]

    def tell(self, batch: Batch) -> None:
        """What the controller is told for the batch (rewards, scalarised for `--objectives`) goes
        to the store; the controller learns from the history through this update (with the rungs
        its promotions reached); the update is recorded and checkpointed."""
        rewards = [a for a in batch.answers if a is not None]
        assert len(rewards) == len(batch.actions)
        objectives = self.pipeline.reward.objectives
        if objectives and batch.actions:
            rewards = self._scalarised(batch, objectives)
        stats = {}
        if batch.actions:
            self.store.set_told(batch.update_index, rewards)
            stats = self.controller.learn(self.history(batch.update_index + 1))
        self.store.add_update(batch.update_index, stats)
        self.update_index += 1
        save_checkpoint(self.run_dir, self.update_index, self.controller)
        self.report(update=batch.update_index, update_stats=stats)
        faults.point("after-update")

    def _scalarised(self, batch: Batch, objectives: Sequence[str]) -> list[float]:
        """Multi-objective: rewards that scalarise each child's objective vector with one random
        weight vector per update (ParEGO's augmented Tchebycheff, objectives scaled over every
        finished trial); the vectors themselves are in the history. The weights come from (seed,
        update), the scaling from the store: a resumed search tells the same."""
        vectors = [
            pareto.goodness(objectives, pareto.trial_values(t)) if t is not None and t.status == "ok" else None
            for t in batch.trials
        ]
        history = [pareto.goodness(objectives, pareto.trial_values(t)) for t in self.store.trials("ok")]
        lam = pareto.weights(random.Random(f"{self.pipeline.search.seed}:{batch.update_index}"), len(objectives))
        scores = pareto.scalarise([v for v in history if v is not None] + vectors, lam)[-len(vectors) :]
        reject = self.pipeline.reward.reject_reward
        return [reject if x is None else x for x in scores]

    # -- progress --------------------------------------------------------------------------
    def report(self, phase: str = "search", **event: Any) -> None:
        """A progress snapshot for `on_progress`; events (a finished child, a finished update) also
        go to the run directory's search.log as one plain line each."""
        logged = bool(event) and not event.get("was_reused")  # search.log has no line for a reuse
        if self.on_progress is None and not logged:
            return
        counts = self.store.status_counts()
        top = self.store.top(1)
        best = top[0] if top else None
        progress = Progress(
            self.sampled,
            self.pipeline.search.children,
            counts["ok"],
            counts["rejected"],
            counts["failed"],
            self.store.reused_count(),
            counts["stopped"],
            best.reward if best else None,
            best.val_accuracy if best else None,
            best.params if best else None,
            self.last[0],
            self.last[1],
            time.perf_counter() - self.t_start,
            phase,
            took_over_lock_from=self.took_over_lock_from,
            seconds_left=max(0.0, self.not_after - time.time()) if self.not_after is not None else None,
            **event,
        )
        if logged:
            self.log.write(progress)
        if self.on_progress is not None:
            self.on_progress(progress)
