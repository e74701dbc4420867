"""One child's evaluation: build, cost, gates, export and timing before training; the reward after.

A child's evaluation is a pure function of (architecture, recipe, profile, reward settings,
seed) and the data. `prepare_child` (gates, export, timing) runs in the search's own process, one
child at a time, never while a child trains; training runs on an evaluator (edgenas.evaluators); `finish_child` turns
its outcome into the result and `record_trial` writes it.
Gates run before expensive work: a candidate over a hard limit (`Constraints`) is never trained;
a hard latency limit is checked on the untrained network's graph (latency does not depend on the
weights), so it never wastes a training run either.
"""

from __future__ import annotations

import hashlib
import io
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch

from edgenas import faults
from edgenas.constraints import Constraints, Limit
from edgenas.evaluators.base import TrainOutcome
from edgenas.fsutil import atomic_write_bytes
from edgenas.hardware.cost import StaticCost, count_params, static_cost
from edgenas.hardware.latency import LatencyStats, Measurer, default_measurer
from edgenas.hardware.memory import MemoryEstimate, memory_estimate
from edgenas.hardware.onnx import export_onnx
from edgenas.hardware.profiles import Profile
from edgenas.reward import RewardConfig, RewardTerms, compute_reward, rejected_reward
from edgenas.run.store import Store, Trial
from edgenas.spaces.base import SearchSpace
from edgenas.training.data import Dataset


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
    memory: MemoryEstimate | None = None
    fp32_val_accuracy: float | None = None  # int8 profiles: the float model's, next to the int8 one


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
    memory: MemoryEstimate | None = None


_CACHE_LIMIT = 50_000  # entries per space and kind; then the cache starts again


def _cache(space: SearchSpace, kind: str) -> dict[str, Any]:
    """The space's own cache of `kind` ("cost": StaticCost, "params": int) by architecture key. It
    lives on the space object, so it goes when the space goes; a space's shallow copy (the depth
    curriculum's capped space) shares it: the same key builds the same network in both."""
    caches = vars(space).setdefault("_edgenas_caches", {})
    return caches.setdefault(kind, {})


def _remember(space: SearchSpace, kind: str, key: str, value: Any) -> None:
    cache = _cache(space, kind)
    if len(cache) > _CACHE_LIMIT:
        cache.clear()
    cache[key] = value


def _cached(space: SearchSpace, kind: str, key: str) -> Any:
    return _cache(space, kind).get(key)


def _known_params(space: SearchSpace, key: str) -> int | None:
    cost = _cached(space, "cost", key)
    return cost.params if cost is not None else _cached(space, "params", key)


def prime_cost_cache(space: SearchSpace, costs: dict[str, StaticCost]) -> None:
    """Give this process the static costs of architectures of `space` (by key) that were counted
    elsewhere, e.g. once for the many tabular searches of a benchmark; they must be what
    `static_cost(space.build(arch), space.input_shape)` gives, as the cache's entries are."""
    for key, cost in costs.items():
        _remember(space, "cost", key, cost)


