import math

import pytest

from edgenas.controllers import History, RandomController, ReinforceController, create
from edgenas.errors import ConfigError
from edgenas.spaces.layerwise import LayerwiseSpace


def space():
    return LayerwiseSpace(input_shape=(1, 8, 8), num_classes=10, max_layers=3)


def test_proposals_are_valid_and_seeded():
    s = space()
    a = ReinforceController(s, seed=5).propose(10, History())
    b = ReinforceController(s, seed=5).propose(10, History())
    c = ReinforceController(s, seed=6).propose(10, History())
    assert a == b and a != c
    for seq in a:
        s.validate(seq)


@pytest.mark.slow
def test_learning_raises_probability_of_rewarded_action():
    """Toy reward: 1 when the first layer has 64 filters (action 4), else 0."""
    s = space()
    ctl = ReinforceController(s, seed=0, learning_rate=0.05, probability_floor=0.05)

    def p_first_64():
        return math.exp(ctl.log_prob_prefix([4]))

    before = p_first_64()
    history = History()
    for _ in range(30):
        batch = ctl.propose(8, history)
        history = history.extended(batch, [1.0 if seq[0] == 4 else 0.0 for seq in batch])
        ctl.learn(history)
    after = p_first_64()
    assert before == pytest.approx(0.2, abs=0.05)
    assert after > 0.6 > before
    # the probability floor keeps every allowed option reachable
    assert after <= 1 - 0.05 * 4 / 5 + 1e-6


def test_state_dict_round_trip_continues_identically():
    s = space()
    a = ReinforceController(s, seed=1)
    batch = a.propose(4, History())
    history = History().extended(batch, [0.1, 0.5, 0.9, 0.2])
    a.learn(history)
    b = ReinforceController(s, seed=99)
    b.load_state_dict(a.state_dict())
    assert a.propose(6, history) == b.propose(6, history)
    assert a.baseline == b.baseline


def test_baseline_is_moving_average():
    ctl = ReinforceController(space(), seed=0, baseline_decay=0.5)
    history = History().extended(ctl.propose(2, History()), [1.0, 1.0])
    ctl.learn(history)
    assert ctl.baseline == pytest.approx(1.0)
    ctl.learn(history.extended(ctl.propose(1, history), [0.0]))
    assert ctl.baseline == pytest.approx(0.5)


def test_random_controller_covers_options_and_round_trips():
    s = space()
    r = RandomController(s, seed=0)
    firsts = {seq[0] for seq in r.propose(60, History())}
    assert firsts == {0, 1, 2, 3, 4}
    state = r.state_dict()
    x = r.propose(3, History())
    r.load_state_dict(state)
    assert r.propose(3, History()) == x


def test_bad_controller_options_are_config_errors():
    with pytest.raises(ConfigError, match="unknown controller"):
        create("nope", space())
    with pytest.raises(ConfigError, match="probability_floor"):
        create("reinforce", space(), probability_floor=1.5)


def test_multi_objective_predictor_refines_the_front_late():
    # two objectives over a layer-wise space: after `late_after` results, `late_local_share` of a
    # batch goes to neighbours of front members (at share 1.0: all of it), before it local_share
    import random

    from edgenas.controllers.base import neighbours

    s = space()
    rng = random.Random(0)
    seen = {}
    for seq in RandomController(s, seed=0).propose(200, History()):
        if len(seen) < 24:
            seen.setdefault(tuple(seq), (rng.random(), -rng.random()))
    assert len(seen) == 24

    def batch(late_after: int) -> tuple[list[list[int]], list[list[int]]]:
        c = create("predictor", s, seed=0, local_share=0.0, late_local_share=1.0, late_after=late_after, initial=4)
        actions = [list(a) for a in seen]
        history = History().extended(actions, [v[0] for v in seen.values()], list(seen.values()))
        c.learn(history)
        proposals = c.propose(8, history)
        front = [list(a) for a in seen if c._key(list(a)) in c._front_keys()]
        return proposals, front

    def near_front(props, front):
        near = {tuple(n) for f in front for n in neighbours(s, f, swaps=True)}
        return sum(tuple(p) in near for p in props)

    late, front = batch(late_after=10)  # 24 results in: late
    early, _ = batch(late_after=1000)  # never late: local share 0
    assert near_front(late, front) == 8
    assert near_front(early, front) < 8
    with pytest.raises(ConfigError, match="late_local_share"):
        create("predictor", s, late_local_share=2.0)


def test_the_predictors_surrogate_record_says_how_well_it_ranked_its_choices():
    """The predictor reports, per update, Spearman's rho between what its surrogate predicted for
    the networks it chose and the rewards they got: nothing before it has a surrogate, clearly
    positive on a reward its features can learn (the number of 3x3 convolutions of an NB201 cell),
    about zero on a reward that is noise."""
    import statistics

    import numpy as np

    from edgenas import controllers
    from edgenas.spaces.nb201 import OPS, NB201Space

    space = NB201Space(input_shape=(3, 8, 8), num_classes=10, channels=4, cells_per_stage=1)
    conv3 = OPS.index("nor_conv_3x3")

    def record(reward) -> list:
        ctl = controllers.create("predictor", space, seed=0, candidates=200, uniform_candidates=200)
        out, history = [], History()
        for _ in range(7):
            batch = ctl.propose(8, history)
            history = history.extended(batch, [reward(s) for s in batch])
            out.append(ctl.learn(history).get("surrogate_spearman"))
        return out

    easy = record(lambda seq: sum(a == conv3 for a in seq) / len(seq))
    scored = [r for r in easy[1:] if r is not None]
    assert easy[0] is None and len(scored) >= 4 and all(-1 <= r <= 1 for r in scored), easy
    assert statistics.mean(scored) > 0.4, easy
    noise = np.random.default_rng(0)
    random_rewards = [r for r in record(lambda seq: float(noise.random()))[1:] if r is not None]
    assert len(random_rewards) >= 4 and abs(statistics.mean(random_rewards)) < 0.4, random_rewards


def test_evolution_reports_its_populations_spread():
    """Evolution's own evidence, per update: how many decisions two members of its population
    differ in, on average (0 once the population is one network again and again)."""
    from edgenas import controllers
    from edgenas.controllers.evolution import spread
    from edgenas.spaces.nb201 import NB201Space

    assert spread([[0, 1, 2], [0, 1, 3], [1, 1, 3, 0]]) == 2.0  # pairs differ in 1, 3 (one longer) and 2
    assert spread([[4, 2]]) == 0.0
    space = NB201Space(input_shape=(3, 8, 8), num_classes=10, channels=4, cells_per_stage=1)
    ctl = controllers.create("evolution", space, seed=0, population_size=6, sample_size=2)
    first = ctl.propose(6, History())
    history = History().extended(first, [0.5] * 6)
    assert ctl.learn(history)["population_spread"] > 0
    same = [first[0]] * 6
    assert ctl.learn(history.extended(same, [0.5] * 6))["population_spread"] == 0.0
