"""The search loop: propose -> evaluate -> record -> learn, then the winner.

A child's evaluation is a pure function of (architecture, recipe, profile, reward settings,
seed) and the data. `prepare_child` (gates, export, timing) runs here; training runs on an
executor (this process, or a pool of worker processes); `finish_child` turns its outcome into
the result.
Gates run before expensive work: a candidate over the parameter budget is never trained, and a
hard latency limit is checked on the untrained network's graph (latency does not depend on the
weights), so it never wastes a training run either.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import os
import json
import platform
import sqlite3
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

import edgenas
from edgenas import controllers, executors, faults, spaces
from edgenas.executors import TrainJob, TrainOutcome
from edgenas.config import Pipeline, SearchSettings
from edgenas.errors import BudgetError, ConfigError, EdgenasError, RunDirError, SearchAborted
from edgenas.fsutil import atomic_write_bytes, atomic_write_json
from edgenas.measure.cost import count_params, static_cost
from edgenas.measure.export import INPUT_NAME, OPSET, OUTPUT_NAME, export_onnx
from edgenas.measure.latency import LatencyStats, Measurer, check_providers, default_measurer, make_session
from edgenas.profiles import Profile, load_profile
from edgenas.reward import RewardConfig, RewardTerms, check_latency, check_params, compute_reward, rejected_reward
from edgenas.spaces.base import SearchSpace
from edgenas.runlock import RunLock
from edgenas.store import Store, Trial
from edgenas.table import Table
from edgenas.training.data import Dataset, load_dataset
from edgenas.training.trainer import accuracy, predict, resolve_device

PARITY_TOLERANCE = 1e-4
DB_NAME = "search.db"


def profile_limit(profile: Profile, what: str, value: float) -> str | None:
    """Reason for rejecting a candidate on one of the device's own limits, or None."""
    limit = getattr(profile, f"max_{what}")
    if limit is not None and value > limit:
        unit = {"params": "params", "model_bytes": "bytes", "latency_ms": "ms"}[what]
        return f"{what.replace('_ms', '')} {value:,.4g} {unit} > profile {profile.name} limit {limit:,} {unit}"
    return None