def prepare_child(
    space: SearchSpace,
    arch: Any,
    data: Dataset,
    profile: Profile,
    constraints: Constraints,
    reward_cfg: RewardConfig,
    seed: int,
    measure_timeout_s: float | None = None,
    measurer: Measurer | None = None,
    lookup: bool = False,
) -> ChildResult | PendingChild:
    """Build, cost, gate, export and time one architecture (in this process, never while a
    child trains). Returns the final result of a rejected or failed child, or what training needs.

    `lookup`: a tabular search (results looked up, nothing trained or deployed). Under an
    untimed profile with no RAM / flash limit nothing then needs the child's graph, so it is not
    exported, and the static cost comes from a per-process cache when this space object has
    costed this architecture before (exact: the same space and key build the same network)."""
    t_start = time.perf_counter()
    seconds: dict[str, float] = {}
    graph_free = lookup and not profile.timing and not constraints.needs_memory
    cost = _cached(space, "cost", arch.key()) if graph_free else None
    if cost is None:
        torch.manual_seed(seed)
        model = space.build(arch)
        cost = static_cost(model, data.input_shape)
        if graph_free:
            _remember(space, "cost", arch.key(), cost)
    reason = constraints.check_params(cost.params)
    if reason:
        seconds["total"] = time.perf_counter() - t_start
        return ChildResult(
            "rejected", cost.params, rejected_reward(reward_cfg), seed, reason, cost.macs, seconds=seconds
        )
    latency = None
    lat_ms = None
    memory = None
    if graph_free:
        seconds["total"] = time.perf_counter() - t_start
        return PendingChild(arch, seed, cost.params, cost.macs, None, None, seconds, t_start, None)
    # Every child is exported: for timing, or (untimed microcontroller profiles) for its memory,
    # which is estimated wherever a RAM / flash limit exists and always shown for those profiles.
    wants_memory = constraints.needs_memory or not profile.timing
    try:
        # Time the architecture's graph before training: identical graph, weights do not change
        # onnxruntime's work, and a hard latency limit then never wastes a training run.
        t0 = time.perf_counter()
        faults.point("export")
        graph = export_onnx(model, data.input_shape)
        seconds["export"] = time.perf_counter() - t0
        reason = constraints.check_model_bytes(len(graph))
        if reason is None and wants_memory:
            memory = memory_estimate(graph, profile.precision)
            reason = constraints.check_memory(memory.peak_ram_bytes, memory.flash_bytes)
        if reason is None:
            t0 = time.perf_counter()
            faults.point("measure")
            latency = (measurer or default_measurer()).measure(graph, profile, timeout_s=measure_timeout_s)
            seconds["measure"] = time.perf_counter() - t0
            lat_ms = latency.statistic(profile.statistic) if latency is not None else None
            if lat_ms is not None:
                reason = constraints.check_latency(lat_ms)
            if reason is None and latency is not None:
                reason = constraints.check_energy(latency.energy_mj)
    except Exception as exc:  # a bad child is recorded, never fatal to the search
        seconds["total"] = time.perf_counter() - t_start
        return ChildResult(
            "failed",
            cost.params,
            rejected_reward(reward_cfg),
            seed,
            type(exc).__name__,
            cost.macs,
            latency=latency,
            error=f"{type(exc).__name__}: {exc}",
            seconds=seconds,
            memory=memory,
        )
    if reason:
        seconds["total"] = time.perf_counter() - t_start
        return ChildResult(
            "rejected",
            cost.params,
            rejected_reward(reward_cfg),
            seed,
            reason,
            cost.macs,
            latency=latency,
            seconds=seconds,
            memory=memory,
        )
    return PendingChild(arch, seed, cost.params, cost.macs, latency, lat_ms, seconds, t_start, memory)


INT8_CALIBRATION_IMAGES = 256  # training images that calibrate a child's int8 activation ranges


def int8_val_accuracy(onnx_bytes: bytes, data: Dataset, seed: int) -> float:
    """Validation accuracy of the static int8 version of a trained child, calibrated on
    INT8_CALIBRATION_IMAGES training images drawn with the child's seed (the implementation
    `edgenas export --int8` uses)."""
    import onnxruntime as ort

    from edgenas.hardware.onnx import INPUT_NAME, onnx_logits
    from edgenas.hardware.quantize import batched_feeds, calibration_images, quantize_int8

    calibration = calibration_images(data.x_train, INT8_CALIBRATION_IMAGES, seed)
    int8 = quantize_int8(onnx_bytes, batched_feeds(calibration, INPUT_NAME))
    session = ort.InferenceSession(int8, providers=["CPUExecutionProvider"])
    preds = onnx_logits(session, data.x_val.cpu()).argmax(1)
    return float((preds == data.y_val.cpu().numpy()).mean())


