"""Command-line options generated from the settings schema: each pipeline setting declared with a
`flag` (`edgenas.settings.schema.setting`) becomes one typer option, with the setting's help, its
built-in default shown, and its value parsed as declared. A command decorated with
`setting_flags` receives them as one `settings` dict (API keyword -> value, only the flags that
were given), which it passes to the API unchanged."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import types
import typing
from dataclasses import dataclass
from typing import Annotated, Any, Callable, Optional

import typer

from edgenas.settings import schema
from edgenas.settings.pipeline import ExportSettings, Pipeline, setting_sections


@dataclass(frozen=True)
class Flag:
    param: str  # the command function's parameter
    section: str
    field: dataclasses.Field  # type: ignore[type-arg]
    api: str  # the API keyword the value is passed as
    annotation: Any


def _annotation(f: dataclasses.Field, hint: Any, shown_as: str, default: Any) -> Any:  # type: ignore[type-arg]
    meta = f.metadata
    flag = schema.flag_name(f)
    assert flag is not None
    base = _without_none(hint)
    if meta.get("parse") is not None:
        kind: Any = str
    elif typing.get_origin(base) is tuple:
        kind = list[typing.get_args(base)[0]]  # type: ignore[misc]
    else:
        kind = base
    names = [f"{flag}/--no-{flag[2:]}" if kind is bool else flag] + ([meta["short"]] if meta.get("short") else [])
    shown = "not set" if default in (None, ()) else str(default).lower() if isinstance(default, bool) else default
    # rich reads "[tflite]" as markup: escaped, the help shows as declared
    option = typer.Option(*names, help=meta["help"].replace("[", "\\["), show_default=shown_as.format(shown))
    return Annotated[Optional[kind], option]  # type: ignore[valid-type]


def _without_none(hint: Any) -> Any:
    """`X` of `X | None` (any other type as it is)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return args[0] if len(args) == 1 else hint
    return hint


@functools.lru_cache(maxsize=None)
def flags(command: str = "search") -> tuple[Flag, ...]:
    """Every setting with a flag of `command` ("search": the pipeline's [search], [dataset],
    [training] and [reward]; "export": `ExportSettings`), in declaration order."""
    if command == "export":
        sections: dict[str, type] = {"export": ExportSettings}
        instances: dict[str, Any] = {"export": ExportSettings()}
        shown_as = "{}"
    else:
        sections, pipe = setting_sections(), Pipeline()
        instances = {name: getattr(pipe, name) for name in sections}
        shown_as = "the pipeline's; built in: {}"
    out = []
    for section, cls in sections.items():
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if schema.flag_name(f) is None:
                continue
            default = getattr(instances[section], f.name)
            param = schema.flag_name(f)[2:].replace("-", "_")  # type: ignore[index]
            api = f.metadata.get("api") or f.name
            out.append(Flag(param, section, f, api, _annotation(f, hints[f.name], shown_as, default)))
    return tuple(out)


def setting_flags(fn: Callable[..., Any] | None = None, *, command: str = "search") -> Any:
    """`fn(..., settings)` as a command with one option per setting flag of `command` (see the
    module doc); `@setting_flags` or `@setting_flags(command="export")`."""
    if fn is None:
        return functools.partial(setting_flags, command=command)
    generated = flags(command)
    signature = inspect.signature(fn)
    hints = typing.get_type_hints(fn, include_extras=True)  # the command's own options, resolved
    own = [p.replace(annotation=hints[p.name]) for p in signature.parameters.values() if p.name != "settings"]
    taken = {p.name for p in own} & {g.param for g in generated}
    if taken:
        raise ValueError(f"{fn.__name__}: parameters {sorted(taken)} are also setting flags")
    params = own + [
        inspect.Parameter(g.param, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=g.annotation)
        for g in generated
    ]

    @functools.wraps(fn)
    def command(**kwargs: Any) -> Any:
        settings: dict[str, Any] = {}
        for g in generated:
            value = kwargs.pop(g.param, None)
            if value is None:
                continue
            parse = g.field.metadata.get("parse")
            settings[g.api] = parse(value) if parse is not None else tuple(value) if isinstance(value, list) else value
        return fn(settings=settings, **kwargs)

    command.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params}
    return command
