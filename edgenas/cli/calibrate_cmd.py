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
            help="CSV of device timings: 'model,device_ms' (ONNX paths relative to the CSV) or "
            "'cellstr,lat_ms_median' (NAS-Bench-201 cells, as in the Pi 5 file)."
        ),
    ],
    profile: Annotated[
        str, typer.Option("--profile", "-p", help="Host-timed profile whose settings time the host side.")
    ] = "cpu-arm",
    out_dir: Annotated[
        Optional[Path],
        typer.Option("--out-dir", help="Where to write the calibrated profile (default: next to the profile)."),
    ] = None,
    limit: Annotated[Optional[int], typer.Option("--limit", help="Use only the first N pairs.")] = None,
    folds: Annotated[int, typer.Option("--folds", help="Cross-validation folds.")] = 5,
) -> None:
    """Fit a model that predicts the device's latency from this host's measurement and the ONNX
    graph, report its cross-validated quality, and write `<profile>-calibrated.toml` with its
    calibration file. Latencies from that profile are labelled 'predicted'.
    """
    from edgenas.calibrate import calibrate as run
    from edgenas.calibrate import write_calibrated_profile
    from edgenas.profiles import load_profile

    base = load_profile(profile)
    if folds < 2:
        from edgenas.errors import ConfigError

        raise ConfigError(f"--folds must be >= 2, got {folds}")
    with Progress(
        TextColumn("timing on this host"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    ) as bar:
        task = bar.add_task("t", total=None)
        cal, _, _ = run(profile, pairs, limit, folds, on_progress=lambda i, n: bar.update(task, completed=i, total=n))
    table = Table(title=f"calibration of {base.name}: {cal.pairs} pairs, {folds}-fold cross-validation")
    for col in ("model", "Spearman", "MAPE", "within 10 %", "within 5 %"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for name, m in (("host x one factor (baseline)", cal.baseline_cv), ("edgenas calibration", cal.cv)):
        table.add_row(
            name,
            f"{m['spearman']:.4f}",
            f"{m['mape_pct']:.2f} %",
            f"{100 * m['within_10pct']:.1f} %",
            f"{100 * m['within_5pct']:.1f} %",
        )
    console.print(table)
    target = out_dir or Path(base.source_path).parent
    prof_path, cal_path = write_calibrated_profile(base.source_path, cal, Path(target))
    console.print(
        f"wrote {prof_path} and {cal_path}; use it with --profile {prof_path.stem} "
        "(its latencies are labelled 'predicted')",
        soft_wrap=True,
    )
