"""pipelines/default.toml, generated from the settings schema: every key of every section with its
built-in default and its help as a comment, and the default space's and controller's options
with the defaults their classes declare. `tests/test_settings.py` checks the shipped file is
current; regenerate it with

    python -m edgenas.cli.default_toml > pipelines/default.toml
"""

from __future__ import annotations

import dataclasses
import inspect
import textwrap
from typing import Any

from edgenas import controllers, spaces
from edgenas.settings import schema
from edgenas.settings.pipeline import Pipeline, setting_sections

HEADER = """\
The default search: layer-wise CNNs on scikit-learn's digits (embedded, no download), the
predictor controller (a Gaussian-process surrogate choosing among an LSTM policy's proposals),
a hard budget of 150,000 parameters, latency per hardware profile.
Every key of every section is listed with its built-in default; a pipeline file gives only the
keys it changes. Any key with a flag can be overridden from the command line (see
`edgenas search --help`).
Generated from the settings schema: python -m edgenas.cli.default_toml > pipelines/default.toml"""


def _value(key: str, value: Any) -> str:
    """`key = value` in TOML, a list on one line."""
    import tomli_w

    def text(v: Any) -> str:
        return tomli_w.dumps({"v": v}).strip().removeprefix("v = ")

    if isinstance(value, (list, tuple)):
        return f"{key} = [{', '.join(text(v) for v in value)}]"
    return f"{key} = {text(value)}"


def _comment(text: str) -> list[str]:
    return [f"# {line}" for line in textwrap.wrap(text, 98)]


def _section(name: str, obj: Any, comment: str = "") -> list[str]:
    lines = ["", f"[{name}]"] + (_comment(comment) if comment else [])
    for f in dataclasses.fields(obj):
        flag = schema.flag_name(f) if name != "final_training" else None
        lines += _comment(f.metadata.get("help", "") + (f" (flag {flag})" if flag else ""))
        value = getattr(obj, f.name)
        lines.append(f"# {f.name}: not set" if value is None else _value(f.name, value))
    return lines


def class_options(cls: type, skip: tuple[str, ...]) -> dict[str, Any]:
    """The keyword options a registered class takes and their declared defaults (through its
    base classes, for options it passes on with **options)."""
    out: dict[str, Any] = {}
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        for p in inspect.signature(klass.__init__).parameters.values():
            if p.name in ("self", *skip) or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
                continue
            if p.default is not p.empty:
                out.setdefault(p.name, p.default)
    return out


def _free(name: str, kind: str, options: dict[str, Any], what: str) -> list[str]:
    lines = ["", f"[{name}]", f'name = "{kind}"']
    lines += _comment(f"{what} (the '{kind}' class's own defaults; other names take other options)")
    for key, value in options.items():
        lines.append(f"# {key}: not set" if value is None else _value(key, value))
    return lines


def default_toml() -> str:
    """The text of pipelines/default.toml."""
    pipe = Pipeline()
    lines = [f"# {line}" if line else "#" for line in HEADER.splitlines()]
    for name in setting_sections():
        lines += _section(name, getattr(pipe, name))
    space = spaces.SPACES.get(pipe.space.name)
    lines += _free("space", pipe.space.name, class_options(space, ("input_shape", "num_classes")),
                   "Options of the search space; `edgenas search --space NAME` picks another")  # fmt: skip
    ctl = controllers.CONTROLLERS.get(pipe.controller.name)
    lines += _free("controller", pipe.controller.name, class_options(ctl, ("space", "seed")),
                   "Options of the controller; `edgenas search --controller NAME` picks another")  # fmt: skip
    final = _section(
        "final_training", pipe.final_training, "`edgenas export`: the winner retrained on train + validation"
    )
    return "\n".join(lines + final) + "\n"


if __name__ == "__main__":
    print(default_toml(), end="")
