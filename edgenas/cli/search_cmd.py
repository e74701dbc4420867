"""`edgenas search`: run a search and show it live."""

from __future__ import annotations

import shlex
import signal
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from edgenas.cli.common import (
    EXIT_INTERRUPTED,
    EXIT_NO_RESULT,
    EXIT_TERMINATED,
    candidates_table,
    console,
    err_console,
    fmt_int,
    fmt_kib,
    fmt_ms,
    fmt_pct,
    handle_errors,
)
from edgenas.cli.settings_flags import setting_flags
from edgenas.errors import ConfigError
from edgenas.loop.log import eta
from edgenas.loop.run import Progress as SearchProgress
from edgenas.run.rundir import MANIFEST_NAME


class _Status:
    """The line under the progress bar: best so far, last reward, counts."""

    def __init__(self) -> None:
        self.text = Text("waiting for the first child", style="dim")

    def update(self, p: SearchProgress) -> None:
        best = (
            "-"
            if p.best_reward is None
            else (f"{p.best_reward:.4f} (val {fmt_pct(p.best_val_accuracy)}, {fmt_int(p.best_params)} params)")
        )
        last = "-" if p.last_reward is None else f"{p.last_reward:.4f} {p.last_status}"
        self.text = Text.assemble(
            ("best ", "bold"),
            best,
            ("  last ", "bold"),
            last,
            ("  trained ", "bold"),
            str(p.trained),
            ("  rejected ", "bold"),
            str(p.rejected),
            ("  failed ", "bold"),
            str(p.failed),
            ("  stopped ", "bold"),
            str(p.stopped),
            ("  reused ", "bold"),
            str(p.reused),
        )

    def __rich__(self) -> Text:
        return self.text


class _LiveDisplay:
    """The progress bar and status line while a search runs; the run directory once it exists."""

    def __init__(self, resuming: bool) -> None:
        self.resuming = resuming
        self.bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(bar_width=30),
            MofNCompleteColumn(),
            TextColumn("elapsed"),
            TimeElapsedColumn(),
            TextColumn("{task.fields[eta]}"),  # the pace's or --max-minutes', whichever comes first
            console=console,
        )
        self.task = self.bar.add_task("children", total=None, eta="")
        self.status = _Status()
        self.live = Live(Group(self.bar, self.status), console=console, refresh_per_second=4)
        self.run_dir: Path | None = None
        self.told_lock = False

    def on_start(self, run_dir: Path, prepared) -> None:  # type: ignore[no-untyped-def]
        self.run_dir = run_dir
        verb = "resuming" if self.resuming else "run directory:"
        console.print(
            f"{verb} [bold]{run_dir}[/]  profile {prepared.profile.name} ({prepared.profile.latency_label})",
            soft_wrap=True,
        )
        if prepared.setup:
            console.print(_setup_line(prepared.setup), soft_wrap=True, markup=False)
        self.live.start()

    def stop(self) -> None:
        self.live.stop()

    def on_progress(self, p: SearchProgress) -> None:
        if p.took_over_lock_from is not None and not self.told_lock:
            self.told_lock = True
            err_console.print(
                f"note: took over the lock of PID {p.took_over_lock_from}, which no longer runs (a search that died)"
            )
        desc = {"search": "children", "retrain": "best, stand-alone", "final": "finalists, longer"}.get(
            p.phase, "verifying winner"
        )
        self.bar.update(self.task, completed=p.sampled, total=p.total, description=desc, eta=eta(p) or "")
        self.status.update(p)