def child_seed(seed: int, arch_key: str) -> int:
    """Seed of one child's initialisation and batch order: stable across runs and processes."""
    digest = hashlib.sha256(f"{seed}:{arch_key}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


@dataclass
class ChildResult:
    """Everything an evaluation produces; the loop stores it."""

    status: str  # ok | rejected | failed
    params: int
    reward: RewardTerms
    seed: int
    reason: str | None = None
    macs: int | None = None
    val_accuracy: float | None = None
    latency: LatencyStats | None = None
    onnx: bytes | None = None
    state_dict: dict[str, torch.Tensor] | None = None
    error: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    curve: tuple[float, ...] = ()


@dataclass
class PendingChild:
    """A child that passed every gate and waits for training."""

    arch: Any
    seed: int
    params: int
    macs: int
    latency: LatencyStats | None
    lat_ms: float | None
    seconds: dict[str, float]
    started: float


def prepare_child(
    space: SearchSpace,
    arch: Any,
    data: Dataset,
    profile: Profile,
    reward_cfg: RewardConfig,
    seed: int,
    measure_timeout_s: float | None = None,
    measurer: Measurer | None = None,
) -> ChildResult | PendingChild:
    """Build, cost, gate, export and time one architecture (in this process, never while a
    child trains). Returns the final result of a rejected or failed child, or what training needs."""
    t_start = time.perf_counter()
    seconds: dict[str, float] = {}
    torch.manual_seed(seed)
    model = space.build(arch)
    cost = static_cost(model, data.input_shape)
    reason = check_params(reward_cfg, cost.params) or profile_limit(profile, "params", cost.params)
    if reason:
        seconds["total"] = time.perf_counter() - t_start
        return ChildResult("rejected", cost.params, rejected_reward(reward_cfg), seed, reason, cost.macs, seconds=seconds)
    latency = None
    lat_ms = None
    if not profile.timing and profile.max_model_bytes is None:
        seconds["total"] = time.perf_counter() - t_start
        return PendingChild(arch, seed, cost.params, cost.macs, None, None, seconds, t_start)  # nothing to export for
    try:
        # Time the architecture's graph before training: identical graph, weights do not change
        # onnxruntime's work, and a hard latency limit then never wastes a training run.
        t0 = time.perf_counter()
        faults.point("export")
        graph = export_onnx(model, data.input_shape)
        seconds["export"] = time.perf_counter() - t0
        reason = profile_limit(profile, "model_bytes", len(graph))
        if reason is None:
            t0 = time.perf_counter()
            faults.point("measure")
            latency = (measurer or default_measurer()).measure(graph, profile, timeout_s=measure_timeout_s)
            seconds["measure"] = time.perf_counter() - t0
            lat_ms = latency.statistic(profile.statistic) if latency is not None else None
            if lat_ms is not None:
                reason = check_latency(reward_cfg, lat_ms) or profile_limit(profile, "latency_ms", lat_ms)
    except Exception as exc:  # a bad child is recorded, never fatal to the search
        seconds["total"] = time.perf_counter() - t_start
        return ChildResult(
            "failed", cost.params, rejected_reward(reward_cfg), seed, type(exc).__name__, cost.macs,
            latency=latency, error=f"{type(exc).__name__}: {exc}", seconds=seconds,
        )
    if reason:
        seconds["total"] = time.perf_counter() - t_start
        return ChildResult(
            "rejected", cost.params, rejected_reward(reward_cfg), seed, reason, cost.macs, latency=latency, seconds=seconds
        )
    return PendingChild(arch, seed, cost.params, cost.macs, latency, lat_ms, seconds, t_start)


def finish_child(
    space: SearchSpace, data: Dataset, reward_cfg: RewardConfig, pending: PendingChild, outcome: TrainOutcome
) -> ChildResult:
    """Turn a training outcome into the child's result: export the trained network, reward it."""
    seconds = dict(pending.seconds)
    onnx_bytes = None
    if outcome.ok and outcome.state_dict is not None:  # None: looked up in a table, nothing trained
        try:
            model = space.build(pending.arch)
            model.load_state_dict(outcome.state_dict)
            t0 = time.perf_counter()
            faults.point("export")
            onnx_bytes = export_onnx(model, data.input_shape)
            seconds["export"] = seconds.get("export", 0.0) + time.perf_counter() - t0
        except Exception as exc:
            outcome = TrainOutcome(outcome.key, False, error=f"{type(exc).__name__}: {exc}")
    seconds["train"] = outcome.train_seconds
    seconds["total"] = seconds.get("export", 0.0) + seconds.get("measure", 0.0) + (outcome.train_seconds or 0.0)
    if outcome.stopped:
        # Stopped by the median rule: rewarded with the accuracy it had reached; never a winner.
        terms = compute_reward(reward_cfg, outcome.val_accuracy or 0.0, pending.params, 2 * pending.macs, pending.lat_ms)
        return ChildResult(
            "stopped", pending.params, terms, pending.seed, outcome.stopped, pending.macs, outcome.val_accuracy,
            pending.latency, seconds=seconds, curve=outcome.curve,
        )
    if not outcome.ok:
        return ChildResult(
            "failed", pending.params, rejected_reward(reward_cfg), pending.seed, (outcome.error or "").split(":")[0],
            pending.macs, latency=pending.latency, error=outcome.error, seconds=seconds,
        )
    terms = compute_reward(reward_cfg, outcome.val_accuracy, pending.params, 2 * pending.macs, pending.lat_ms)
    return ChildResult(
        "ok", pending.params, terms, pending.seed, None, pending.macs, outcome.val_accuracy, pending.latency,
        onnx_bytes, outcome.state_dict, seconds=seconds, curve=outcome.curve,
    )


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


def versions() -> dict[str, str]:
    import onnx
    import onnxruntime
    import sklearn
    import thop  # noqa: F401

    from importlib.metadata import version

    return {
        "edgenas": edgenas.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "thop": version("thop"),
        "scikit-learn": sklearn.__version__,
        "numpy": np.__version__,
    }


def make_run_dir(runs_dir: str | Path, profile: str, name: str | None = None) -> Path:
    """Create a fresh run directory; raises RunDirError when it cannot be written."""
    runs_dir = Path(runs_dir)
    if name is None:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        name = f"{stamp}-{profile}"
    run_dir = runs_dir / name
    suffix = 1
    try:
        while True:
            try:
                run_dir.mkdir(parents=True, exist_ok=False)
                break
            except FileExistsError:
                suffix += 1
                run_dir = runs_dir / f"{name}-{suffix}"
        (run_dir / "children").mkdir()
        probe = run_dir / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise RunDirError(
            f"cannot create the run directory under '{runs_dir}': {exc.strerror or exc}; "
            "choose a writable place with --runs-dir"
        ) from exc
    return run_dir


def load_pipeline_dataset(pipeline: Pipeline) -> Dataset:
    ds = pipeline.dataset
    return load_dataset(ds.name, ds.val_fraction, ds.test_fraction, ds.split_seed, ds.data_dir, ds.download,
                        ds.image_size, ds.channels, ds.max_images)


def build_space(pipeline: Pipeline, data: Dataset) -> SearchSpace:
    return spaces.create(
        pipeline.space.name, input_shape=data.input_shape, num_classes=data.num_classes, **pipeline.space.options
    )


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


def params_check(space: SearchSpace, reward_cfg: RewardConfig, profile: Profile) -> Callable[[Sequence[int]], bool] | None:
    """What the controller may ask before proposing: is this architecture within the hard
    parameter budget and the profile's parameter limit, counted as the gate counts them (built,
    not trained)? None when there is no parameter limit."""
    limits = [v for v in (reward_cfg.budget_params, profile.max_params) if v is not None]
    if not limits:
        return None
    limit = min(limits)

    def check(actions: Sequence[int]) -> bool:
        with torch.random.fork_rng(devices=[]):  # building initialises weights; leave the seed alone
            return count_params(space.build(space.decode(actions))) <= limit

    return check


def check_budget_feasible(space: SearchSpace, reward_cfg: RewardConfig) -> int:
    """Parameters of the smallest network in the space; BudgetError if even that is over budget."""
    smallest = space.smallest()
    params = static_cost(space.build(smallest), space.input_shape).params  # type: ignore[attr-defined]
    if reward_cfg.budget_params is not None and params > reward_cfg.budget_params:
        raise BudgetError(
            f"budget of {reward_cfg.budget_params:,} parameters is smaller than the smallest network in "
            f"the '{space.name}' space ({params:,} parameters); raise --budget to at least {params:,}"
        )
    return params


@dataclass
class Prepared:
    profile: Profile
    data: Dataset
    space: SearchSpace
    device: torch.device
    table: Table | None = None
    workers: int = 1  # training slots (process executor), after children_per_gpu
    gpus_per_job: float = 0.0  # GPU share of each Ray task, after children_per_gpu


def table_dataset(cfg: SearchSettings) -> Dataset:
    """A stand-in dataset for tabular searches: no images, only the shape and the classes the
    table's networks were built for (what params, FLOPs and latency are computed on)."""
    c, h, w = cfg.table_input_shape
    empty = torch.zeros(0, c, h, w)
    none = torch.zeros(0, dtype=torch.int64)
    return Dataset(f"table:{Path(str(cfg.table)).name}", empty, none, empty, none, empty, none,
                   [str(i) for i in range(cfg.table_classes)], [0.0] * c, [1.0] * c, "unknown (table)")


class TableExecutor(executors.Executor):
    """Answers training jobs from a table of precomputed results (no training)."""

    name = "table"

    def __init__(self, table: Table, space: SearchSpace) -> None:
        self.table, self.space = table, space

    def run(self, jobs: list[TrainJob]):  # type: ignore[override]
        for job in jobs:
            val, _ = self.table.lookup(self.space, self.space.arch_from_json(job.arch))
            yield TrainOutcome(job.key, True, val_accuracy=val, train_seconds=0.0, curve=(val,))

    def close(self) -> None:
        pass


def prepare(pipeline: Pipeline) -> Prepared:
    """Everything that can fail on bad input, checked before any run directory or training."""
    profile = load_profile(pipeline.search.profile)
    check_providers(profile)
    if not profile.timing and pipeline.reward.needs_latency:
        raise ConfigError(
            f"profile '{profile.name}' does not time models, but the reward uses latency "
            "(max_latency_ms or a latency threshold); choose a timed profile or drop the latency terms"
        )
    device = resolve_device(pipeline.search.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device '{pipeline.search.device}' was asked for but CUDA is not available; use --device cpu or auto")
    data = table_dataset(pipeline.search) if pipeline.search.table else load_pipeline_dataset(pipeline)
    space = build_space(pipeline, data)
    table = None
    if pipeline.search.table:
        table = Table.load(pipeline.search.table, space, pipeline.search.table_metric, pipeline.search.table_test_metric)
    check_budget_feasible(space, pipeline.reward)
    controllers.create(pipeline.controller.name, space, seed=0, **pipeline.controller.options)  # check its options
    if pipeline.search.curriculum_start and not hasattr(space, "max_layers"):
        raise ConfigError(
            f"search.curriculum_start needs a space with a depth (max_layers); '{space.name}' has none. "
            "Use layerwise or blocks, or set curriculum_start = 0"
        )
    cfg = pipeline.search
    if cfg.executor == "ray" and cfg.ray_address and not cfg.table:
        executors.check_reachable(cfg.ray_address)
    gpus = torch.cuda.device_count() if device.type == "cuda" else 0
    workers, gpus_per_job = executors.training_slots(
        cfg.executor, cfg.device if device.type == "cuda" else "cpu", cfg.workers, cfg.children_per_gpu,
        cfg.gpus_per_job, gpus)
    return Prepared(profile, data, space, device, table, workers, gpus_per_job)


CHECKPOINT_NAME = "controller.ckpt"
PIPELINE_NAME = "pipeline.toml"
MANIFEST_NAME = "manifest.json"


def save_checkpoint(run_dir: Path, update_index: int, controller: controllers.Controller) -> None:
    """Atomically write the controller's whole state as it is before proposing `update_index`."""
    buf = io.BytesIO()
    torch.save({"format": 1, "update_index": update_index, "controller": controller.state_dict()}, buf)
    atomic_write_bytes(run_dir / CHECKPOINT_NAME, buf.getvalue(), fault_point="checkpoint-write")


def load_checkpoint(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / CHECKPOINT_NAME
    if not path.exists():
        return None
    try:
        return torch.load(path, weights_only=True)
    except Exception as exc:
        raise RunDirError(f"the controller checkpoint {path} cannot be read ({exc})") from exc


def load_run_pipeline(run_dir: Path) -> Pipeline:
    """The settings a run was started with, from its database."""
    db = Path(run_dir) / DB_NAME
    if not db.is_file():
        raise RunDirError(
            f"'{run_dir}' is not an edgenas run directory (no {DB_NAME} in it); give the directory "
            "that `edgenas search` printed"
        )
    try:
        with Store(db) as store:
            data = store.get_meta("pipeline")
    except sqlite3.DatabaseError as exc:
        raise RunDirError(f"{db} is not a readable edgenas database ({exc})") from exc
    if data is None:
        raise RunDirError(f"{db} holds no pipeline settings; it was not written by edgenas search")
    return Pipeline.from_json(data, source=str(db))


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
    t_start = time.perf_counter()
    prepared = prepared or prepare(pipeline)
    profile, data, space = prepared.profile, prepared.data, prepared.space
    cfg = pipeline.search
    if run_dir is None:
        if resume:
            raise RunDirError("resuming needs the run directory")
        run_dir = make_run_dir(cfg.runs_dir, profile.name, run_name)
    children_dir = run_dir / "children"
    children_dir.mkdir(exist_ok=True)
    controller = controllers.create(pipeline.controller.name, space, seed=cfg.seed, **pipeline.controller.options)
    controller.set_feasibility(params_check(space, pipeline.reward, profile))

    threads = cfg.threads_per_job or max(1, (os.cpu_count() or 1) // prepared.workers)
    with (
        RunLock(run_dir) as lock,
        Store(run_dir / DB_NAME) as store,
        _closing(executor or (TableExecutor(prepared.table, space) if prepared.table is not None else
                              executors.create(cfg.executor, pipeline.to_json(), prepared.workers, threads,
                                               cfg.ray_address, prepared.gpus_per_job)),
                 owned=executor is None) as executor,
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
                    sampled, cfg.children, counts["ok"], counts["rejected"], counts["failed"], store.reused_count(),
                    counts["stopped"],
                    best.reward if best else None, best.val_accuracy if best else None,
                    best.params if best else None, last[0], last[1], time.perf_counter() - t_start, phase,
                    took_over_lock_from=lock.took_over_from,
                )
            )

        report()
        while sampled < cfg.children:
            if cfg.max_minutes is not None and time.perf_counter() - t_start > cfg.max_minutes * 60:
                break
            m = min(cfg.architectures_per_update, cfg.children - sampled)
            space = controller.space = curriculum_space(prepared.space, cfg, update_index)
            batch = controller.propose(m)
            answers: list[Trial | None] = [None] * m
            pending: dict[str, tuple[PendingChild, list[int]]] = {}

            def answered(position: int, trial: Trial, reused: bool) -> None:
                nonlocal sampled, last
                answers[position] = trial
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
                    store.add_sample(update_index, position, actions, key, trial.id, trial.reward, reused)
                    answered(position, trial, reused)
                elif key in pending:
                    pending[key][1].append(position)  # a repeat within the batch waits for the first
                else:
                    pre = prepare_child(space, arch, data, profile, pipeline.reward, child_seed(cfg.seed, key),
                                        cfg.measure_timeout_s, measurer)
                    if isinstance(pre, ChildResult):
                        answered(position, record_trial(store, children_dir, actions, arch, pre, update_index, position), False)
                        check_failures(store, cfg)
                    else:
                        pending[key] = (pre, [position])
            # 2. training, on the executor; each trial is committed the moment it finishes
            thresholds = (
                store.stop_thresholds(update_index, pipeline.training.epochs, cfg.early_stop_min_children)
                if cfg.early_stopping == "median" and prepared.table is None else ()
            )
            jobs = [TrainJob(key, pre.arch.to_json(), pre.seed, thresholds) for key, (pre, _) in pending.items()]
            for outcome in executor.run(jobs):
                pre, positions = pending[outcome.key]
                res = finish_child(space, data, pipeline.reward, pre, outcome)
                first = positions[0]
                trial = record_trial(store, children_dir, batch[first], pre.arch, res, update_index, first)
                answered(first, trial, False)
                for p in positions[1:]:
                    store.add_sample(update_index, p, batch[p], outcome.key, trial.id, trial.reward, True)
                    answered(p, trial, True)
                check_failures(store, cfg)
            rewards = [a.reward for a in answers if a is not None]
            assert len(rewards) == m
            stats = controller.learn(batch, rewards)
            store.add_update(update_index, stats)
            update_index += 1
            save_checkpoint(run_dir, update_index, controller)
            faults.point("after-update")

        report("winner")
        manifest = finalize(store, run_dir, space, data, profile, pipeline, time.perf_counter() - t_start, command,
                            prepared.table)
        wall = time.perf_counter() - t_start
        manifest["search"]["wall_seconds"] = wall
        store.set_meta("finished_at", datetime.now(timezone.utc).isoformat())
        from edgenas.report import write_report  # matplotlib is only needed here

        write_report(run_dir)
        atomic_write_json(run_dir / MANIFEST_NAME, manifest)  # last: its presence means "finished"
        return SearchResult(run_dir, manifest, store.top(5), store.status_counts(), wall)


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


def record_trial(
    store: Store, children_dir: Path, actions: list[int], arch: Any, res: ChildResult, update_index: int, position: int
) -> Trial:
    """Write the child's files (atomically), then its trial and sample rows (one transaction)."""
    lat = res.latency
    key = arch.key()
    onnx_rel = weights_rel = None
    if res.onnx is not None and res.state_dict is not None:
        stem = hashlib.sha256(key.encode()).hexdigest()[:16]
        onnx_rel, weights_rel = f"children/{stem}.onnx", f"children/{stem}.pt"
        atomic_write_bytes(children_dir.parent / onnx_rel, res.onnx)
        buf = io.BytesIO()
        torch.save(res.state_dict, buf)
        atomic_write_bytes(children_dir.parent / weights_rel, buf.getvalue())
    trial_id = store.add_trial_and_sample(
        dict(
            arch_key=key,
            actions=list(actions),
            arch=arch.to_json(),
            status=res.status,
            reason=res.reason,
            params=res.params,
            macs=res.macs,
            flops=2 * res.macs if res.macs is not None else None,
            val_accuracy=res.val_accuracy,
            latency_median_ms=lat.median_ms if lat else None,
            latency_p90_ms=lat.p90_ms if lat else None,
            latency_runs=lat.runs if lat else None,
            latency_label=lat.label if lat else None,
            latency=lat.to_json() if lat else None,
            reward=res.reward.total,
            reward_terms=res.reward.to_json(),
            seed=res.seed,
            train_seconds=res.seconds.get("train"),
            export_seconds=res.seconds.get("export"),
            measure_seconds=res.seconds.get("measure"),
            total_seconds=res.seconds.get("total", 0.0),
            onnx_path=onnx_rel,
            weights_path=weights_rel,
            error=res.error,
            origin_update=update_index,
            origin_position=position,
            curve=list(res.curve) if res.curve else None,
        ),
        list(actions),
    )
    trial = store.trial(trial_id)
    assert trial is not None
    return trial


def describe_dataset(data: Dataset) -> dict[str, Any]:
    return {
        "name": data.name,
        "sizes": data.sizes(),
        "input_shape": list(data.input_shape),
        "classes": data.classes,
        "normalisation": {"mean": data.mean, "std": data.std, "pixel_scale": data.pixel_scale},
    }


def write_verified_onnx(
    model: torch.nn.Module, data: Dataset, path: Path, metadata: dict[str, str], profile: Profile
) -> tuple[bytes, float, float]:
    """Export `model` with `metadata` to `path` and check it on the real test images: onnxruntime
    (as `profile` configures it) must give torch's logits within PARITY_TOLERANCE.

    Returns the ONNX bytes, the largest absolute difference and onnxruntime's test accuracy."""
    onnx_bytes = export_onnx(model, data.input_shape, metadata)
    atomic_write_bytes(path, onnx_bytes)
    session = make_session(str(path), profile)
    ort_logits = np.concatenate(
        [session.run(None, {INPUT_NAME: data.x_test[i : i + 256].numpy()})[0] for i in range(0, len(data.y_test), 256)]
    )
    torch_logits = predict(model, data.x_test).numpy()
    max_diff = float(np.abs(ort_logits - torch_logits).max())
    if max_diff > PARITY_TOLERANCE:
        raise EdgenasError(
            f"{path.name} differs from the torch model by {max_diff:.3g} (> {PARITY_TOLERANCE}); "
            "the export is not trustworthy, please report this with the run directory"
        )
    return onnx_bytes, max_diff, float((ort_logits.argmax(1) == data.y_test.numpy()).mean())


def onnx_metadata(
    data: Dataset, profile: Profile, arch: dict[str, Any], params: int, latency: dict[str, Any] | None,
    accuracy: dict[str, float | None],
) -> dict[str, str]:
    """Metadata properties of a deployable model: enough to use it without edgenas."""
    lat = latency or {}
    return {
        "edgenas_version": edgenas.__version__,
        "architecture": json.dumps(arch),
        "classes": json.dumps(data.classes),
        "input_shape": json.dumps([-1, *data.input_shape]),
        "normalisation": json.dumps({"mean": data.mean, "std": data.std, "pixel_scale": data.pixel_scale}),
        "profile": profile.name,
        "latency_ms": json.dumps({"median": lat.get("median_ms"), "p90": lat.get("p90_ms"), "where": lat.get("label")}),
        "params": str(params),
        **{f"{k}_accuracy": f"{v:.6f}" for k, v in accuracy.items() if v is not None},
    }


def finalize(
    store: Store,
    run_dir: Path,
    space: SearchSpace,
    data: Dataset,
    profile: Profile,
    pipeline: Pipeline,
    wall_seconds: float,
    command: str | None,
    table: Table | None = None,
) -> dict[str, Any]:
    """Pick the best feasible child, score it on the test split, write and verify winner.onnx.
    In a tabular search the winner's test accuracy comes from the table and there is no
    winner.onnx (nothing was trained)."""
    counts = store.status_counts()
    manifest: dict[str, Any] = {
        "edgenas_version": edgenas.__version__,
        "created": datetime.now(timezone.utc).isoformat(),
        "command": command,
        "run_dir": str(run_dir),
        "dataset": describe_dataset(data),
        "profile": {**profile.settings(), "fingerprint": profile.fingerprint(), "latency_label": profile.latency_label},
        "reward": pipeline.to_json()["reward"],
        "pipeline": pipeline.to_json(),
        "search": {
            "samples": store.sample_count(),
            "trained": counts["ok"],
            "rejected": counts["rejected"],
            "failed": counts["failed"],
            "stopped_early": counts["stopped"],
            "reused": store.sample_count() - sum(counts.values()),
            "wall_seconds": wall_seconds,
        },
        "versions": versions(),
        "winner": None,
    }
    top = store.top(1)
    if not top:
        return manifest
    trial = top[0]
    arch = space.arch_from_json(trial.arch)
    if table is not None:
        manifest["table"] = {"path": str(table.path), "val_column": table.val_column, "test_column": table.test_column}
        manifest["winner"] = {
            "trial_id": trial.id, "arch_key": trial.arch_key, "architecture": trial.arch, "params": trial.params,
            "macs": trial.macs, "flops": trial.flops, "val_accuracy": trial.val_accuracy,
            "test_accuracy": table.lookup(space, arch)[1], "latency": trial.latency, "reward": trial.reward,
            "reward_terms": trial.reward_terms, "onnx": None,
        }
        return manifest
    model = space.build(arch)
    model.load_state_dict(torch.load(run_dir / str(trial.weights_path), weights_only=True))
    model.eval()
    test_acc = accuracy(model, data.x_test, data.y_test)
    metadata = onnx_metadata(
        data, profile, trial.arch, trial.params, trial.latency, {"val": trial.val_accuracy, "test": test_acc}
    )
    winner_path = run_dir / "winner.onnx"
    onnx_bytes, max_diff, test_acc_onnx = write_verified_onnx(model, data, winner_path, metadata, profile)
    manifest["winner"] = {
        "trial_id": trial.id,
        "arch_key": trial.arch_key,
        "architecture": trial.arch,
        "params": trial.params,
        "macs": trial.macs,
        "flops": trial.flops,
        "val_accuracy": trial.val_accuracy,
        "test_accuracy": test_acc,
        "test_accuracy_onnx": test_acc_onnx,
        "latency": trial.latency,
        "reward": trial.reward,
        "reward_terms": trial.reward_terms,
        "onnx": {
            "path": "winner.onnx",
            "opset": OPSET,
            "input": INPUT_NAME,
            "output": OUTPUT_NAME,
            "bytes": len(onnx_bytes),
            "parity_max_abs_diff": max_diff,
            "parity_inputs": f"{len(data.y_test)} test-split images",
        },
    }
    return manifest