def finish_child(
    space: SearchSpace,
    data: Dataset,
    reward_cfg: RewardConfig,
    pending: PendingChild,
    outcome: TrainOutcome,
    precision: str = "fp32",
) -> ChildResult:
    """Turn a training outcome into the child's result: export the trained network, reward it.
    With `precision = "int8"` (the profile's), the reward's accuracy is the int8 model's
    validation accuracy (`int8_val_accuracy`); the float one is kept next to it."""
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
        terms = compute_reward(
            reward_cfg, outcome.val_accuracy or 0.0, pending.params, 2 * pending.macs, pending.lat_ms
        )
        return ChildResult(
            "stopped",
            pending.params,
            terms,
            pending.seed,
            outcome.stopped,
            pending.macs,
            outcome.val_accuracy,
            pending.latency,
            seconds=seconds,
            curve=outcome.curve,
            memory=pending.memory,
        )
    if not outcome.ok:
        return ChildResult(
            "failed",
            pending.params,
            rejected_reward(reward_cfg),
            pending.seed,
            (outcome.error or "").split(":")[0],
            pending.macs,
            latency=pending.latency,
            error=outcome.error,
            seconds=seconds,
        )
    accuracy, fp32_accuracy = outcome.val_accuracy, None
    if precision == "int8" and onnx_bytes is not None:
        t0 = time.perf_counter()
        try:
            accuracy, fp32_accuracy = int8_val_accuracy(onnx_bytes, data, pending.seed), outcome.val_accuracy
        except Exception as exc:  # a child the quantizer cannot handle fails; the search goes on
            return ChildResult(
                "failed",
                pending.params,
                rejected_reward(reward_cfg),
                pending.seed,
                "int8",
                pending.macs,
                latency=pending.latency,
                error=f"int8 quantization: {type(exc).__name__}: {exc}",
                seconds=seconds,
                memory=pending.memory,
            )
        seconds["quantize"] = time.perf_counter() - t0
    terms = compute_reward(reward_cfg, accuracy, pending.params, 2 * pending.macs, pending.lat_ms)
    return ChildResult(
        "ok",
        pending.params,
        terms,
        pending.seed,
        None,
        pending.macs,
        accuracy,
        pending.latency,
        onnx_bytes,
        outcome.state_dict,
        seconds=seconds,
        curve=outcome.curve,
        memory=pending.memory,
        fp32_val_accuracy=fp32_accuracy,
    )


def _graph_predictions(
    constraints: Constraints, profile: Profile | None, measurer: Measurer | None, timed: bool = False
) -> tuple[Profile | None, Profile | None, Measurer | None]:
    """Which of the latency and energy limits can be checked before training (the profile
    predicts it from the graph alone; with `timed`, any profile that times), as (profile for
    latency, profile for energy, measurer)."""
    latency = constraints.latency_ms is not None and profile is not None and profile.measured_on == "calibrated"
    if latency:
        measurer = measurer or default_measurer()
        latency = measurer.predicts_from_graph(profile)  # type: ignore[arg-type]
    if timed and constraints.latency_ms is not None and profile is not None and profile.timing:
        measurer, latency = measurer or default_measurer(), True
    energy = constraints.energy_mj is not None and profile is not None and profile.has_energy
    if energy:
        measurer = measurer or default_measurer()
    return (profile if latency else None), (profile if energy else None), measurer


def _broken_limits(
    model: torch.nn.Module,
    input_shape: tuple[int, ...],
    constraints: Constraints,
    latency_profile: Profile | None,
    energy_profile: Profile | None,
    measurer: Measurer | None,
    timed: bool = False,
) -> Iterator[tuple[str, Limit]]:
    """Each hard limit known before training that the untrained `model` breaks, with why (worded
    as the gate words it), lazily: the graph is exported only when a limit needs it. Parameters,
    RAM and flash as estimated, latency and energy as the profiles predict them from the graph, or
    (`timed`) where they cannot, measured as the gate measures them (the result is cached, so the
    gate's own measurement of the same graph is then a cache hit)."""
    c = constraints
    if c.params is not None and (reason := c.params.reason(count_params(model))):
        yield reason, c.params
    if not c.needs_memory and latency_profile is None and energy_profile is None:
        return
    graph = export_onnx(model, input_shape)
    if c.needs_memory:
        est = memory_estimate(graph, c.precision)
        for lim, value in ((c.ram_bytes, est.peak_ram_bytes), (c.flash_bytes, est.flash_bytes)):
            if lim is not None and (reason := lim.reason(value)):
                yield reason, lim
    known: dict = {}  # the graph's features, read once for both predictions
    timing: list[Any] = []  # the measurement, taken once for both limits where `timed` needs it

    def measured(profile: Profile) -> Any:
        if not timing:
            timing.append(measurer.measure(graph, profile))  # type: ignore[union-attr]
        return timing[0]

    if latency_profile is not None:  # (given only where there is a latency limit)
        ms = measurer.graph_only_ms(graph, latency_profile, known)  # type: ignore[union-attr]
        if ms is None and timed and (stats := measured(latency_profile)) is not None:
            ms = stats.statistic(latency_profile.statistic)
        if ms is not None and (reason := c.latency_ms.reason(ms)):  # type: ignore[union-attr]
            yield reason, c.latency_ms  # type: ignore[misc]
    if energy_profile is not None:  # (given only where there is an energy limit)
        mj = measurer.graph_only_energy_mj(graph, energy_profile, known)  # type: ignore[union-attr]
        if mj is None and timed and (stats := measured(energy_profile)) is not None:
            mj = stats.energy_mj
        if mj is not None and (reason := c.energy_mj.reason(mj)):  # type: ignore[union-attr]
            yield reason, c.energy_mj  # type: ignore[misc]