class _PlainDisplay:
    """A line per finished child and per controller update (what search.log holds), flushed as it
    happens: for output that goes to a file or a pipe. `quiet`: nothing until the summary."""

    def __init__(self, resuming: bool, quiet: bool) -> None:
        self.resuming, self.quiet = resuming, quiet
        self.run_dir: Path | None = None
        self.told_lock = False

    def on_start(self, run_dir: Path, prepared) -> None:  # type: ignore[no-untyped-def]
        self.run_dir = run_dir
        if not self.quiet:
            verb = "resuming" if self.resuming else "run directory:"
            print(f"{verb} {run_dir}  profile {prepared.profile.name} ({prepared.profile.latency_label})", flush=True)
            if prepared.setup:
                print(_setup_line(prepared.setup), flush=True)

    def on_progress(self, p: SearchProgress) -> None:
        from edgenas.loop.log import event_line

        if p.took_over_lock_from is not None and not self.told_lock:
            self.told_lock = True
            err_console.print(
                f"note: took over the lock of PID {p.took_over_lock_from}, which no longer runs (a search that died)"
            )
        line = event_line(p)
        if line is not None and not self.quiet:
            print(line, flush=True)

    def stop(self) -> None:
        """Nothing to take down (the live display's counterpart)."""


def _setup_line(setup: str) -> str:
    return f"setup: {setup}; give --pipeline default for the digits setup, or --pipeline FILE"


LOG_FORMATS = ("auto", "rich", "plain")


def _display(log_format: str, quiet: bool, resuming: bool) -> _LiveDisplay | _PlainDisplay:
    """rich on a terminal (or when asked), plain lines otherwise; quiet: only the summary."""
    if log_format not in LOG_FORMATS:
        raise ConfigError(f"--log-format '{log_format}' is unknown; use auto, rich or plain")
    if quiet or log_format == "plain" or (log_format == "auto" and not console.is_terminal):
        return _PlainDisplay(resuming, quiet)
    return _LiveDisplay(resuming)


def _registered(kind: str) -> str:
    """Help for --space / --controller: the registered names, read when the CLI is built."""
    from edgenas import controllers, spaces

    names = spaces.names() if kind == "space" else controllers.names()
    return (
        f"Search {kind}: {', '.join(names)} (another name than the pipeline's starts from that {kind}'s defaults)."
        if kind == "space"
        else f"Controller: {', '.join(names)} (another name than the pipeline's starts from that controller's "
        "defaults)."
    )


@handle_errors
@setting_flags
def search(
    pipeline: Annotated[
        Optional[str],
        typer.Option(
            "--pipeline", help="Pipeline name in pipelines/ or path of a pipeline .toml file.", show_default="default"
        ),
    ] = None,
    resume: Annotated[
        Optional[Path],
        typer.Option(
            "--resume",
            help="Continue the interrupted search in this run directory, with its stored "
            "settings (flags that contradict them are refused).",
        ),
    ] = None,
    no_budget: Annotated[bool, typer.Option("--no-budget", help="Search without a hard parameter budget.")] = False,
    space: Annotated[Optional[str], typer.Option("--space", help=_registered("space"))] = None,
    controller: Annotated[Optional[str], typer.Option("--controller", help=_registered("controller"))] = None,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Measure every child again instead of reusing cached latencies.")
    ] = False,
    name: Annotated[
        Optional[str], typer.Option("--name", help="Run directory name (default: time and profile).")
    ] = None,
    log_format: Annotated[
        str,
        typer.Option(
            "--log-format",
            help="auto: a live display on a terminal, else a line per finished child and per controller update "
            "(as RUN_DIR/search.log holds them); rich; plain.",
        ),
    ] = "auto",
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Print only the final summary (search.log still gets every line).")
    ] = False,
    settings: dict[str, Any] | None = None,
) -> None:
    """Search for an accurate network that fits the device, and write a deployable winner.

    Each sampled child is checked against the hard budget (never trained if over it), timed
    under onnxruntime as the profile says, trained, scored on the validation split and
    recorded in the run directory's SQLite database. The best feasible child is written as
    winner.onnx, verified against torch, and scored on the test split.

    Every other option is a pipeline setting (pipelines/default.toml lists them all); a flag
    overrides the pipeline's value.
    """
    from edgenas import api

    finished = resume is not None and (resume / MANIFEST_NAME).exists()
    display = _display(log_format, quiet, resuming=resume is not None)
    previous_term = signal.signal(signal.SIGTERM, _terminate)  # `kill PID`: stop as cleanly as Ctrl-C
    try:
        run = api.search(
            pipeline=pipeline,
            no_budget=no_budget,
            space=space,
            controller=controller,
            name=name,
            resume=resume,
            progress=display.on_progress,
            on_start=display.on_start,
            no_cache=no_cache,
            command="edgenas " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
            **(settings or {}),
        )
    except KeyboardInterrupt as stop:
        display.stop()
        if display.run_dir is None:
            raise
        how = "stopped by SIGTERM" if isinstance(stop, Terminated) else "interrupted"
        err_console.print(
            f"{how}: every finished child is saved in {display.run_dir / 'search.db'} and the controller is "
            f"checkpointed.\nresume with: edgenas search --resume {shlex.quote(str(display.run_dir))}",
            soft_wrap=True,
        )
        raise typer.Exit(EXIT_TERMINATED if isinstance(stop, Terminated) else EXIT_INTERRUPTED) from None
    finally:
        display.stop()
        signal.signal(signal.SIGTERM, previous_term)
    if finished:  # the settings given agree with the run's (api.search refuses those that do not)
        console.print(
            f"the search in {resume} already finished (manifest.json exists); nothing to resume", soft_wrap=True
        )
        return
    _print_summary(run)
    if run.winner is None:
        err_console.print(
            "[bold red]no feasible child:[/] every candidate was rejected or failed; "
            "raise the budget or latency limit, or sample more children"
        )
        raise typer.Exit(EXIT_NO_RESULT)


