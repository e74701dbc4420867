"""One schema mechanism for every settings file: pipelines (pipelines/*.toml) and hardware
profiles (hardware_profiles/*.toml).

A settings class is a frozen dataclass; its fields ARE the schema: name, type, default (the one
place a default lives) and, optionally, `allowed(check, text)` metadata for values that need
more than a type. Pipeline settings are declared with `setting(default, help, flag=...,
choices=...)`: the one declaration a setting has. Its command-line flag (`edgenas.cli.settings`),
the Python API's keyword, the comment in pipelines/default.toml (`default_toml`) and the check of
its allowed values (`check_fields`, run by each class's `__post_init__`) all read it.
`from_table` turns a parsed TOML table into an instance:

  - an unknown key            "WHERE: unknown key(s) a, b; allowed: ..."
  - a value of the wrong type "WHERE: key 'k' = VALUE must be TEXT" (types checked by pydantic,
                              strict: no "3" for 3, no true for 1; an integer is a valid float)
  - a value the check refuses "WHERE: key 'k' = VALUE is not allowed; it must be TEXT"
  - a missing required key    "WHERE: missing key 'k' (TEXT)"

and the class's own `__post_init__` checks what spans several keys. `to_toml` writes settings
back with tomli-w (None values left out: TOML has no null).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from pathlib import Path
from typing import Any, Callable

from edgenas.errors import ConfigError


def allowed(check: Callable[[Any], bool] | None, text: str, **extra: Any) -> dict[str, Any]:
    """Field metadata: `check(value)` must hold; `text` says what is allowed, in messages."""
    return {"check": check, "allowed": text, **extra}


INTERNAL = {"internal": True}  # field metadata: not a key of the file


def _words(options: tuple[str, ...]) -> str:
    return ", ".join(options[:-1]) + f" or {options[-1]}" if len(options) > 1 else options[0]


def setting(
    default: Any,
    help: str,
    *,
    flag: str | bool = False,
    short: str | None = None,
    choices: tuple[str, ...] | None = None,
    check: Callable[[Any], bool] | None = None,
    allowed_text: str | None = None,
    api: str | None = None,
    parse: Callable[[str], Any] | None = None,
) -> Any:
    """A pipeline setting, declared once: a dataclass field with its default and metadata.

    `help`: one sentence or two, for `--help`, the settings reference and default.toml.
    `flag`: True for `--the-key` on `edgenas search`, a string for another flag name, False for
    none (the setting is still a pipeline key and an API keyword); `short`: e.g. "-n".
    `choices`: the allowed values of a string setting; `check` / `allowed_text`: any other rule.
    `api`: the API keyword when it is not the key (e.g. `budget` for `budget_params`).
    `parse`: turns the flag's text into the value (e.g. a comma-separated list)."""
    if choices is not None:
        check, allowed_text = (lambda v, c=choices: v in c), _words(choices)
    meta = {
        "help": help,
        "flag": flag,
        "short": short,
        "choices": choices,
        "check": check,
        "allowed": allowed_text,
        "api": api,
        "parse": parse,
    }
    if isinstance(default, (list, dict, set)):
        raise TypeError("a setting's default must be immutable (a tuple, not a list)")
    return dataclasses.field(default=default, metadata=meta)


def flag_name(f: dataclasses.Field) -> str | None:  # type: ignore[type-arg]
    """The command-line flag of a setting (None when it has none)."""
    flag = f.metadata.get("flag")
    if not flag:
        return None
    return flag if isinstance(flag, str) else "--" + f.name.replace("_", "-")


def check_fields(obj: Any, section: str) -> None:
    """What every settings class's `__post_init__` runs first: no NaN or infinite number, and each
    setting's declared allowed values (`choices` / `check`), worded with the setting's name and
    flag ("--fidelity / search.fidelity 'fast' is unknown; use none or asha")."""
    require_finite(obj, section)
    for f in dataclasses.fields(obj):
        check = f.metadata.get("check")
        value = getattr(obj, f.name)
        if check is None or value is None or check(value):
            continue
        flag = flag_name(f)
        where = f"{flag} / {section}.{f.name}" if flag else f"{section}.{f.name}"
        if isinstance(value, str):
            raise ConfigError(f"{where} '{value}' is unknown; use {f.metadata['allowed']}")
        raise ConfigError(f"{where} must be {f.metadata['allowed']}, got {value!r}")


