"""Property-based tests: parsing never fails with anything but the project's errors, and the
search space's encode/decode are inverse for every valid sequence."""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgenas.errors import ConfigError, ProfileError
from edgenas.hardware.profiles import Profile, parse_profile
from edgenas.settings import schema
from edgenas.settings.pipeline import Pipeline, parse_pipeline
from edgenas.spaces.layerwise import LayerwiseSpace

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**9), 10**9), st.floats(allow_nan=True), st.text(max_size=12)
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)

PROFILE_KEYS = schema.keys(Profile)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(PROFILE_KEYS + ["extra", "speed"]), values, max_size=16))
def test_profile_parsing_accepts_or_raises_profile_error(data):
    try:
        profile = parse_profile(data, "fuzz.toml")
    except ProfileError as exc:
        assert "fuzz.toml" in str(exc)
        return
    # what parses keeps every value it was given, and survives its own round trip
    settings = profile.settings()
    for key, value in data.items():
        if value is not None:
            assert settings[key] == value, key
    assert parse_profile(settings, "again.toml").settings() == settings


valid_profile = st.fixed_dictionaries(
    {
        "name": st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,9}", fullmatch=True),
        "execution_providers": st.just(["CPUExecutionProvider"]),
        "intra_op_threads": st.integers(0, 64),
        "inter_op_threads": st.integers(0, 64),
        "graph_optimization_level": st.sampled_from(["disabled", "basic", "extended", "all"]),
        "batch_size": st.integers(1, 1024),
        "precision": st.just("fp32"),
        "warmup_runs": st.integers(0, 100),
        "timed_runs": st.integers(1, 1000),
        "statistic": st.sampled_from(["median", "p90"]),
    }
)


@settings(max_examples=200, deadline=None)
@given(valid_profile)
def test_valid_profiles_round_trip(data):
    profile = parse_profile(data, "p.toml")
    again = parse_profile(profile.settings(), "q.toml")
    assert again.settings() == profile.settings()
    assert again.fingerprint() == profile.fingerprint()


SECTIONS = ["search", "dataset", "space", "controller", "training", "reward", "other"]
KEYS = ["seed", "children", "epochs", "batch_size", "mode", "budget_params", "name", "learning_rate", "x"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.dictionaries(
        st.sampled_from(SECTIONS),
        st.one_of(values, st.dictionaries(st.sampled_from(KEYS), values, max_size=4)),
        max_size=5,
    )
)
def test_pipeline_parsing_accepts_or_raises_config_error(data):
    try:
        pipe = parse_pipeline(data, "fuzz.toml")
    except ConfigError:
        return
    # whatever parses survives the round trip through the run database's JSON
    assert Pipeline.from_json(pipe.to_json(), "db").to_json() == pipe.to_json()


@st.composite
def space_and_actions(draw):
    space = LayerwiseSpace(
        input_shape=(draw(st.integers(1, 3)), draw(st.integers(1, 9)), draw(st.integers(1, 9))),
        num_classes=draw(st.integers(2, 5)),
        max_layers=draw(st.integers(1, 5)),
        filters=draw(st.lists(st.integers(1, 16), min_size=1, max_size=3, unique=True)),
        kernels=draw(st.lists(st.sampled_from([1, 3, 5, 7]), min_size=1, max_size=4, unique=True)),
        strides=draw(st.sampled_from([[1], [1, 2]])),
        skip_connections=draw(st.booleans()),
    )
    actions = []
    while (d := space.next_decision(actions)) is not None:
        allowed = [i for i, ok in enumerate(d.mask) if ok]
        assert allowed, "every decision must allow at least one option"
        actions.append(draw(st.sampled_from(allowed)))
    return space, actions


@settings(max_examples=300, deadline=None)
@given(space_and_actions())
def test_space_encode_decode_are_inverse(sa):
    space, actions = sa
    arch = space.decode(actions)
    assert space.encode(arch) == actions
    assert space.arch_from_json(arch.to_json()).key() == arch.key()
    # every architecture the walk produces keeps its feature maps at >= 1 pixel
    levels = []
    for layer in arch.layers:
        level = max((levels[j] for j in layer.inputs), default=0)
        h, w = space._size(level)
        assert h >= 1 and w >= 1
        levels.append(level + (layer.stride == 2))


@settings(max_examples=200, deadline=None)
@given(space_and_actions(), st.data())
def test_corrupted_sequences_are_refused(sa, data):
    space, actions = sa
    i = data.draw(st.integers(0, len(actions)))
    bad = actions[:i] + [data.draw(st.integers(-2, 70))] + actions[i:]
    try:
        space.validate(bad)
    except ValueError:
        return
    # a corruption that is still a valid sequence decodes like any other
    assert space.encode(space.decode(bad)) == bad


@pytest.mark.parametrize("text", ["\U00010000", "a\x7fb", 'tab\tquote"back\\slash\x01', "é"])
def test_pipeline_option_strings_survive_toml(text):
    """Found by the property test below on CI: a character beyond U+FFFF was written as a JSON
    surrogate pair, which TOML rejects; DEL must be escaped in TOML."""
    import tomllib

    pipe = parse_pipeline({"space": {"seed": text, text: 1}}, "x.toml")
    again = parse_pipeline(tomllib.loads(pipe.to_toml()), "again.toml")
    assert again.to_json() == pipe.to_json()


@settings(max_examples=150, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(SECTIONS),
        st.one_of(values, st.dictionaries(st.sampled_from(KEYS), values, max_size=4)),
        max_size=5,
    )
)
def test_pipeline_written_as_toml_reads_back_equal(data):
    import tomllib

    try:
        pipe = parse_pipeline(data, "fuzz.toml")
    except ConfigError:
        return
    try:
        text = pipe.to_toml()
    except ConfigError:
        return  # a free-form option value TOML cannot hold (e.g. a nested null)
    again = parse_pipeline(tomllib.loads(text), "again.toml")
    # compared as JSON text: a NaN option reads back as NaN, which == would call different
    assert json.dumps(again.to_json(), sort_keys=True) == json.dumps(pipe.to_json(), sort_keys=True)


def test_no_budget_survives_a_pipeline_file():
    """A setting whose default is a value and which is turned off (no budget) is written as
    "none" and reads back off, not as the default (found by the property above)."""
    import tomllib

    pipe = parse_pipeline({"reward": {"budget_params": None}}, "a.toml")
    assert pipe.reward.budget_params is None
    text = pipe.to_toml()
    assert 'budget_params = "none"' in text
    assert parse_pipeline(tomllib.loads(text), "b.toml").reward.budget_params is None
    assert parse_pipeline({}, "c.toml").reward.budget_params == 150_000  # left out: the default
