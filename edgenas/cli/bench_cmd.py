"""`edgenas bench`: latency of ONNX files or a run's candidates under one or more profiles."""

from __future__ import annotations

import csv
import json
import sys
from typing import Annotated, Optional

import typer
from rich.table import Table

from edgenas.cli.common import console, fmt_ms, handle_errors

CSV_FIELDS = (
    "model",
    "trial",
    "profile",
    "label",
    "prediction",
    "calibration",
    "host_median_ms",
    "median_ms",
    "p90_ms",
    "energy_mj",
    "board",
    "fastest_on_board",
    "most_frugal_on_board",
    "spread",
    "unstable",
    "sessions",
    "runs",
    "batch_size",
    "precision",
    "cached",
    "fastest",
    "model_bytes",
    "fits_model_bytes",
    "peak_ram_bytes",
    "flash_bytes",
    "fits_memory",
    "path",
)


@handle_errors
def bench(
    models: Annotated[
        list[str],
        typer.Argument(
            help="ONNX model files and/or run directories (a run directory means its trained candidates).",
            show_default=False,
        ),
    ],
    profile: Annotated[
        list[str],
        typer.Option("--profile", "-p", help="Hardware profile name or .toml path; repeat for several."),
    ] = ["cpu-arm"],  # noqa: B006 - typer needs a list default
    top: Annotated[
        Optional[int], typer.Option("--top", help="From a run directory, only its k best candidates.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (raw samples included).")] = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="Print CSV, one row per model and profile.")] = False,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Measure again instead of reusing cached latencies.")
    ] = False,
) -> None:
    """Time models under onnxruntime exactly as each profile says, and show which is fastest on
    each board.

    Each cell is the median of fresh-session medians and the p90, with where it was measured:
    host-measured (this machine), device-measured (an edgenas agent on the board) or predicted
    (a calibrated profile). '*' marks the fastest model per profile; '!' an unstable measurement;
    '~' a prediction outside what the calibration saw (work of a kind its pairs did not have;
    see --json). cpu-arm predicts Raspberry Pi 5 milliseconds from the graph on any host;
    cpu-arm-host is this host's raw time. Profiles with energy data (cpu-arm, pi5-litert,
    pi5-torchmobile) also show energy per inference in mJ; where several profiles are runtimes of
    one board, a line per board says which is fastest and which spends least for each model.
    """
    from edgenas import api
    from edgenas.hardware.latency import outside_fit_note

    rows = api.bench(models, profile, top, no_cache=no_cache)
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    if as_csv:
        writer = csv.DictWriter(sys.stdout, fieldnames=CSV_FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        return
    names = list(dict.fromkeys(r["profile"] for r in rows))
    fallback = any(outside_fit_note(r) for r in rows)
    title = "latency, ms: median / p90 ('*' fastest per profile, '!' unstable"
    title += ", '~' predicted outside what the calibration saw: a rough number, see --json)" if fallback else ")"
    table = Table(title=title)
    table.add_column("model")
    for name in names:
        label = next(r["label"] for r in rows if r["profile"] == name)
        table.add_column(f"{name}\n({label})", justify="right")
    for model in dict.fromkeys(r["model"] for r in rows):
        cells = []
        for name in names:
            r = next(x for x in rows if x["model"] == model and x["profile"] == name)
            if "median_ms" in r:
                mark = ("*" if r.get("fastest") else "") + ("!" if r.get("unstable") else "")
                mark += "~" if outside_fit_note(r) else ""
                energy = f"\n{r['energy_mj']:.3g} mJ" if r.get("energy_mj") is not None else ""
                cells.append(f"{fmt_ms(r['median_ms'])} / {fmt_ms(r['p90_ms'])}{mark}{energy}")
            else:
                fits = r.get("fits_model_bytes")
                cell = "not timed" + ("" if fits is None else ", fits" if fits else ", too big")
                if "peak_ram_bytes" in r:
                    cell = f"RAM {r['peak_ram_bytes'] / 1024:,.1f} KiB, flash {r['flash_bytes'] / 1024:,.1f} KiB"
                    fits = r.get("fits_memory") if fits is None else fits and r.get("fits_memory", True)
                    cell += "" if fits is None else ", fits" if fits else ", too big"
                cells.append(cell)
        table.add_row(model, *cells)
    console.print(table)
    for line in board_lines(rows):
        console.print(line, soft_wrap=True)


def board_lines(rows: list[dict]) -> list[str]:
    """Per board timed by several profiles (runtimes), per model: the fastest and the most frugal."""
    out = []
    for board in dict.fromkeys(r["board"] for r in rows):
        for model in dict.fromkeys(r["model"] for r in rows):
            here = [r for r in rows if r["board"] == board and r["model"] == model]
            fast = next((r for r in here if r.get("fastest_on_board")), None)
            if fast is None:
                continue
            line = f"{board}, {model}: fastest {fast['profile']} ({fmt_ms(fast['median_ms'])} ms)"
            frugal = next((r for r in here if r.get("most_frugal_on_board")), None)
            if frugal is not None:
                line += f", most frugal {frugal['profile']} ({frugal['energy_mj']:.3g} mJ)"
            out.append(line)
    return out