@functools.lru_cache(maxsize=None)
def _adapter(hint: Any):
    from pydantic import TypeAdapter

    return TypeAdapter(hint)


def _listy(hint: Any) -> Any:
    """TOML has arrays, not tuples: validate tuple[X, ...] fields as list[X]."""
    if typing.get_origin(hint) is tuple:
        return list[typing.get_args(hint)[0]]  # type: ignore[valid-type]
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return typing.Union[tuple(_listy(h) for h in typing.get_args(hint))]
    return hint


def describe(hint: Any) -> str:
    """A type, in the words of an error message."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe(a) for a in args)
    if origin in (tuple, list):
        return f"a list of {describe(args[0]).removeprefix('an ').removeprefix('a ')}s" if args else "a list"
    if origin is dict:
        return "a table"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(hint, str(hint))


def require_finite(obj: Any, section: str) -> None:
    """ConfigError for a float setting of `obj` that is NaN or infinite (`section` names it in the
    message, e.g. "reward"). NaN passes every `<=` check and turns limits off, so it is refused
    first, before any range check."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{section}.{f.name} must be a finite number, got {value}")


def keys(cls: type) -> list[str]:
    """The keys a file may hold for `cls`."""
    return [f.name for f in dataclasses.fields(cls) if f.init and not f.metadata.get("internal")]


def from_table(
    cls: type, data: dict[str, Any], where: str, error: type[ConfigError] = ConfigError, **internal: Any
) -> Any:
    """Validate a parsed TOML table against `cls`'s fields and build it (see the module doc).
    `internal` passes values of fields that are not file keys (e.g. where the file was)."""
    names = keys(cls)
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise error(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(names)}")
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            if f.name in names and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise error(f"{where}: missing key '{f.name}' ({f.metadata.get('allowed') or describe(hints[f.name])})")
            continue
        value = data[f.name]
        if value == "none" and type(None) in typing.get_args(hints[f.name]):
            values[f.name] = None  # TOML has no null: "none" turns off a setting whose default is on (no budget)
            continue
        text = f.metadata.get("allowed") or describe(hints[f.name])
        try:
            checked = _adapter(_listy(hints[f.name])).validate_python(value, strict=True)
        except Exception:  # pydantic's ValidationError: the message below says it better
            raise error(f"{where}: key '{f.name}' = {value!r} must be {text}") from None
        if isinstance(checked, float) and not math.isfinite(checked):
            raise error(f"{where}: key '{f.name}' = {value!r} is not allowed; it must be a finite number")
        if isinstance(checked, list) and typing.get_origin(hints[f.name]) is not list:
            checked = tuple(checked)
        check = f.metadata.get("check")
        if check is not None and checked is not None and not check(checked):
            raise error(f"{where}: key '{f.name}' = {value!r} is not allowed; it must be {text}")
        values[f.name] = checked
    return cls(**values, **internal)


def read_toml(path: Path, what: str, error: type[ConfigError] = ConfigError) -> dict[str, Any]:
    """A settings file's parsed tables; `error` naming the file for one that cannot be read, is
    not text, or is not TOML (`what`: "pipeline", "profile", in the messages)."""
    import tomllib

    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise error(f"{path} is not a text file (not UTF-8 TOML); give a {what} .toml file") from None
    except OSError as exc:
        raise error(f"cannot read {what} file {path}: {exc.strerror or exc}") from exc
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{path}: not valid TOML ({exc}); fix the file's syntax") from exc


def to_table(obj: Any) -> dict[str, Any]:
    """An instance's file keys and values, JSON/TOML-ready (tuples as lists)."""
    out = {}
    for name in keys(type(obj)):
        value = getattr(obj, name)
        out[name] = list(value) if isinstance(value, tuple) else value
    return out


def to_toml(tables: dict[str, Any], header: str = "") -> str:
    """TOML text of `tables` (nested dicts), after a `header` comment. A value TOML cannot hold
    (None, an object) is a ConfigError, never silently dropped."""
    import tomli_w

    lines = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines())
    try:
        return lines + tomli_w.dumps(tables)
    except TypeError as exc:
        raise ConfigError(f"cannot write these settings as TOML: {exc}") from exc
