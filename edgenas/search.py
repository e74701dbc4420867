"""The search loop: propose -> evaluate -> record -> learn, then the winner.

Everything else lives where it belongs: the hard limits in `constraints`, one child's evaluation
(gates, export, timing, reward, recording) in `evaluate`, the run directory (paths, checkpoints,
manifest, the verified winner) in `rundir`, where children train in `executors`.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from edgenas import controllers, executors, faults, pareto, spaces
from edgenas.config import Pipeline, SearchSettings
from edgenas.constraints import Constraints
from edgenas.errors import ConfigError, RunDirError, SearchAborted
from edgenas.evaluate import (
    ChildResult,
    PendingChild,
    child_seed,
    feasibility,
    finish_child,
    pending_from_trial,
    prepare_child,
    record_promotion,
    record_trial,
    smallest_params,
)
from edgenas.executors import TrainJob
from edgenas.executors.table import TableExecutor, table_dataset
from edgenas.fidelity import Standing, promotions, rung_epochs
from edgenas.fsutil import atomic_write_bytes, atomic_write_json
from edgenas.measure.latency import Measurer, check_providers
from edgenas.profiles import Profile, load_profile
from edgenas.rundir import (
    DB_NAME,
    MANIFEST_NAME,
    PIPELINE_NAME,
    describe_dataset,
    finalize,
    load_checkpoint,
    make_run_dir,
    save_checkpoint,
    versions,
)
from edgenas.runlock import RunLock
from edgenas.spaces.base import SearchSpace
from edgenas.store import Store, Trial
from edgenas.table import Table
from edgenas.training.data import Dataset, load_pipeline_dataset
from edgenas.training.trainer import resolve_device


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


@dataclass
class SearchResult:
    run_dir: Path
    manifest: dict[str, Any]
    top: list[Trial]
    counts: dict[str, int]
    wall_seconds: float

    @property
    def winner(self) -> dict[str, Any] | None:
        return self.manifest.get("winner")


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
class Prepared:
    profile: Profile
    data: Dataset
    space: SearchSpace
    device: torch.device
    constraints: Constraints
    table: Table | None = None
    starts: tuple[tuple[int, ...], ...] = ()  # search.start as action sequences, in order
    workers: int = 1  # training slots (process executor), after children_per_gpu
    gpus_per_job: float = 0.0  # GPU share of each Ray task, after children_per_gpu


def prepare(pipeline: Pipeline) -> Prepared:
    """Everything that can fail on bad input, checked before any run directory or training."""
    profile = load_profile(pipeline.search.profile)
    check_providers(profile)
    if not profile.timing and pipeline.reward.needs_latency:
        raise ConfigError(
            f"profile '{profile.name}' does not time models, but the reward uses latency "
            "(max_latency_ms, a latency threshold, mnas / tunas or the latency objective); choose a timed profile "
            "or drop the latency terms"
        )
    device = resolve_device(pipeline.search.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"device '{pipeline.search.device}' was asked for but CUDA is not available; use --device cpu or auto"
        )
    data = table_dataset(pipeline.search) if pipeline.search.table else load_pipeline_dataset(pipeline)
    space = spaces.from_pipeline(pipeline, data.input_shape, data.num_classes)
    table = None
    if pipeline.search.table:
        table = Table.load(
            pipeline.search.table, space, pipeline.search.table_metric, pipeline.search.table_test_metric
        )
    constraints = Constraints.build(pipeline.reward, profile)
    constraints.check_feasible(smallest_params(space), space.name, math.prod(data.input_shape))
    controllers.create(pipeline.controller.name, space, seed=0, **pipeline.controller.options)  # check its options
    if pipeline.search.curriculum_start and not hasattr(space, "max_layers"):
        raise ConfigError(
            f"search.curriculum_start needs a space with a depth (max_layers); '{space.name}' has none. "
            "Use layerwise or blocks, or set curriculum_start = 0"
        )
    cfg = pipeline.search
    starts = start_actions(space, constraints, cfg, profile)
    if cfg.fidelity == "asha":
        if cfg.table:
            raise ConfigError(
                "search.fidelity = asha trains children over several rungs; a --table holds one result per "
                "network. Use fidelity = none with a table"
            )
        if len(search_rungs(pipeline)) < 2:
            raise ConfigError(
                f"search.fidelity = asha needs training.epochs ({pipeline.training.epochs}) of at least "
                f"min_epochs x reduction ({cfg.min_epochs} x {cfg.reduction}) to have two rungs; "
                "raise --epochs or lower search.min_epochs / search.reduction"
            )
    objectives = pipeline.reward.objectives or ()
    if objectives:
        if cfg.fidelity == "asha":
            raise ConfigError(
                "--objectives with --fidelity asha is not supported yet: promotions rank one reward; "
                "use fidelity none for a multi-objective search"
            )
        missing = [o for o in ("ram", "flash") if o in objectives and not constraints.needs_memory]
        if missing:
            raise ConfigError(
                f"objective(s) {', '.join(missing)} need peak RAM and flash estimates, made only under a RAM or flash "
                f"limit; profile '{profile.name}' has none: choose a microcontroller profile (e.g. --profile "
                "stm32f746) or give --max-ram-kb / --max-flash-kb"
            )
    if cfg.executor == "ray" and cfg.ray_address and not cfg.table:
        executors.check_reachable(cfg.ray_address)
    gpus = torch.cuda.device_count() if device.type == "cuda" else 0
    workers, gpus_per_job = executors.training_slots(
        cfg.executor,
        cfg.device if device.type == "cuda" else "cpu",
        cfg.workers,
        cfg.children_per_gpu,
        cfg.gpus_per_job,
        gpus,
    )
    return Prepared(profile, data, space, device, constraints, table, starts, workers, gpus_per_job)


def start_actions(
    space: SearchSpace, constraints: Constraints, cfg: SearchSettings, profile: Profile | None = None
) -> tuple[tuple[int, ...], ...]:
    """search.start (`--start`): each network as the action sequence the controller would sample
    for it. ConfigError for one that is not a network of the space or is over a hard limit that
    is known before training (it would only be rejected). Under the depth curriculum a start is
    read in the capped space of the update that evaluates it (i // architectures_per_update): a
    network as deep as that cap has no stop decision there, and a deeper one is refused."""
    out = []
    check = feasibility(space, constraints, profile)
    for i, text in enumerate(cfg.start):
        try:
            actions = space.actions_from_text(text)
        except ValueError as e:
            raise ConfigError(f"--start / search.start '{text}': {e}") from None
        if check is not None and not check(actions):
            limits = "; ".join(constraints.describe())
            raise ConfigError(
                f"--start / search.start '{text}' is over the search's limits ({limits}); "
                "raise the limits or start from a smaller network"
            )
        update = i // cfg.architectures_per_update
        capped = curriculum_space(space, cfg, update)
        if capped is not space:
            try:
                actions = capped.actions_from_text(text)
            except ValueError:
                raise ConfigError(
                    f"--start / search.start '{text}' is deeper than the depth curriculum allows when it is "
                    f"evaluated (update {update + 1}: at most {capped.max_layers} layers, "  # type: ignore[attr-defined]
                    f"search.curriculum_start = {cfg.curriculum_start}); raise curriculum_start, set it to 0, "
                    "or start from a shallower network"
                ) from None
        out.append(tuple(actions))
    return tuple(out)


def search_rungs(pipeline: Pipeline) -> tuple[int, ...]:
    """The epochs of each rung (one rung, training.epochs, without multi-fidelity)."""
    cfg = pipeline.search
    if cfg.fidelity != "asha":
        return (pipeline.training.epochs,)
    return rung_epochs(pipeline.training.epochs, cfg.min_epochs, cfg.reduction)


def due_promotions(store: Store, update_index: int, rungs: Sequence[int], reduction: int) -> list[tuple[int, int]]:
    """The promotions of update `update_index`, decided from the rung results of earlier updates
    only (so a resumed search decides the same)."""
    if len(rungs) < 2:
        return []
    params = {t.id: t.params for t in store.trials("ok")}
    standings = [
        Standing(r.trial_id, r.rung, r.reward, params.get(r.trial_id, 0)) for r in store.rung_results(update_index)
    ]
    return promotions(standings, len(rungs), reduction)


def run_search(
    pipeline: Pipeline,
    run_dir: Path | None = None,
    run_name: str | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    command: str | None = None,
    prepared: Prepared | None = None,
    resume: bool = False,
    measurer: Measurer | None = None,
    executor: executors.Executor | None = None,
) -> SearchResult:
    """Run a whole search and write its run directory (search.db, children/, controller.ckpt,
    winner.onnx, manifest.json). Raises EdgenasError subclasses on bad input, before training
    anything.

    Crash safety: a trial is committed (with the sample that asked for it) the moment it
    finishes; the controller is checkpointed atomically after every policy update. With
    `resume=True` the search continues in `run_dir`: the samples of the update that was in
    flight are replayed from the checkpoint (same seed, same proposals), finished trials are
    reused from the database and only the trials that were in flight are evaluated again."""
    t_start, wall_start = time.perf_counter(), time.time()
    prepared = prepared or prepare(pipeline)
    profile, data, space = prepared.profile, prepared.data, prepared.space
    cfg = pipeline.search
    # --max-minutes: no update starts after it, and no training job of an update starts after it
    # either (an update cut short keeps its finished children and teaches the controller nothing);
    # wall-clock time, which a worker process or a Ray task elsewhere can compare
    not_after = wall_start + cfg.max_minutes * 60 if cfg.max_minutes is not None else None
    if run_dir is None:
        if resume:
            raise RunDirError("resuming needs the run directory")
        run_dir = make_run_dir(cfg.runs_dir, profile.name, run_name)
    children_dir = run_dir / "children"
    children_dir.mkdir(exist_ok=True)
    controller = controllers.create(pipeline.controller.name, space, seed=cfg.seed, **pipeline.controller.options)
    controller.set_feasibility(feasibility(space, prepared.constraints, profile))

    threads = cfg.threads_per_job or max(1, (os.cpu_count() or 1) // prepared.workers)
    with (
        RunLock(run_dir) as lock,
        Store(run_dir / DB_NAME) as store,
        _closing(
            executor
            or (
                TableExecutor(prepared.table, space)
                if prepared.table is not None
                else executors.create(
                    cfg.executor, pipeline.to_json(), prepared.workers, threads, cfg.ray_address, prepared.gpus_per_job
                )
            ),
            owned=executor is None,
        ) as executor,
    ):
        if lock.took_over_from is not None:
            store.set_meta("lock_taken_over_from", lock.took_over_from)
        update_index = 0
        if resume:
            ckpt = load_checkpoint(run_dir)
            if ckpt is not None:
                controller.load_state_dict(ckpt["controller"])
                update_index = int(ckpt["update_index"])
            store.drop_samples_from(update_index)
            store.set_meta("resumed_at", datetime.now(timezone.utc).isoformat())
        else:
            store.set_meta("pipeline", pipeline.to_json())
            store.set_meta("profile", {**profile.settings(), "fingerprint": profile.fingerprint()})
            store.set_meta("dataset", describe_dataset(data))
            store.set_meta("versions", versions())
            store.set_meta("command", command)
            store.set_meta("started_at", datetime.now(timezone.utc).isoformat())
            atomic_write_bytes(run_dir / PIPELINE_NAME, pipeline.to_toml().encode("utf-8"))
            save_checkpoint(run_dir, 0, controller)
        sampled = store.sample_count()
        last: tuple[float | None, str | None] = (None, None)

        def report(phase: str = "search") -> None:
            if on_progress is None:
                return
            counts = store.status_counts()
            top = store.top(1)
            best = top[0] if top else None
            on_progress(
                Progress(
                    sampled,
                    cfg.children,
                    counts["ok"],
                    counts["rejected"],
                    counts["failed"],
                    store.reused_count(),
                    counts["stopped"],
                    best.reward if best else None,
                    best.val_accuracy if best else None,
                    best.params if best else None,
                    last[0],
                    last[1],
                    time.perf_counter() - t_start,
                    phase,
                    took_over_lock_from=lock.took_over_from,
                )
            )

        rungs = search_rungs(pipeline)
        multi = len(rungs) > 1
        objectives = pipeline.reward.objectives

        def first_rung_reward(trial: Trial) -> float:
            """What the controller is told for a sample: the reward at the first rung (one fidelity
            for every child of a batch); without multi-fidelity, the trial's reward."""
            if multi:
                r0 = store.rung_result(trial.id, 0)
                if r0 is not None:
                    return r0.reward
            return trial.reward

        report()
        stopped_by = "children"  # what ended the loop: every child sampled, or a limit
        while True:
            if not_after is not None and time.time() > not_after:
                stopped_by = "max_minutes"
                break
            if cfg.max_evaluated is not None:
                counts = store.status_counts()
                if counts["ok"] + counts["stopped"] >= cfg.max_evaluated:
                    stopped_by = "max_evaluated"
                    break
            due = due_promotions(store, update_index, rungs, cfg.reduction)
            m = min(cfg.architectures_per_update, cfg.children - sampled)
            if m <= 0 and not due:  # every child sampled; with multi-fidelity, every promotion made
                break
            space = controller.space = curriculum_space(prepared.space, cfg, update_index)
            # search.start first, architectures_per_update of them per update, in the order given
            per = cfg.architectures_per_update
            batch = [list(a) for a in prepared.starts[update_index * per : (update_index + 1) * per]][:m]
            if m > len(batch):
                batch += controller.propose(m - len(batch))
            answers: list[float | None] = [None] * m
            answer_trials: list[Trial | None] = [None] * m
            pending: dict[str, tuple[PendingChild, list[int]]] = {}

            def answered(position: int, trial: Trial, reused: bool) -> None:
                nonlocal sampled, last
                answers[position] = first_rung_reward(trial)
                answer_trials[position] = trial
                sampled += 1
                last = (trial.reward, "reused" if reused else trial.status)
                report()

            # 1. gates, export and timing, one child at a time, in this process
            for position, actions in enumerate(batch):
                arch = space.decode(actions)
                key = arch.key()
                trial = store.trial_by_key(key)
                if trial is not None:
                    # First sampled here before a crash (same update and position): not a reuse.
                    reused = (trial.origin_update, trial.origin_position) != (update_index, position)
                    store.add_sample(update_index, position, actions, key, trial.id, first_rung_reward(trial), reused)
                    answered(position, trial, reused)
                elif key in pending:
                    pending[key][1].append(position)  # a repeat within the batch waits for the first
                else:
                    pre = prepare_child(
                        space,
                        arch,
                        data,
                        profile,
                        prepared.constraints,
                        pipeline.reward,
                        child_seed(cfg.seed, key),
                        cfg.measure_timeout_s,
                        measurer,
                        lookup=prepared.table is not None,
                    )
                    if isinstance(pre, ChildResult):
                        answered(
                            position,
                            record_trial(store, children_dir, actions, arch, pre, update_index, position),
                            False,
                        )
                        check_failures(store, cfg)
                    else:
                        pending[key] = (pre, [position])
            # 2. training, on the executor; each trial is committed the moment it finishes
            thresholds = (
                store.stop_thresholds(update_index, pipeline.training.epochs, cfg.early_stop_min_children)
                if cfg.early_stopping == "median" and prepared.table is None
                else ()
            )
            jobs = [
                TrainJob(
                    key, pre.arch.to_json(), pre.seed, thresholds, rungs[0] if multi else None, not_after=not_after
                )
                for key, (pre, _) in pending.items()
            ]
            # multi-fidelity: the promoted children continue from their saved state (those that
            # reached the next rung before an interruption keep that result)
            promoted: dict[str, tuple[Trial, int]] = {}
            reached: list[tuple[Trial, int, float]] = []  # (trial, rung, reward there) of this update
            for trial_id, rung in due:
                trial = store.trial(trial_id)
                assert trial is not None
                done = store.rung_result(trial_id, rung + 1)
                if done is not None:
                    reached.append((trial, rung + 1, done.reward))
                    continue
                below = store.rung_result(trial_id, rung)
                assert below is not None and below.state_path is not None
                promoted[trial.arch_key] = (trial, rung + 1)
                stop = rungs[rung + 1] if rung + 2 < len(rungs) else None
                jobs.append(
                    TrainJob(
                        trial.arch_key,
                        trial.arch,
                        trial.seed,
                        (),
                        stop,
                        (run_dir / below.state_path).read_bytes(),
                        not_after=not_after,
                    )
                )
            cut = False
            for outcome in executor.run(jobs):
                if outcome.not_started:  # past --max-minutes: nothing recorded for it
                    cut = True
                    continue
                if outcome.key in promoted:
                    trial, rung = promoted[outcome.key]
                    pre = pending_from_trial(space, trial, profile.statistic)
                    res = finish_child(space, data, pipeline.reward, pre, outcome, prepared.profile.precision)
                    trial = record_promotion(store, run_dir, trial, res, rung, rungs[rung], update_index, outcome)
                    reached.append((trial, rung, res.reward.total))
                    last = (res.reward.total, f"{rungs[rung]} epochs")
                    report()
                    continue
                pre, positions = pending[outcome.key]
                res = finish_child(space, data, pipeline.reward, pre, outcome, prepared.profile.precision)
                first = positions[0]
                trial = record_trial(
                    store,
                    children_dir,
                    batch[first],
                    pre.arch,
                    res,
                    update_index,
                    first,
                    (rungs[0], outcome.train_state) if multi else None,
                )
                answered(first, trial, False)
                for p in positions[1:]:
                    store.add_sample(update_index, p, batch[p], outcome.key, trial.id, first_rung_reward(trial), True)
                    answered(p, trial, True)
                check_failures(store, cfg)
            if cut:
                stopped_by = "max_minutes"
                break
            rewards = [a for a in answers if a is not None]
            assert len(rewards) == m
            if objectives and m > 0:
                rewards = scalarised_rewards(
                    store, objectives, batch, answer_trials, cfg.seed, update_index, pipeline.reward.reject_reward,
                    controller,
                )  # fmt: skip
            stats = controller.learn(batch, rewards) if m > 0 else {}
            if reached:
                # in the order promotions were decided, not of completion: a resumed search tells the same
                order = {trial_id: i for i, (trial_id, _) in enumerate(due)}
                reached.sort(key=lambda item: order[item[0].id])
                controller.learn_rungs(
                    [t.actions for t, _, _ in reached], [r for _, r, _ in reached], [v for *_, v in reached]
                )
            store.add_update(update_index, stats)
            update_index += 1
            save_checkpoint(run_dir, update_index, controller)
            faults.point("after-update")

        report("winner")
        manifest = finalize(
            store, run_dir, space, data, profile, pipeline, time.perf_counter() - t_start, command, prepared.table
        )
        wall = time.perf_counter() - t_start
        manifest["search"]["wall_seconds"] = wall
        manifest["search"]["stopped_by"] = stopped_by
        store.set_meta("finished_at", datetime.now(timezone.utc).isoformat())
        from edgenas.report import write_report  # matplotlib is only needed here

        write_report(run_dir)
        atomic_write_json(run_dir / MANIFEST_NAME, manifest)  # last: its presence means "finished"
        return SearchResult(run_dir, manifest, store.top(5), store.status_counts(), wall)


def scalarised_rewards(
    store: Store,
    objectives: Sequence[str],
    batch: Sequence[Sequence[int]],
    trials: Sequence[Trial | None],
    seed: int,
    update_index: int,
    reject_reward: float,
    controller: controllers.Controller,
) -> list[float]:
    """Multi-objective: the controller is given each child's objective vector, then rewards
    that scalarise them with one random weight vector per update (ParEGO's augmented
    Tchebycheff, objectives scaled over every finished trial). The weights come from (seed,
    update), the scaling from the store: a resumed search tells the same."""
    import random

    vectors = [
        pareto.goodness(objectives, pareto.trial_values(t)) if t is not None and t.status == "ok" else None
        for t in trials
    ]
    controller.learn_objectives(batch, vectors)
    history = [pareto.goodness(objectives, pareto.trial_values(t)) for t in store.trials("ok")]
    lam = pareto.weights(random.Random(f"{seed}:{update_index}"), len(objectives))
    scores = pareto.scalarise([v for v in history if v is not None] + vectors, lam)[-len(vectors) :]
    return [reject_reward if x is None else x for x in scores]


@contextlib.contextmanager
def _closing(executor: executors.Executor, owned: bool):
    try:
        yield executor
    finally:
        if owned:
            executor.close()


def check_failures(store: Store, cfg: SearchSettings) -> None:
    """Stop the search when most children fail: something is wrong that retrying will not fix."""
    counts = store.status_counts()
    evaluated = counts["ok"] + counts["failed"]
    if evaluated >= cfg.abort_min_evaluated and counts["failed"] > cfg.abort_failed_fraction * evaluated:
        errors = store.conn.execute(
            "SELECT error, COUNT(*) AS n FROM trials WHERE status = 'failed' GROUP BY error ORDER BY n DESC LIMIT 1"
        ).fetchone()
        raise SearchAborted(
            f"{counts['failed']} of {evaluated} evaluated children failed (more than "
            f"{cfg.abort_failed_fraction:.0%}); the most common error ({errors['n']}x) was: {errors['error']}. "
            "Finished trials are saved in search.db; fix the cause, then resume with --resume"
        )
