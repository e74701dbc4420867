import pytest

from edgenas.errors import ConfigError
from edgenas.reward import RewardConfig, compute_reward, rejected_reward


def test_budget_mode_is_accuracy_and_hard_gate():
    cfg = RewardConfig(mode="budget", budget_params=1000)
    terms = compute_reward(cfg, 0.9, params=999, flops=10**9, latency_ms=50.0)
    assert terms.total == pytest.approx(0.9)
    assert rejected_reward(RewardConfig(reject_reward=-0.5)).total == -0.5


def test_linear_mode_penalises_params_and_flops():
    cfg = RewardConfig(mode="linear", budget_params=None, params_weight=0.1, flops_weight=0.01)
    t = compute_reward(cfg, 0.95, params=500_000, flops=2_000_000, latency_ms=1.0)
    assert t.params_penalty == pytest.approx(0.05)
    assert t.flops_penalty == pytest.approx(0.02)
    assert t.total == pytest.approx(0.95 - 0.05 - 0.02)


def test_piecewise_starts_past_threshold():
    cfg = RewardConfig(mode="piecewise", params_threshold=1000, latency_threshold_ms=2.0, piecewise_slope=0.5)
    under = compute_reward(cfg, 0.9, params=1000, flops=0, latency_ms=2.0)
    assert under.total == pytest.approx(0.9)
    over = compute_reward(cfg, 0.9, params=1500, flops=0, latency_ms=3.0)
    assert over.params_penalty == pytest.approx(0.25)
    assert over.latency_penalty == pytest.approx(0.25)
    assert over.total == pytest.approx(0.4)


def test_soft_latency_limit_is_a_penalty():
    soft = RewardConfig(max_latency_ms=1.0, latency_limit="soft", latency_weight=0.2)
    assert compute_reward(soft, 0.9, 10, 10, 1.5).total == pytest.approx(0.9 - 0.1)


def test_mnas_soft_reward_is_accuracy_times_latency_ratio_to_the_power_w():
    cfg = RewardConfig(mode="mnas", latency_target_ms=2.0)
    at = compute_reward(cfg, 0.8, 10, 10, 2.0)
    assert at.total == pytest.approx(0.8) and at.latency_penalty == pytest.approx(0.0)
    slow = compute_reward(cfg, 0.8, 10, 10, 4.0)
    assert slow.total == pytest.approx(0.8 * 2.0**-0.07)  # twice the target: about 4.7 % less
    fast = compute_reward(cfg, 0.8, 10, 10, 1.0)
    assert fast.total == pytest.approx(0.8 * 0.5**-0.07) and fast.total > 0.8  # faster earns
    # MnasNet's trade: 2x slower is worth it only for more than ~5 % relative accuracy
    assert (
        compute_reward(cfg, 0.8 * 1.06, 10, 10, 4.0).total
        > at.total
        > compute_reward(cfg, 0.8 * 1.04, 10, 10, 4.0).total
    )
    harsher = RewardConfig(mode="mnas", latency_target_ms=2.0, mnas_weight=-1.0)
    assert compute_reward(harsher, 0.8, 10, 10, 4.0).total == pytest.approx(0.4)
    assert cfg.needs_latency


def test_tunas_absolute_reward_peaks_at_the_target():
    cfg = RewardConfig(mode="tunas", latency_target_ms=2.0, mnas_weight=-0.5)
    at, slow, fast = (compute_reward(cfg, 0.8, 10, 10, ms).total for ms in (2.0, 3.0, 1.0))
    assert at == pytest.approx(0.8)
    assert slow == pytest.approx(0.8 - 0.25) and fast == pytest.approx(0.8 - 0.25)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"mode": "nope"}, "reward.mode 'nope' is unknown"),
        ({"budget_params": 0}, "positive"),
        ({"budget_params": -5}, "positive"),
        ({"max_latency_ms": 0.0}, "positive"),
        ({"latency_limit": "maybe"}, "latency_limit"),
        ({"mode": "piecewise"}, "threshold"),
        ({"params_weight": -1.0}, ">= 0"),
        ({"mode": "mnas"}, "--latency-target-ms"),
        ({"mode": "tunas", "latency_target_ms": 0.0}, "positive latency target"),
        ({"mode": "mnas", "latency_target_ms": 1.0, "mnas_weight": 0.07}, "mnas_weight must be <= 0"),
    ],
)
def test_bad_reward_settings(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        RewardConfig(**kwargs)
