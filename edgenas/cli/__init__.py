"""The `edgenas` command: a thin typer layer over the library."""

from __future__ import annotations

import typer

from edgenas.cli import bench_cmd, calibrate_cmd, export_cmd, profiles_cmd, search_cmd
from edgenas.version import __version__

app = typer.Typer(
    name="edgenas",
    help="Neural architecture search for small devices: accurate networks that fit a budget and a measured latency.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command("search")(search_cmd.search)
app.command("bench")(bench_cmd.bench)
app.command("export")(export_cmd.export)
app.command("report")(export_cmd.report)
app.command("calibrate")(calibrate_cmd.calibrate)
app.add_typer(profiles_cmd.app, name="profiles")


@app.command("agent", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def agent(ctx: typer.Context) -> None:
    """Run on the target board: time models sent by a search or bench (needs only onnxruntime
    and numpy). Options: --listen HOST:PORT (default 127.0.0.1:8765), --token-file PATH,
    --max-mb, --timeout-s; `edgenas agent --help` for details."""
    from edgenas.hardware.agent import main as agent_main

    raise typer.Exit(agent_main(list(ctx.args)))


def _version(value: bool) -> None:
    if value:
        print(f"edgenas {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """edgenas: search, bench, export, report and profiles."""


def main() -> None:
    app()
