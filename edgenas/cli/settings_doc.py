"""docs/reference/settings.md, generated from the settings schema: every key of every section
with its default, its flag and its help, and the options of every registered search space and
controller with the defaults their classes declare. `tests/test_docs.py` checks the shipped page
is current; regenerate it with

    python -m edgenas.cli.settings_doc > docs/reference/settings.md
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from edgenas import controllers, spaces
from edgenas.cli.default_toml import class_options
from edgenas.settings import schema
from edgenas.settings.pipeline import Pipeline, setting_sections

INTRO = """\
# Settings reference

Every setting edgenas has, generated from the one place each is declared (the settings schema,
`edgenas.settings`). A setting lives in a section of a pipeline file (`--pipeline FILE`, a TOML
file that gives only the keys it changes); the ones with a flag can also be given on the command
line, and every one as a keyword of `edgenas.search` (the key's own name). `pipelines/default.toml`
lists the same keys with their defaults. Regenerate this page with
`python -m edgenas.cli.settings_doc > docs/reference/settings.md`.
"""

SECTIONS = {
    "search": "How the search runs: children, controller batches, profile, device, executors, stop rules.",
    "dataset": "Which data, and how it is split.",
    "training": "How every child is trained during the search (`[final_training]` has the same keys, for "
    "`edgenas export`'s training of the winner; its defaults are the same but 40 epochs).",
    "reward": "What a child is rewarded for, and the hard limits.",
}


def _cell(value: Any) -> str:
    if value is None:
        return "not set"
    text = json.dumps(list(value) if isinstance(value, tuple) else value)
    return f"`{text}`"


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def settings_doc() -> str:
    pipe = Pipeline()
    out = [INTRO]
    for name in setting_sections():
        out += [f"## [{name}]", "", SECTIONS[name], "", "| key | default | flag | meaning |", "|---|---|---|---|"]
        for f in dataclasses.fields(getattr(pipe, name)):
            flag = schema.flag_name(f)
            out.append(
                f"| `{f.name}` | {_cell(getattr(getattr(pipe, name), f.name))} | {f'`{flag}`' if flag else ''} "
                f"| {_escape(f.metadata.get('help', ''))} |"
            )
        out.append("")
    for section, registry, skip, what in (
        ("space", spaces.SPACES, ("input_shape", "num_classes"), "`--space NAME`"),
        ("controller", controllers.CONTROLLERS, ("space", "seed"), "`--controller NAME`"),
    ):
        out += [
            f"## [{section}]",
            "",
            f'`name = "..."` ({what}) and the chosen {section}\'s own options, as keys of the same section:',
            "",
            "| name | options and their defaults |",
            "|---|---|",
        ]
        for key in sorted(registry.names()):
            options = class_options(registry.get(key), skip)
            text = ", ".join(f"`{k}` = {_cell(v)}" for k, v in options.items()) or "none"
            out.append(f"| `{key}` | {_escape(text)} |")
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    print(settings_doc(), end="")
