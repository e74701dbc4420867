"""Each setting is declared once (edgenas.schema.setting): its flag, its API keyword, its line in
pipelines/default.toml and the check of its allowed values all come from that declaration."""

import dataclasses
import tomllib
import types
import typing
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgenas import api
from edgenas.cli import app
from edgenas.cli.default_toml import default_toml
from edgenas.cli.settings_flags import flags, setting_flags
from edgenas.errors import ConfigError
from edgenas.settings import schema
from edgenas.settings.pipeline import ExportSettings, Pipeline, api_settings, setting_sections

ROOT = Path(__file__).resolve().parents[1]


def test_shipped_default_toml_is_the_generated_one():
    assert (ROOT / "pipelines" / "default.toml").read_text() == default_toml(), (
        "pipelines/default.toml is out of date: python -m edgenas.cli.default_toml > pipelines/default.toml"
    )


def test_default_toml_lists_every_key_with_its_help():
    text = default_toml()
    data = tomllib.loads(text)
    for section, cls in setting_sections().items():
        for f in dataclasses.fields(cls):
            assert f.metadata.get("help"), f"{section}.{f.name} has no help"
            value = getattr(getattr(Pipeline(), section), f.name)
            if value is None:
                assert f"# {f.name}: not set" in text
            else:
                written = data[section][f.name]
                assert written == (list(value) if isinstance(value, tuple) else value), f"{section}.{f.name}"


SECTIONS = {**setting_sections(), "export": ExportSettings}


def _default(flag):
    return getattr(ExportSettings() if flag.section == "export" else getattr(Pipeline(), flag.section), flag.field.name)


def _sample(flag) -> tuple[list[str], object]:
    """Command-line words giving a valid non-default value for `flag`, and the value expected."""
    f = flag.field
    name = schema.flag_name(f)
    hint = typing.get_type_hints(SECTIONS[flag.section])[f.name]
    optional = typing.get_origin(hint) in (typing.Union, types.UnionType)
    kind = next(a for a in typing.get_args(hint) if a is not type(None)) if optional else hint
    check = f.metadata.get("check") or (lambda v: True)
    default = _default(flag)
    if f.metadata.get("parse"):
        return [name, "accuracy,latency"], ("accuracy", "latency")
    if f.metadata.get("choices"):
        value = f.metadata["choices"][1]
        return [name, value], value
    if kind is bool:  # --x / --no-x: the one that is not the default
        return ([name], True) if not default else (["--no-" + name[2:]], False)
    if typing.get_origin(kind) is tuple:
        return [name, "a", name, "b"], ("a", "b")
    if kind is int:
        value = 3 if default is None else default + 2
        return [name, str(value)], value
    if kind is float:
        value = next(v for v in ([2.5] if default is None else [default + 1.5, default / 2]) if check(v))
        return [name, str(value)], value
    value = next(v for v in ("somewhere", "cpu") if check(v))  # device: a string with a rule
    return [name, value], value


@pytest.mark.parametrize("command", ["search", "export"])
def test_every_flag_sets_its_setting(command):
    """For every generated flag of `edgenas search` and `edgenas export`: the command receives it
    under its API keyword, and the value lands in the setting that declared the flag, with its
    type (search: through `api.make_pipeline`; export: `ExportSettings`)."""
    got: list[dict] = []

    def probe(settings=None) -> None:
        got.append(settings)

    import typer

    probe_app = typer.Typer()
    probe_app.command()(setting_flags(probe, command=command))
    runner = CliRunner()
    assert len(flags(command)) >= (40 if command == "search" else 8)
    for flag in flags(command):
        words, expected = _sample(flag)
        got.clear()
        res = runner.invoke(probe_app, words)
        assert res.exit_code == 0, (words, res.output)
        settings = got[0]
        assert list(settings) == [flag.api], words
        if command == "export":
            value = getattr(dataclasses.replace(ExportSettings(), **settings), flag.field.name)
        else:
            value = getattr(getattr(api.make_pipeline(**settings), flag.section), flag.field.name)
        assert value == expected and type(value) is type(expected), words
        assert _default(flag) != expected, f"{words}: the sample is the default, the test would prove nothing"


def test_search_help_shows_every_flag_with_its_declared_help():
    res = CliRunner().invoke(app, ["search", "--help"], env={"COLUMNS": "400"}, terminal_width=400)
    assert res.exit_code == 0
    for flag in flags("search"):
        name = schema.flag_name(flag.field)
        assert name in res.output
        assert " ".join(flag.field.metadata["help"].split()[:6]) in " ".join(res.output.split()), name


def test_every_search_dataset_training_and_reward_key_is_an_api_keyword_in_one_section():
    keywords = api_settings()
    seen: dict[str, str] = {}
    for section in ("search", "dataset", "training", "reward"):
        for f in dataclasses.fields(setting_sections()[section]):
            assert f.name not in seen or section == "dataset" and f.name == "name", (f.name, seen.get(f.name))
            seen[f.name] = section
    pipe = api.make_pipeline(
        threads_per_job=2, curriculum_start=1, latency_weight=2.0, val_fraction=0.25, grad_clip_norm=1.5
    )
    assert pipe.training.grad_clip_norm == 1.5 and pipe.final_training.grad_clip_norm == 0.0
    assert (pipe.search.threads_per_job, pipe.search.curriculum_start) == (2, 1)
    assert (pipe.reward.latency_weight, pipe.dataset.val_fraction) == (2.0, 0.25)
    assert keywords["budget"] == ("reward", "budget_params") and keywords["epochs"] == ("training", "epochs")
    with pytest.raises(ConfigError, match="'childs' is not a search setting; use one of: .*children"):
        api.make_pipeline(childs=3)


@pytest.mark.parametrize(
    "section, values, message",
    [
        ("search", {"fidelity": "fast"}, "--fidelity / search.fidelity 'fast' is unknown; use none or asha"),
        ("search", {"device": "tpu"}, "--device / search.device 'tpu' is unknown; use auto, cpu, cuda or cuda:N"),
        ("search", {"early_stopping": "mean"}, "search.early_stopping 'mean' is unknown; use none or median"),
        ("reward", {"latency_limit": "maybe"}, "reward.latency_limit 'maybe' is unknown; use hard or soft"),
    ],
)
def test_declared_choices_are_checked_and_worded_with_the_flag(section, values, message):
    with pytest.raises(ConfigError) as err:
        Pipeline().override(section, **values)
    assert message in str(err.value)


def test_a_setting_default_must_be_immutable():
    with pytest.raises(TypeError, match="immutable"):
        schema.setting([1, 2], "a list default would be shared between instances")
