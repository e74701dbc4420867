"""One Constraints object: built from the reward settings and the profile, the tighter limit wins,
every rejection worded the same way, and limits no network can meet refused up front."""

import dataclasses

import pytest

from edgenas import spaces
from edgenas.constraints import Constraints
from edgenas.errors import BudgetError
from edgenas.evaluate import feasibility, smallest_params
from edgenas.hardware.cost import count_params
from edgenas.hardware.profiles import load_profile
from edgenas.reward import RewardConfig

ARM = load_profile("cpu-arm")
MCU = load_profile("mcu-m7")  # max_params 100,000, max_model_bytes 450,000


def test_tighter_of_budget_and_profile_wins_and_names_its_source():
    loose_budget = Constraints.build(RewardConfig(budget_params=150_000), MCU)
    assert loose_budget.max_params == 100_000
    assert loose_budget.check_params(100_000) is None
    assert loose_budget.check_params(100_001) == "params 100,001 > 100,000 (profile mcu-m7)"
    tight_budget = Constraints.build(RewardConfig(budget_params=5_000), MCU)
    assert tight_budget.max_params == 5_000
    assert tight_budget.check_params(5_001) == "params 5,001 > 5,000 (budget)"
    assert loose_budget.describe() == [
        "params <= 100,000 (profile mcu-m7)",
        "model size <= 450,000 bytes (profile mcu-m7)",
    ]
    assert Constraints.build(RewardConfig(budget_params=None), ARM).describe() == []
    assert Constraints.build(RewardConfig(budget_params=None), ARM).check_params(10**9) is None
    assert Constraints.build(RewardConfig(budget_params=None), ARM).max_params is None


def test_model_bytes_and_latency_limits():
    c = Constraints.build(RewardConfig(max_latency_ms=2.0), MCU)
    assert c.check_model_bytes(450_000) is None
    assert c.check_model_bytes(450_001) == "model size 450,001 bytes > 450,000 bytes (profile mcu-m7)"
    assert c.check_latency(2.0) is None
    assert c.check_latency(2.5) == "latency 2.5 ms > 2 ms (max latency)"
    # a soft latency limit is a penalty in the reward, not a gate
    soft = Constraints.build(RewardConfig(max_latency_ms=2.0, latency_limit="soft"), ARM)
    assert soft.check_latency(100.0) is None
    # the profile's own latency limit is a gate too, and the tighter one wins
    strict_board = dataclasses.replace(ARM, max_latency_ms=1.0)
    both = Constraints.build(RewardConfig(max_latency_ms=2.0), strict_board)
    assert both.check_latency(1.5) == "latency 1.5 ms > 1 ms (profile cpu-arm)"


def test_limits_no_network_can_meet_are_refused_up_front():
    space = spaces.create("layerwise", input_shape=(1, 8, 8), num_classes=10)
    smallest = smallest_params(space)
    Constraints.build(RewardConfig(budget_params=smallest), ARM).check_feasible(smallest, space.name)
    with pytest.raises(BudgetError, match="smaller than the smallest network.*raise --budget"):
        Constraints.build(RewardConfig(budget_params=smallest - 1), ARM).check_feasible(smallest, space.name)
    tiny_board = dataclasses.replace(MCU, max_params=smallest - 1)
    with pytest.raises(BudgetError, match="profile mcu-m7 allows at most .* smaller than the smallest network"):
        Constraints.build(RewardConfig(budget_params=None), tiny_board).check_feasible(smallest, space.name)
    tiny_flash = dataclasses.replace(MCU, max_model_bytes=4 * smallest - 1)
    with pytest.raises(BudgetError, match="models of at most"):
        Constraints.build(RewardConfig(budget_params=None), tiny_flash).check_feasible(smallest, space.name)


def test_controller_feasibility_asks_the_same_limit_as_the_gate():
    space = spaces.create("layerwise", input_shape=(1, 8, 8), num_classes=10)
    c = Constraints.build(RewardConfig(budget_params=150_000), MCU)
    check = feasibility(space, c)
    assert feasibility(space, Constraints.build(RewardConfig(budget_params=None), ARM)) is None
    seen = {True: 0, False: 0}
    import random

    rng = random.Random(0)
    for _ in range(40):
        actions, prefix = [], []
        while (d := space.next_decision(prefix)) is not None:
            choice = rng.choice([i for i, ok in enumerate(d.mask) if ok])
            prefix.append(choice)
        actions = prefix
        params = count_params(space.build(space.decode(actions)))
        ok = check(actions)
        assert ok == (c.check_params(params) is None)
        seen[ok] += 1
    assert seen[True] and seen[False]  # both sides of the limit were exercised


