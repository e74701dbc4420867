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

from edgenas import schema
from edgenas.errors import ConfigError

MODES = ("budget", "linear", "piecewise", "mnas", "tunas")
LATENCY_LIMITS = ("hard", "soft")


@dataclass(frozen=True)
class RewardConfig:
    mode: str = "budget"
    budget_params: int | None = 150_000
    reject_reward: float = 0.0
    max_latency_ms: float | None = None
    latency_limit: str = "hard"
    latency_weight: float = 1.0  # soft limit: penalty per unit of relative excess
    params_weight: float = 0.0  # linear: penalty per million parameters
    flops_weight: float = 0.0  # linear: penalty per million FLOPs
    piecewise_slope: float = 1.0
    params_threshold: int | None = None
    flops_threshold: int | None = None
    latency_threshold_ms: float | None = None
    max_ram_kb: float | None = None  # hard limit on peak activation RAM (KiB), like a profile's
    max_flash_kb: float | None = None  # hard limit on flash (KiB): weights + per-op overhead
    latency_target_ms: float | None = None  # mnas / tunas: the latency target T
    mnas_weight: float = -0.07  # mnas: the exponent w; tunas: the coefficient beta (both <= 0)
    # multi-objective search: accuracy and costs (latency, params, flops, ram, flash), e.g.
    # ["accuracy", "latency"]; the result is the Pareto front (edgenas.pareto). None: one scalar.
    objectives: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        schema.require_finite(self, "reward")
        if self.objectives is not None:
            from edgenas.pareto import parse_objectives

            object.__setattr__(self, "objectives", parse_objectives(self.objectives))
            if self.mode != "budget":
                raise ConfigError(
                    f"--objectives replaces the scalar reward: it cannot be combined with reward mode {self.mode} "
                    "(its penalties fold the same costs into one number); leave one of them out"
                )
        if self.mode not in MODES:
            raise ConfigError(f"reward mode '{self.mode}' is unknown; choose one of {', '.join(MODES)}")
        if self.latency_limit not in LATENCY_LIMITS:
            raise ConfigError(
                f"latency_limit '{self.latency_limit}' is unknown; choose one of {', '.join(LATENCY_LIMITS)}"
            )
        if self.budget_params is not None and self.budget_params <= 0:
            raise ConfigError(f"budget must be a positive number of parameters, got {self.budget_params}")
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
