"""`edgenas calibrate`: predict a board's latency from this host, fitted on real device timings."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from edgenas.cli.common import console, handle_errors


@handle_errors
def calibrate(
    pairs: Annotated[
        Path,
        typer.Argument(
            help="CSV of device timings: 'model,device_ms' (ONNX paths relative to the CSV), "
            "'cellstr,lat_ms_median' (NAS-Bench-201 cells, as in the Pi 5 file) or "
            "'cellstr,board,framework,lat_ms_median' (cells timed on several boards and runtimes); an "
            "'energy_mj' column also fits energy per inference."
        ),
    ],
    profile: Annotated[
        str,
        typer.Option(
            "--profile", "-p", help="Profile whose settings the new one keeps; host-timed unless --graph-only."
        ),
    ] = "cpu-arm-host",
    graph_only: Annotated[
        bool,
        typer.Option(
            "--graph-only",
            help="Fit from the ONNX graphs alone, without timing anything on this host: the prediction is "
            "then the same on every machine.",
        ),
    ] = False,
    name: Annotated[
        Optional[str], typer.Option("--name", help="Name of the profile written (default: PROFILE-calibrated).")
    ] = None,
    out_dir: Annotated[
        Optional[Path],
        typer.Option("--out-dir", help="Where to write the calibrated profile (default: next to the profile)."),
    ] = None,
    limit: Annotated[Optional[int], typer.Option("--limit", help="Use only the first N pairs.")] = None,
    board: Annotated[
        Optional[str], typer.Option("--board", help="Boards file: the board whose rows to fit (e.g. raspberry-pi-5).")
    ] = None,
    framework: Annotated[
        Optional[str], typer.Option("--framework", help="Boards file: the runtime whose rows to fit (e.g. litert).")
    ] = None,
    target: Annotated[
        Optional[str], typer.Option("--target", help="The device's name in the profile written (default: the base's).")
    ] = None,
    folds: Annotated[int, typer.Option("--folds", help="Cross-validation folds.")] = 5,
) -> None:
    """Fit models that predict the device's latency from the ONNX graph (any host) and, unless
    --graph-only, from this host's measurement too; report their cross-validated quality next to
    the host x one-factor baseline, and write the profile NAME.toml with its calibration files.
    Latencies from that profile are labelled 'predicted'.
    """
    from edgenas import api

    verb = "reading graphs" if graph_only else "timing on this host"
    with Progress(TextColumn(verb), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console) as bar:
        task = bar.add_task("t", total=None)
        fitted, written, base = api.calibrate(
            pairs,
            profile=profile,
            graph_only=graph_only,
            name=name,
            out_dir=out_dir,
            limit=limit,
            folds=folds,
            progress=lambda i, n: bar.update(task, completed=i, total=n),
            board=board,
            framework=framework,
            target=target,
        )
    table = Table(title=f"calibration from {base.name}: {fitted.graph.pairs} pairs, {folds}-fold cross-validation")
    for col in ("model", "Spearman", "MAPE", "within 10 %", "within 5 %"):
        table.add_column(col, justify="left" if col == "model" else "right")
    rows = [("graph only (any host)", fitted.graph.cv)]
    if fitted.energy is not None:
        rows.append(("energy per inference, graph only", fitted.energy.cv))
    if fitted.host is not None:
        rows = [
            ("host x one factor (baseline)", fitted.host.baseline_cv),
            *rows,
            (f"host timing + graph ({fitted.host.host_cpu} only)", fitted.host.cv),
        ]
    for label, m in rows:
        table.add_row(
            label,
            f"{m['spearman']:.4f}",
            f"{m['mape_pct']:.2f} %",
            f"{100 * m['within_10pct']:.1f} %",
            f"{100 * m['within_5pct']:.1f} %",
        )
    console.print(table)
    shares = ", ".join(f"{g} {100 * v:.0f} %" for g, v in list(fitted.graph.contributions.items())[:5])
    console.print(f"what carries the predicted latency (mean share over the pairs): {shares}", soft_wrap=True)
    console.print(
        f"wrote {', '.join(str(p) for p in written)}; use it with --profile {written[0].stem} "
        "(its latencies are labelled 'predicted')",
        soft_wrap=True,
    )