def feasibility(
    space: SearchSpace,
    constraints: Constraints,
    profile: Profile | None = None,
    measurer: Measurer | None = None,
    timed: bool = False,
) -> Callable[[Sequence[int]], bool] | None:
    """What the controller may ask before proposing: is this architecture within the parameter
    limit, the RAM / flash limits and (given the `profile`, where it predicts latency from the
    graph alone: `Measurer.graph_only_ms`) the latency limit and the energy limit, counted as the
    gate counts them (built and exported, not trained)? None when there is no such limit.
    `timed`: where the profile cannot predict latency or energy from the graph, measure them as the
    gate does (about a second a network: for a few networks, such as the templates, not for the
    controller's thousands of candidates)."""
    limit = constraints.max_params
    latency_profile, energy_profile, measurer = _graph_predictions(constraints, profile, measurer, timed)
    if limit is None and not constraints.needs_memory and latency_profile is None and energy_profile is None:
        return None

    def check(actions: Sequence[int]) -> bool:
        arch = space.decode(actions)
        if limit is not None and not constraints.needs_memory and latency_profile is None and energy_profile is None:
            # A parameter limit alone: the count of a (space, key) never changes, and a
            # controller asks about the same networks again and again (the predictor scores
            # ~1,000 candidates per update), so it is built and counted once per process.
            params = _known_params(space, arch.key())
            if params is None:
                with torch.random.fork_rng(devices=[]):  # building initialises weights
                    params = count_params(space.build(arch))
                _remember(space, "params", arch.key(), params)
            return params <= limit
        with torch.random.fork_rng(devices=[]):  # building initialises weights; leave the seed alone
            model = space.build(arch)
            broken = _broken_limits(model, space.input_shape, constraints, latency_profile, energy_profile, measurer,
                                    timed)  # fmt: skip
            return next(broken, None) is None

    return check


def smallest_breaks(space: SearchSpace, constraints: Constraints, profile: Profile | None = None) -> str | None:
    """Why the space's smallest network breaks a hard limit known before training (as
    `feasibility` checks them), with the way to loosen it; None when it fits. For a space whose
    smallest network is also its cheapest in every cost (`SearchSpace.smallest_is_cheapest`), a
    reason means no network of the space fits."""
    latency_profile, energy_profile, measurer = _graph_predictions(constraints, profile, None)
    with torch.random.fork_rng(devices=[]):  # building initialises weights; leave the seed alone
        model = space.build(space.smallest())
        broken = next(_broken_limits(model, space.input_shape, constraints, latency_profile, energy_profile,
                                     measurer), None)  # fmt: skip
    return None if broken is None else f"{broken[0]}; {broken[1].fix}"


def smallest_params(space: SearchSpace) -> int:
    """Parameters of the smallest network in the space."""
    return static_cost(space.build(space.smallest()), space.input_shape).params  # type: ignore[attr-defined]


