"""Multi-objective reward: accuracy, hard constraints and penalties.

Hard limits are gates that run before the expensive work (checked by `edgenas.constraints`,
which also takes the profile's own limits):
  budget_params     a candidate with more parameters is rejected before it is built for
                    training, and gets `reject_reward` (Arora & Krone's fixed r_param)
  max_latency_ms    with latency_limit = "hard", a candidate whose measured latency (profile
                    statistic) is above it is rejected before training; "soft" turns it into a
                    penalty instead
Reward modes, for the candidates that pass:
  budget     R = accuracy
  linear     R = accuracy - params_weight * params/1e6 - flops_weight * FLOPs/1e6
             (Mohandoss & Dwivedi)
  piecewise  R = accuracy - slope * sum over set thresholds of max(0, value/threshold - 1)
             for params, FLOPs and latency (Neural Architect)
  mnas       R = accuracy * (latency / latency_target_ms) ^ mnas_weight, w = -0.07 by default
             (MnasNet's soft reward: slower than the target costs, faster earns, smoothly)
  tunas      R = accuracy + mnas_weight * |latency / latency_target_ms - 1| (TuNAS's absolute
             reward: the target is where the reward peaks, faster is not better)
A soft latency limit adds latency_weight * max(0, latency/max_latency_ms - 1) to the penalty.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from edgenas.errors import ConfigError
from edgenas.settings import schema

MODES = ("budget", "linear", "piecewise", "mnas", "tunas")
LATENCY_LIMITS = ("hard", "soft")


def _objectives(text: str) -> tuple[str, ...]:
    from edgenas.pareto import parse_objectives

    return parse_objectives(text)


S = schema.setting


@dataclass(frozen=True)
class RewardConfig:
    mode: str = S(
        "budget",
        "budget (R = accuracy), linear (accuracy - weights x cost), piecewise (penalties past thresholds), "
        "mnas (accuracy x (latency/target)^w) or tunas (accuracy + w x |latency/target - 1|).",
        flag="--reward-mode",
        choices=MODES,
    )
    budget_params: int | None = S(
        150_000,
        "Hard parameter budget: bigger candidates are rejected before training.",
        flag="--budget",
        short="-b",
        api="budget",
    )
    reject_reward: float = S(0.0, "Reward of a rejected candidate (Arora & Krone's fixed r_param).")
    max_latency_ms: float | None = S(None, "Latency limit in ms (of the profile's statistic).", flag=True)
    max_energy_mj: float | None = S(
        None,
        "Energy limit in mJ per inference, predicted from the graph (profiles with energy data: cpu-arm, "
        "pi5-litert, pi5-torchmobile); a hard limit, checked before training.",
        flag=True,
    )
    latency_limit: str = S(
        "hard",
        "For max_latency_ms: hard (reject before training) or soft (a penalty).",
        flag=True,
        choices=LATENCY_LIMITS,
    )
    latency_weight: float = S(1.0, "Soft latency limit: penalty per unit of relative excess.")
    params_weight: float = S(0.0, "linear mode: penalty per million parameters.", flag=True)
    flops_weight: float = S(0.0, "linear mode: penalty per million FLOPs.", flag=True)
    piecewise_slope: float = S(1.0, "piecewise mode: penalty per unit of relative excess over a threshold.")
    params_threshold: int | None = S(None, "piecewise mode: parameters where the penalty starts.", flag=True)
    flops_threshold: int | None = S(None, "piecewise mode: FLOPs where the penalty starts.", flag=True)
    latency_threshold_ms: float | None = S(None, "piecewise mode: latency where the penalty starts.", flag=True)
    max_ram_kb: float | None = S(
        None,
        "Peak activation RAM limit in KiB (tensor arena, from the ONNX graph at the profile's precision); "
        "checked before training.",
        flag=True,
    )
    max_flash_kb: float | None = S(
        None, "Flash limit in KiB (weights + per-op overhead); checked before training.", flag=True
    )
    latency_target_ms: float | None = S(None, "mnas / tunas modes: the latency target T in ms.", flag=True)
    mnas_weight: float = S(-0.07, "mnas mode: the exponent w; tunas mode: the coefficient beta (both <= 0).", flag=True)
    objectives: tuple[str, ...] | None = S(
        None,
        "Multi-objective search: accuracy and costs, from accuracy, latency, params, flops, ram, flash, energy "
        "(on the command line comma-separated, e.g. accuracy,latency; energy needs a profile with energy data). The result is the Pareto front; pick from it "
        "with `edgenas export --pick`.",
        flag=True,
        parse=_objectives,
    )

    def __post_init__(self) -> None:
        schema.check_fields(self, "reward")
        if self.objectives is not None:
            from edgenas.pareto import parse_objectives

            object.__setattr__(self, "objectives", parse_objectives(self.objectives))
            if self.mode != "budget":
                raise ConfigError(
                    f"--objectives replaces the scalar reward: it cannot be combined with reward mode {self.mode} "
                    "(its penalties fold the same costs into one number); leave one of them out"
                )
        if self.budget_params is not None and self.budget_params <= 0:
            raise ConfigError(f"budget must be a positive number of parameters, got {self.budget_params}")
        if self.max_energy_mj is not None and self.max_energy_mj <= 0:
            raise ConfigError(f"max energy must be a positive number of mJ, got {self.max_energy_mj}")
        if self.max_latency_ms is not None and self.max_latency_ms <= 0:
            raise ConfigError(f"max latency must be a positive number of milliseconds, got {self.max_latency_ms}")
        for name in ("max_ram_kb", "max_flash_kb"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigError(f"{name.replace('_', '-')} must be a positive number of KiB, got {value}")
        for name in ("params_threshold", "flops_threshold", "latency_threshold_ms"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigError(f"reward {name} must be positive, got {value}")
        for name in ("latency_weight", "params_weight", "flops_weight", "piecewise_slope"):
            if getattr(self, name) < 0:
                raise ConfigError(f"reward {name} must be >= 0, got {getattr(self, name)}")
        if self.mode in ("mnas", "tunas"):
            if self.latency_target_ms is None or self.latency_target_ms <= 0:
                raise ConfigError(
                    f"reward mode {self.mode} needs a positive latency target; give --latency-target-ms "
                    "(the latency, in ms of the profile statistic, the reward is built around)"
                )
            if self.mnas_weight > 0:
                raise ConfigError(
                    f"reward mnas_weight must be <= 0 (MnasNet's w = -0.07 penalises slower networks), "
                    f"got {self.mnas_weight}"
                )
        if self.mode == "piecewise" and not any(
            (self.params_threshold, self.flops_threshold, self.latency_threshold_ms)
        ):
            raise ConfigError(
                "piecewise reward needs at least one of params_threshold, flops_threshold, latency_threshold_ms"
            )

    @property
    def needs_latency(self) -> bool:
        """Whether the reward or a gate uses latency (it is measured anyway; this is for docs)."""
        return (
            self.max_latency_ms is not None
            or self.mode in ("mnas", "tunas")
            or "latency" in (self.objectives or ())
            or (self.mode == "piecewise" and self.latency_threshold_ms is not None)
        )


@dataclass(frozen=True)
class RewardTerms:
    accuracy: float
    params_penalty: float
    flops_penalty: float
    latency_penalty: float
    total: float

    def to_json(self) -> dict[str, float]:
        return asdict(self)


def _excess(value: float, threshold: float | None) -> float:
    if threshold is None:
        return 0.0
    return max(0.0, value / threshold - 1.0)


def compute_reward(
    cfg: RewardConfig, accuracy: float, params: int, flops: int, latency_ms: float | None
) -> RewardTerms:
    """Reward of a candidate that passed the gates (latency None: the profile does not time)."""
    p_pen = f_pen = l_pen = 0.0
    if cfg.mode == "linear":
        p_pen = cfg.params_weight * params / 1e6
        f_pen = cfg.flops_weight * flops / 1e6
    elif cfg.mode == "piecewise":
        p_pen = cfg.piecewise_slope * _excess(params, cfg.params_threshold)
        f_pen = cfg.piecewise_slope * _excess(flops, cfg.flops_threshold)
        if latency_ms is not None:
            l_pen = cfg.piecewise_slope * _excess(latency_ms, cfg.latency_threshold_ms)
    elif cfg.mode in ("mnas", "tunas") and latency_ms is not None and cfg.latency_target_ms:
        ratio = max(latency_ms, 1e-9) / cfg.latency_target_ms
        if cfg.mode == "mnas":
            l_pen = accuracy - accuracy * ratio**cfg.mnas_weight  # negative (a bonus) below the target
        else:
            l_pen = -cfg.mnas_weight * abs(ratio - 1.0)
    if cfg.max_latency_ms is not None and cfg.latency_limit == "soft" and latency_ms is not None:
        l_pen += cfg.latency_weight * _excess(latency_ms, cfg.max_latency_ms)
    total = accuracy - p_pen - f_pen - l_pen
    return RewardTerms(accuracy, p_pen, f_pen, l_pen, total)


def rejected_reward(cfg: RewardConfig) -> RewardTerms:
    return RewardTerms(0.0, 0.0, 0.0, 0.0, cfg.reject_reward)
