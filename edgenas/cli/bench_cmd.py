"""`edgenas bench`: latency of ONNX files under one or more hardware profiles."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from edgenas.bench import bench_models
from edgenas.cli.common import console, fmt_ms, handle_errors


@handle_errors
def bench(
    models: Annotated[list[Path], typer.Argument(help="One or more ONNX model files.", show_default=False)],
    profile: Annotated[
        list[str],
        typer.Option("--profile", "-p", help="Hardware profile name or .toml path; repeat for several."),
    ] = ["cpu-arm"],  # noqa: B006 - typer needs a list default
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON (raw samples included).")] = False,
) -> None:
    """Time ONNX models under onnxruntime exactly as each profile says.

    Prints median and p90 latency per model and profile, with where it was measured: a profile
    whose target is another device but that is timed on this machine says "host-measured".
    """
    results = bench_models([str(m) for m in models], profile)
    if as_json:
        print(json.dumps(results, indent=2))
        return
    table = Table(title="latency (ms)")
    for col, justify in (("model", "left"), ("profile", "left"), ("median", "right"), ("p90", "right"),
                         ("runs", "right"), ("batch", "right"), ("measured", "left")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for r in results:
        table.add_row(r["model"], r["profile"], fmt_ms(r["median_ms"]), fmt_ms(r["p90_ms"]), str(r["runs"]),
                      str(r["batch_size"]), r["label"])
    console.print(table)