def _child_stem(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def _write_child_files(run_dir: Path, key: str, res: ChildResult) -> tuple[str | None, str | None]:
    """The trained child's ONNX model and weights (atomically); their run-relative paths."""
    if res.onnx is None or res.state_dict is None:
        return None, None
    stem = _child_stem(key)
    onnx_rel, weights_rel = f"children/{stem}.onnx", f"children/{stem}.pt"
    atomic_write_bytes(run_dir / onnx_rel, res.onnx)
    buf = io.BytesIO()
    torch.save(res.state_dict, buf)
    atomic_write_bytes(run_dir / weights_rel, buf.getvalue())
    return onnx_rel, weights_rel


def _rung_row(
    run_dir: Path, key: str, res: ChildResult, rung: int, epochs: int, update_index: int, state: bytes | None
) -> dict[str, Any]:
    """A rung result; the training state to continue from is written first (atomically)."""
    state_rel = None
    if state is not None:
        state_rel = f"children/{_child_stem(key)}.rung{rung}.state.pt"
        atomic_write_bytes(run_dir / state_rel, state)
    return dict(
        rung=rung,
        epochs=epochs,
        val_accuracy=res.val_accuracy,
        reward=res.reward.total,
        update_index=update_index,
        state_path=state_rel,
        train_seconds=res.seconds.get("train"),
    )


def pending_from_trial(space: SearchSpace, trial: Trial, statistic: str) -> PendingChild:
    """What `finish_child` needs to score a promoted child again (its costs and latency are its trial's)."""
    lat = LatencyStats.from_json(trial.latency) if trial.latency else None
    lat_ms = lat.statistic(statistic) if lat is not None else None
    return PendingChild(
        space.arch_from_json(trial.arch), trial.seed, trial.params, trial.macs or 0, lat, lat_ms, {}, 0.0
    )


def record_promotion(
    store: Store,
    run_dir: Path,
    trial: Trial,
    res: ChildResult,
    rung: int,
    epochs: int,
    update_index: int,
    outcome: TrainOutcome,
) -> Trial:
    """A promoted child's result at `rung`. Trained: the trial takes its accuracy, reward and
    weights (files first, then one transaction). Failed: only the rung row is written (the child
    keeps its lower rung's result and is not promoted again)."""
    row = _rung_row(run_dir, trial.arch_key, res, rung, epochs, update_index, outcome.train_state)
    if res.status != "ok":
        row.update(val_accuracy=None, state_path=None)
        store.promote_trial(trial.id, {"error": res.error}, row)
    else:
        _write_child_files(run_dir, trial.arch_key, res)
        train = (trial.train_seconds or 0.0) + (res.seconds.get("train") or 0.0)
        store.promote_trial(
            trial.id,
            dict(
                val_accuracy=res.val_accuracy,
                fp32_val_accuracy=res.fp32_val_accuracy,
                reward=res.reward.total,
                reward_terms=res.reward.to_json(),
                train_seconds=train,
                total_seconds=trial.total_seconds + (res.seconds.get("train") or 0.0),
                rung=rung,
            ),
            row,
        )
    below = store.rung_result(trial.id, rung - 1)
    if below is not None and below.state_path:  # continued from: no longer needed
        (run_dir / below.state_path).unlink(missing_ok=True)
    updated = store.trial(trial.id)
    assert updated is not None
    return updated


def record_trial(
    store: Store,
    children_dir: Path,
    actions: list[int],
    arch: Any,
    res: ChildResult,
    update_index: int,
    position: int,
    first_rung: tuple[int, bytes | None] | None = None,
) -> Trial:
    """Write the child's files (atomically), then its trial and sample rows (one transaction).
    `first_rung` (multi-fidelity): (epochs, training state) of the first rung, recorded with it."""
    lat = res.latency
    key = arch.key()
    run_dir = children_dir.parent
    onnx_rel, weights_rel = _write_child_files(run_dir, key, res)
    rung = None
    if first_rung is not None and res.status == "ok":
        rung = _rung_row(run_dir, key, res, 0, first_rung[0], update_index, first_rung[1])
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
            memory=res.memory.to_json() if res.memory else None,
            fp32_val_accuracy=res.fp32_val_accuracy,
            rung=0 if rung is not None else None,
        ),
        list(actions),
        rung,
    )
    trial = store.trial(trial_id)
    assert trial is not None
    return trial