def test_a_parameter_limit_check_builds_each_network_once_and_a_primed_cost_answers_without_building():
    """The predictor asks about the same networks every update: with a parameter limit alone the
    check builds and counts a (space, key) once per process, and a cost given with
    `prime_cost_cache` (a benchmark's, counted elsewhere) is used without building at all;
    the verdicts stay what counting the built network gives."""
    from edgenas.evaluate import prime_cost_cache
    from edgenas.hardware.cost import StaticCost, static_cost

    class CountingSpace(type(spaces.create("nb201", input_shape=(3, 8, 8), num_classes=10))):
        builds = 0

        def build(self, arch):
            CountingSpace.builds += 1
            return super().build(arch)

    space = CountingSpace(input_shape=(3, 8, 8), num_classes=10, channels=4, cells_per_stage=1)
    strings = [[a, b, c, 3, 2, 1] for a in range(5) for b in range(5) for c in (0, 3)]
    params = {}
    for actions in strings:
        params[space.decode(actions).key()] = count_params(space.build(space.decode(actions)))
    limit = sorted(params.values())[len(params) // 2]
    check = feasibility(space, Constraints.build(RewardConfig(budget_params=limit), ARM))
    CountingSpace.builds = 0
    first = [check(a) for a in strings]
    assert first == [params[space.decode(a).key()] <= limit for a in strings]
    assert 0 < sum(first) < len(first)
    assert CountingSpace.builds == len(params)  # isomorphic strings share a key: counted once
    assert [check(a) for a in strings] == first and CountingSpace.builds == len(params)

    other = CountingSpace(input_shape=(3, 8, 8), num_classes=10, channels=4, cells_per_stage=1)
    arch = other.decode(strings[0])
    true_cost = static_cost(other.build(arch), other.input_shape)
    assert true_cost.params <= limit  # so only the primed (wrong on purpose) count can say no
    prime_cost_cache(other, {arch.key(): StaticCost(params=limit + 1, macs=true_cost.macs)})
    CountingSpace.builds = 0
    other_check = feasibility(other, Constraints.build(RewardConfig(budget_params=limit), ARM))
    assert other_check(strings[0]) is False  # the primed count decides, nothing is built
    assert CountingSpace.builds == 0


@pytest.mark.slow
def test_controller_feasibility_knows_a_graph_only_latency_limit_as_the_gate_measures_it():
    """Where the profile predicts latency from the graph alone, the controller is told the latency
    limit too: the check agrees with the gate's real measurement (onnxruntime timing, then the
    calibration) on every network; where the prediction needs host timing it is not told."""
    import random

    from edgenas.hardware.latency import Measurer
    from edgenas.hardware.onnx import export_onnx

    graph_only = dataclasses.replace(ARM, host_calibration="")  # the Pi 5 graph-only fit, on any host
    measurer = Measurer(use_cache=False)
    assert measurer.predicts_from_graph(graph_only)
    assert not measurer.predicts_from_graph(load_profile("cpu-x86"))  # host-measured: needs timing
    assert not measurer.predicts_from_graph(dataclasses.replace(graph_only, statistic="p90"))
    space = spaces.create("mobile", input_shape=(3, 16, 16), num_classes=10, widths=(8, 16, 32))
    rng = random.Random(0)
    nets = []
    for _ in range(12):
        prefix: list[int] = []
        while (d := space.next_decision(prefix)) is not None:
            prefix.append(rng.choice([i for i, ok in enumerate(d.mask) if ok]))
        nets.append(prefix)
    try:
        gate_ms = [
            measurer.measure(export_onnx(space.build(space.decode(a)), space.input_shape), graph_only).median_ms
            for a in nets
        ]
        limit = sorted(gate_ms)[len(gate_ms) // 2]
        c = Constraints.build(RewardConfig(budget_params=None, max_latency_ms=limit), graph_only)
        check = feasibility(space, c, graph_only, measurer)
        assert check is not None
        verdicts = [check(a) for a in nets]
        assert verdicts == [c.check_latency(ms) is None for ms in gate_ms]
        assert 0 < sum(verdicts) < len(verdicts)
        # without the profile, or with a host-timed one, the latency limit is the gate's alone
        assert feasibility(space, c) is None
        host = Constraints.build(RewardConfig(budget_params=None, max_latency_ms=limit), load_profile("cpu-x86"))
        assert feasibility(space, host, load_profile("cpu-x86"), measurer) is None
    finally:
        measurer.close()
