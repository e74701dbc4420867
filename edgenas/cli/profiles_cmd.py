"""`edgenas profiles`: list and show hardware profiles."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from edgenas.cli.common import console, handle_errors
from edgenas.hardware.profiles import available_profiles, load_profile

app = typer.Typer(help="List hardware profiles, or show one profile's settings.", no_args_is_help=False)


@app.callback(invoke_without_command=True)
def profiles(ctx: typer.Context) -> None:
    """List the available hardware profiles (run `edgenas profiles show NAME` for one)."""
    if ctx.invoked_subcommand is None:
        list_profiles()


@app.command("list")
@handle_errors
def list_profiles() -> None:
    """List the available hardware profiles."""
    table = Table(title="hardware profiles")
    for col in ("name", "target", "latency", "provider", "threads", "batch", "limits"):
        table.add_column(col)
    for name, path in available_profiles().items():
        p = load_profile(str(path))
        limits = ", ".join(
            f"{label} {value:,}"
            for label, value in (
                ("params", p.max_params),
                ("bytes", p.max_model_bytes),
                ("ms", p.max_latency_ms),
                ("RAM bytes", p.max_peak_ram_bytes),
                ("flash bytes", p.max_flash_bytes),
            )
            if value
        )
        timed = p.timing
        table.add_row(
            name,
            p.target,
            p.latency_label,
            p.execution_providers[0] if timed else "-",
            f"{p.intra_op_threads}/{p.inter_op_threads}" if timed else "-",
            str(p.batch_size) if timed else "-",
            limits or "-",
        )
    console.print(table)


@app.command("show")
@handle_errors
def show_profile(
    name: Annotated[str, typer.Argument(help="Profile name (e.g. cpu-arm) or path of a profile .toml file.")],
) -> None:
    """Show every setting of one profile, its fingerprint and its file."""
    p = load_profile(name)
    table = Table(title=f"profile {p.name}", show_header=False)
    table.add_column("key", style="bold")
    table.add_column("value")
    for key, value in p.settings().items():
        table.add_row(key, ", ".join(map(str, value)) if isinstance(value, list) else str(value))
    table.add_row("latency label", p.latency_label)
    table.add_row("fingerprint", p.fingerprint())
    table.add_row("file", p.source_path)
    console.print(table)
