"""The settings schema: defaults live in one place, and the shipped files agree with them."""

import inspect
import tomllib

import pytest

from edgenas.controllers.base import CONTROLLERS
from edgenas.errors import ConfigError, ProfileError
from edgenas.hardware.profiles import Profile, available_profiles, load_profile, parse_profile
from edgenas.settings import schema
from edgenas.settings.pipeline import Pipeline, load_pipeline, parse_pipeline
from edgenas.spaces.base import SPACES


def _constructor_defaults(cls) -> dict:
    """Keyword defaults of `cls`, following `**options` up to the parent class."""
    out = {}
    for klass in reversed(cls.__mro__):
        if "__init__" in vars(klass):
            for name, p in inspect.signature(klass.__init__).parameters.items():
                if p.default is not inspect.Parameter.empty:
                    out[name] = p.default
    return out


def test_default_pipeline_file_equals_the_schema_defaults():
    shipped = load_pipeline("default")
    built_in = Pipeline()
    for section in ("search", "dataset", "training", "final_training", "reward"):
        assert getattr(shipped, section) == getattr(built_in, section), section
    for section, registry in (("space", SPACES), ("controller", CONTROLLERS)):
        mine, theirs = getattr(shipped, section), getattr(built_in, section)
        assert mine.name == theirs.name
        defaults = _constructor_defaults(registry.get(mine.name))
        for key, value in mine.options.items():  # written out for the reader: each one is the class's default
            expected = defaults[key]
            assert (list(expected) if isinstance(expected, tuple) else expected) == value, f"[{section}] {key}"


def test_resolved_pipeline_toml_round_trips():
    pipe = load_pipeline("default").override("reward", budget_params=1234).override("dataset", data_dir='a "b"\n')
    again = parse_pipeline(tomllib.loads(pipe.to_toml()), "again")
    assert again.to_json() == pipe.to_json()


def test_a_free_option_toml_cannot_hold_is_an_error_not_dropped():
    pipe = parse_pipeline({"space": {"name": "layerwise"}}, "x")
    broken = Pipeline(space=type(pipe.space)(name="layerwise", options={"max_layers": None}))
    with pytest.raises(ConfigError, match="cannot write"):
        broken.to_toml()


@pytest.mark.parametrize(
    "cls, data, error, match",
    [
        (Profile, {"name": "x", "bogus": 1}, ProfileError, r"unknown key\(s\) bogus; allowed: name, "),
        (
            Profile,
            {"name": "x", "batch_size": "one"},
            ProfileError,
            r"key 'batch_size' = 'one' must be an integer >= 1",
        ),
        (Profile, {"name": "x", "batch_size": True}, ProfileError, r"key 'batch_size' = True must be"),
        (Profile, {"name": "x", "batch_size": 0}, ProfileError, r"key 'batch_size' = 0 is not allowed"),
        (Profile, {"name": "x", "cpu_cores": [0, "1"]}, ProfileError, r"key 'cpu_cores'"),
        (Profile, {}, ProfileError, r"missing key 'name'"),
    ],
)
def test_one_schema_words_every_error_the_same_way(cls, data, error, match):
    with pytest.raises(error, match=match):
        schema.from_table(cls, data, "f.toml", error)


def test_timed_profiles_need_their_timing_keys_and_untimed_ones_do_not():
    with pytest.raises(ProfileError, match="missing key 'execution_providers'"):
        parse_profile({"name": "x"}, "f.toml")
    board = parse_profile({"name": "x", "timing": False, "max_params": 10}, "f.toml")
    assert board.execution_providers == ("CPUExecutionProvider",) and board.batch_size == 1


def test_shipped_profiles_round_trip_through_the_schema():
    for name in available_profiles():
        profile = load_profile(name)
        assert parse_profile(profile.settings(), "again").settings() == profile.settings()