class Terminated(KeyboardInterrupt):
    """SIGTERM during a search: unwound like Ctrl-C (the lock released, the store closed)."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated()


def _stopped_by(reason: str | None, search: dict) -> str:  # type: ignore[type-arg]
    """Why the search ended before its --children, for the summary line."""
    if reason == "max_minutes":
        return f"; stopped at --max-minutes {search['max_minutes']:g}"
    if reason == "max_evaluated":
        return f"; stopped at --max-evaluated {search['max_evaluated']}"
    return ""


def _print_summary(run) -> None:  # type: ignore[no-untyped-def]
    # Output to a file or a pipe: wide enough for whole cells (no "104,5…"), no terminal to fit.
    out = console if console.is_terminal else Console(width=240, highlight=False)
    from edgenas.hardware.latency import outside_fit_note

    m = run.manifest
    label = m["profile"]["latency_label"]
    table = candidates_table(run.top(5), f"top candidates (latency: profile {m['profile']['name']}, {label})")
    out.print(table)
    s = m["search"]
    limits = ", ".join(m.get("constraints") or []) or "no hard limits"
    out.print(
        f"sampled {s['samples']}: {'looked up' if m.get('table') else 'trained'} {s['trained']}, rejected {s['rejected']} "
        f"({limits}), failed {s['failed']}, stopped early "
        f"{s.get('stopped_early', 0)}, reused {s['reused']}; "
        f"wall time {s['wall_seconds']:.0f} s"
        + (
            f" ({s['warm_up_seconds']:.0f} s of it the supernet's training, before the search's clock)"
            if s.get("warm_up_seconds", 0) >= 1
            else ""
        )
        + _stopped_by(s.get("stopped_by"), m["pipeline"]["search"])
    )
    w = m["winner"]
    if w:
        lat = w["latency"]
        timing = (
            f"latency {fmt_ms(lat.get('median_ms'))} ms median / {fmt_ms(lat.get('p90_ms'))} ms p90 "
            f"({lat.get('label')}, profile {lat.get('profile')}"
            + (f"; this host measured {fmt_ms(lat['host_median_ms'])} ms" if lat.get("host_median_ms") else "")
            + (f"; {outside_fit_note(lat)}" if outside_fit_note(lat) else "")
            + ")"
            + (
                f", energy {lat['energy_mj']:.3g} mJ per inference (predicted)"
                if lat.get("energy_mj") is not None
                else ""
            )
            if lat
            else f"latency not timed (profile {m['profile']['name']} does not time models)"
        )
        mem = w.get("memory")
        memory = (
            f", peak RAM {fmt_kib(mem['peak_ram_bytes'])} KiB (best order {fmt_kib(mem['best_peak_ram_bytes'])}), "
            f"flash {fmt_kib(mem['flash_bytes'])} KiB at {mem['precision']}"
            if mem
            else ""
        )
        out.print(
            f"[bold green]winner[/] trial {w['trial_id']}: {fmt_int(w['params'])} params, "
            f"val {fmt_pct(w['val_accuracy'])}"
            + (f" (int8; fp32 {fmt_pct(w['fp32_val_accuracy'])})" if w.get("fp32_val_accuracy") is not None else "")
            + f", test {fmt_pct(w['test_accuracy'])}"
            + (" (fp32)" if w.get("fp32_val_accuracy") is not None else "")
            + f", {timing}{memory}"
        )
        if w["onnx"]:
            out.print(f"winner.onnx verified against torch (max |diff| {w['onnx']['parity_max_abs_diff']:.2g})")
        else:
            out.print(
                f"tabular search: accuracies looked up in {m['table']['path']} (val column {m['table']['val_column']}, "
                f"test column {m['table']['test_column']}); nothing was trained, so there is no winner.onnx",
                soft_wrap=True,
            )
    _print_picks(out, m)
    front = m.get("front")
    if front:
        members = ", ".join(
            f"trial {x['trial_id']} ({fmt_pct(x['accuracy'])}"
            + "".join(f", {o} {x[o]:.4g}" for o in front["objectives"][1:] if x.get(o) is not None)
            + ")"
            for x in front["members"]
        )
        out.print(
            f"Pareto front ({', '.join(front['objectives'])}), {len(front['members'])} members: {members}; "
            f"hypervolume {front['hypervolume']:.4f}. Choose one with: edgenas export {run.path} --pick knee "
            f"(or e.g. --pick '{_pick_example(front)}')",
            soft_wrap=True,
        )
    out.print(f"run directory: [bold]{run.path}[/]", soft_wrap=True)


def _print_picks(out: Any, m: dict[str, Any]) -> None:
    """The summary's lines for the finalists (--finalists) and the templates, each with what it got."""
    winner = (m.get("winner") or {}).get("trial_id")
    if m.get("finalists"):
        out.print(
            f"finalists, trained again for {m['finalists'][0]['epochs']} epochs: "
            + "; ".join(
                f"trial {f['trial_id']}"
                + (f" ({f['template']})" if f["template"] else "")
                + f" val {fmt_pct(f['val_accuracy'])}"
                + (" (the winner)" if winner == f["trial_id"] else "")
                for f in m["finalists"]
            ),
            soft_wrap=True,
        )
    for t in m.get("templates") or []:
        if t["trial_id"] is None:
            continue
        out.print(
            f"template {t['name']}: trial {t['trial_id']}, {t['status']}"
            + (
                f", val {fmt_pct(t['val_accuracy'])}"
                + (f" after {t['epochs']} epochs" if t.get("epochs") else "")
                + f", {fmt_int(t['params'])} params"
                if t["val_accuracy"] is not None
                else ""
            )
            + (f", {fmt_ms(t['latency_ms'])} ms" if t["latency_ms"] is not None else "")
            + (" (the winner)" if winner == t["trial_id"] else ""),
            soft_wrap=True,
        )


def _pick_example(front: dict) -> str:
    """A --pick condition on the front's first cost, at its middle member's value."""
    cost = front["objectives"][1]
    values = sorted(x[cost] for x in front["members"] if x.get(cost) is not None)
    metric = {"latency": "latency_ms", "energy": "energy_mj", "ram": "ram_kb", "flash": "flash_kb"}.get(cost, cost)
    if not values:
        return "latency_ms<=2"
    middle = values[len(values) // 2] / (1024 if cost in ("ram", "flash") else 1)
    return f"{metric}<={middle:.3g}"
