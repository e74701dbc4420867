"""A whole search: `prepare` checks the settings, `run_search` runs the ask / tell loop
(`edgenas.loop`) in a run directory and writes the winner.

Everything else lives where it belongs: the loop's pieces (ask / tell, middleware, stop rules,
pruners) in `loop`, the hard limits in `constraints`, one child's evaluation (gates, export,
timing, reward, recording) in `evaluate`, the run directory (paths, checkpoints, manifest, the
verified winner) in `rundir`, where and how children are evaluated in `evaluators`.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import torch

from edgenas import controllers, evaluators, spaces
from edgenas.constraints import Constraints
from edgenas.errors import BudgetError, ConfigError, RunDirError
from edgenas.evaluate import feasibility, smallest_breaks, smallest_params
from edgenas.evaluators import EvaluatorContext, table_dataset
from edgenas.fsutil import atomic_write_json
from edgenas.hardware.latency import Measurer, check_providers
from edgenas.hardware.profiles import Profile, load_profile
from edgenas.loop.pruners import search_rungs
from edgenas.loop.session import Prepared, Progress, SearchSession, curriculum_space
from edgenas.loop.templates import templates
from edgenas.run.lock import RunLock
from edgenas.run.rundir import DB_NAME, MANIFEST_NAME, finalize, make_run_dir
from edgenas.run.store import Store, Trial
from edgenas.settings.pipeline import Pipeline, SearchSettings
from edgenas.spaces.base import SearchSpace
from edgenas.table import Table
from edgenas.training.data import load_pipeline_dataset
from edgenas.training.trainer import resolve_device

__all__ = ["Prepared", "Progress", "SearchResult", "prepare", "run_search", "start_actions"]


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
    if space.smallest_is_cheapest:
        broken = smallest_breaks(space, constraints, profile)
        if broken:
            raise BudgetError(
                f"no network of the '{space.name}' space fits these limits: its smallest, which is also its "
                f"cheapest in parameters, memory, latency and energy, already has {broken}"
            )
    controllers.create(pipeline.controller.name, space, seed=0, **pipeline.controller.options)  # check its options
    if pipeline.search.curriculum_start and not hasattr(space, "max_layers"):
        raise ConfigError(
            f"search.curriculum_start needs a space with a depth (max_layers); '{space.name}' has none. "
            "Use layerwise or blocks, or set curriculum_start = 0"
        )
    cfg = pipeline.search
    starts = start_actions(space, constraints, cfg, profile)
    chosen = templates(space, constraints, profile) if cfg.templates and not cfg.curriculum_start else ()
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
    if cfg.finalists and (why := cfg.why_no_finalists()):
        raise ConfigError(f"search.finalists trains the best children again for longer, but {why}; set --finalists 0")
    # an unknown name: ConfigError listing the registered ones; then what that evaluator cannot serve
    evaluators.EVALUATORS.get(cfg.executor).check(pipeline, space)
    if cfg.executor == "ray" and cfg.ray_address and not cfg.table:
        evaluators.check_reachable(cfg.ray_address)
    gpus = torch.cuda.device_count() if device.type == "cuda" else 0
    workers, gpus_per_job = evaluators.training_slots(
        cfg.executor,
        cfg.device if device.type == "cuda" else "cpu",
        cfg.workers,
        cfg.children_per_gpu,
        cfg.gpus_per_job,
        gpus,
    )
    return Prepared(profile, data, space, device, constraints, table, starts, workers, gpus_per_job, templates=chosen)


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


def run_search(
    pipeline: Pipeline,
    run_dir: Path | None = None,
    run_name: str | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    command: str | None = None,
    prepared: Prepared | None = None,
    resume: bool = False,
    measurer: Measurer | None = None,
    evaluator: evaluators.Evaluator | None = None,
) -> SearchResult:
    """Run a whole search and write its run directory (search.db, children/, controller.ckpt,
    winner.onnx, manifest.json). Raises EdgenasError subclasses on bad input, before training
    anything.

    Crash safety: a trial is committed (with the sample that asked for it) the moment it
    finishes; the controller is checkpointed atomically after every policy update. With
    `resume=True` the search continues in `run_dir`: the samples of the update that was in
    flight are asked again from the checkpoint (same seed, same proposals), finished trials are
    reused from the database and only the trials that were in flight are evaluated again."""
    t_start, wall_start = time.perf_counter(), time.time()
    prepared = prepared or prepare(pipeline)
    cfg = pipeline.search
    not_after = wall_start + cfg.max_minutes * 60 if cfg.max_minutes is not None else None
    if run_dir is None:
        if resume:
            raise RunDirError("resuming needs the run directory")
        run_dir = make_run_dir(cfg.runs_dir, prepared.profile.name, run_name)
    (run_dir / "children").mkdir(exist_ok=True)
    controller = controllers.create(pipeline.controller.name, prepared.space, seed=cfg.seed,
                                    **pipeline.controller.options)  # fmt: skip
    controller.set_feasibility(feasibility(prepared.space, prepared.constraints, prepared.profile))
    with (
        RunLock(run_dir) as lock,
        Store(run_dir / DB_NAME) as store,
        _closing(evaluator or _evaluator(pipeline, prepared), owned=evaluator is None) as evaluator,
    ):
        session = SearchSession(pipeline, prepared, run_dir, store, evaluator, controller, measurer, on_progress,
                                not_after, lock.took_over_from)  # fmt: skip
        session.t_start = t_start
        session.begin(resume, command)
        session.warm_up()  # a supernet's training: before the search's clock (--max-minutes) starts
        session.report()
        while (batch := session.ask()) is not None:
            session.evaluate(batch)
            if batch.cut:
                session.stopped_by = "max_minutes"
                break
            session.tell(batch)
        if evaluator.inherits and cfg.retrain_top:  # jobs past --max-minutes are not started
            with _closing(evaluators.create("local", _context(pipeline, prepared)), owned=True) as trainer:
                session.retrain_inherited(trainer)
        elif cfg.finalists and evaluator.trains:  # trained inside --max-minutes: the search kept them the time
            longer = pipeline.override("training", epochs=session.finalist_epochs)
            with _closing(evaluators.create("local", _context(longer, prepared)), owned=True) as trainer:
                session.train_finalists(trainer)
        session.report("winner")
        return _finish(session, command)


def _evaluator(pipeline: Pipeline, prepared: Prepared) -> evaluators.Evaluator:
    """The registered evaluator of this search: the table's for a tabular search, else the one
    `search.executor` names."""
    cfg = pipeline.search
    return evaluators.create("table" if prepared.table is not None else cfg.executor, _context(pipeline, prepared))


def _context(pipeline: Pipeline, prepared: Prepared) -> EvaluatorContext:
    cfg = pipeline.search
    threads = cfg.threads_per_job or max(1, (os.cpu_count() or 1) // prepared.workers)
    return EvaluatorContext(pipeline.to_json(), prepared.workers, threads, cfg.ray_address, prepared.gpus_per_job,
                            prepared.space, prepared.table)  # fmt: skip


def _finish(session: SearchSession, command: str | None) -> SearchResult:
    """The winner verified and scored, the report, then the manifest (its presence means "finished")."""
    store, p, run_dir = session.store, session.prepared, session.run_dir
    elapsed = time.perf_counter() - session.t_start + session.warm_up_seconds
    manifest = finalize(store, run_dir, p.space, p.data, p.profile, session.pipeline, elapsed, command, p.table)
    wall = time.perf_counter() - session.t_start + session.warm_up_seconds
    manifest["search"]["wall_seconds"] = wall
    manifest["search"]["warm_up_seconds"] = session.warm_up_seconds
    manifest["search"]["stopped_by"] = session.stopped_by
    store.set_meta("finished_at", datetime.now(timezone.utc).isoformat())
    from edgenas.run.report import write_report  # matplotlib is only needed here

    write_report(run_dir)
    atomic_write_json(run_dir / MANIFEST_NAME, manifest)  # last: its presence means "finished"
    return SearchResult(run_dir, manifest, store.top(5), store.status_counts(), wall)


@contextlib.contextmanager
def _closing(evaluator: evaluators.Evaluator, owned: bool):
    try:
        yield evaluator
    finally:
        if owned:
            evaluator.close()
