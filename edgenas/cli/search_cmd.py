"""`edgenas search`: run a search and show it live."""

from __future__ import annotations

import shlex
import signal
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
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
from edgenas.rundir import MANIFEST_NAME
from edgenas.search import Progress as SearchProgress


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


@handle_errors
def search(
    budget: Annotated[
        Optional[int],
        typer.Option(
            "--budget",
            "-b",
            help="Hard parameter budget: bigger candidates are rejected before training.",
            show_default="from the pipeline (150000)",
        ),
    ] = None,
    no_budget: Annotated[bool, typer.Option("--no-budget", help="Search without a hard parameter budget.")] = False,
    profile: Annotated[
        Optional[str],
        typer.Option(
            "--profile",
            "-p",
            help="Hardware profile name (see `edgenas profiles`) or .toml path.",
            show_default="from the pipeline (cpu-arm)",
        ),
    ] = None,
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
    children: Annotated[
        Optional[int], typer.Option("--children", "-n", help="Architectures to sample (trained, rejected or reused).")
    ] = None,
    per_update: Annotated[
        Optional[int], typer.Option("--per-update", help="Architectures per controller update (m).")
    ] = None,
    epochs: Annotated[Optional[int], typer.Option("--epochs", help="Training epochs per child.")] = None,
    dataset: Annotated[
        Optional[str],
        typer.Option(
            "--dataset",
            help="digits (embedded), mnist, fashion-mnist, cifar10 (need --data-dir) or "
            "folder:PATH (one sub-folder of images per class) or arrays:PATH.npz (numpy arrays x_train, "
            "y_train and optionally x_val, y_val, x_test, y_test, classes).",
        ),
    ] = None,
    data_dir: Annotated[
        Optional[str], typer.Option("--data-dir", help="Folder holding the torchvision dataset files.")
    ] = None,
    download: Annotated[
        Optional[bool],
        typer.Option("--download/--no-download", help="Let torchvision download the dataset (needs network)."),
    ] = None,
    image_size: Annotated[
        Optional[int], typer.Option("--image-size", help="folder datasets: resize images to this square size.")
    ] = None,
    channels: Annotated[Optional[int], typer.Option("--channels", help="folder datasets: 1 (grey) or 3 (RGB).")] = None,
    max_images: Annotated[
        Optional[int], typer.Option("--max-images", help="Use a stratified subset of this many images.")
    ] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Seed of the controller and of every child.")] = None,
    controller: Annotated[
        Optional[str],
        typer.Option(
            "--controller",
            help="Controller: predictor, reinforce, ppo, evolution or random "
            "(another name than the pipeline's starts from that controller's defaults).",
        ),
    ] = None,
    space: Annotated[
        Optional[str],
        typer.Option(
            "--space",
            help="Search space: layerwise, nb201, cell-small, cell-large, blocks or transform "
            "(another name than the pipeline's starts from that space's defaults).",
        ),
    ] = None,
    table: Annotated[
        Optional[str],
        typer.Option(
            "--table",
            help="CSV of precomputed results (architecture strings + metrics): evaluate by "
            "lookup instead of training, e.g. a NAS-Bench-201 table with --space nb201.",
        ),
    ] = None,
    table_metric: Annotated[
        Optional[str],
        typer.Option(
            "--table-metric",
            help="The table's validation column (the reward's accuracy).",
            show_default="the first column ending in 'val'",
        ),
    ] = None,
    reward_mode: Annotated[
        Optional[str],
        typer.Option(
            "--reward-mode",
            help="budget (R = accuracy), linear (accuracy - weights x cost), piecewise, mnas "
            "(accuracy x (latency/target)^w) or tunas (accuracy + w x |latency/target - 1|).",
        ),
    ] = None,
    latency_target_ms: Annotated[
        Optional[float],
        typer.Option("--latency-target-ms", help="mnas / tunas modes: the latency target T in ms."),
    ] = None,
    mnas_weight: Annotated[
        Optional[float],
        typer.Option("--mnas-weight", help="mnas / tunas modes: the exponent (coefficient) w, <= 0; default -0.07."),
    ] = None,
    params_weight: Annotated[
        Optional[float], typer.Option("--params-weight", help="linear mode: penalty per million parameters.")
    ] = None,
    flops_weight: Annotated[
        Optional[float], typer.Option("--flops-weight", help="linear mode: penalty per million FLOPs.")
    ] = None,
    params_threshold: Annotated[
        Optional[int], typer.Option("--params-threshold", help="piecewise mode: parameters where the penalty starts.")
    ] = None,
    flops_threshold: Annotated[
        Optional[int], typer.Option("--flops-threshold", help="piecewise mode: FLOPs where the penalty starts.")
    ] = None,
    latency_threshold_ms: Annotated[
        Optional[float],
        typer.Option("--latency-threshold-ms", help="piecewise mode: latency where the penalty starts."),
    ] = None,
    max_latency_ms: Annotated[
        Optional[float], typer.Option("--max-latency-ms", help="Latency limit in ms (profile statistic).")
    ] = None,
    latency_limit: Annotated[
        Optional[str], typer.Option("--latency-limit", help="hard: reject before training; soft: penalty.")
    ] = None,
    max_ram_kb: Annotated[
        Optional[float],
        typer.Option(
            "--max-ram-kb",
            help="Peak activation RAM limit in KiB (tensor arena, from the ONNX graph at the profile's precision); "
            "checked before training.",
        ),
    ] = None,
    max_flash_kb: Annotated[
        Optional[float],
        typer.Option("--max-flash-kb", help="Flash limit in KiB (weights + per-op overhead); checked before training."),
    ] = None,
    objectives: Annotated[
        Optional[str],
        typer.Option(
            "--objectives",
            help="Multi-objective search: accuracy and costs, comma-separated, from accuracy, latency, params, "
            "flops, ram, flash (e.g. accuracy,latency). The result is the Pareto front; pick from it with "
            "`edgenas export --pick`.",
        ),
    ] = None,
    device: Annotated[Optional[str], typer.Option("--device", help="auto, cpu, cuda or cuda:N.")] = None,
    executor: Annotated[
        Optional[str],
        typer.Option("--executor", help="Where children train: local (this process), process (a pool) or ray."),
    ] = None,
    ray_address: Annotated[
        Optional[str], typer.Option("--ray-address", help="ray executor: HOST:PORT of a running Ray cluster.")
    ] = None,
    workers: Annotated[
        Optional[int], typer.Option("--workers", help="Worker processes for --executor process.")
    ] = None,
    children_per_gpu: Annotated[
        Optional[int],
        typer.Option(
            "--children-per-gpu", help="CUDA: children that train at once on each GPU (process or ray executor)."
        ),
    ] = None,
    early_stopping: Annotated[
        Optional[str],
        typer.Option("--early-stopping", help="none, or median: stop children below earlier children's median curve."),
    ] = None,
    fidelity: Annotated[
        Optional[str],
        typer.Option(
            "--fidelity",
            help="none, or asha: children train --min-epochs first; the best 1/--reduction of each rung "
            "continue (from where they stopped) to reduction x the epochs, up to --epochs.",
        ),
    ] = None,
    min_epochs: Annotated[
        Optional[int], typer.Option("--min-epochs", help="--fidelity asha: epochs of the first rung.")
    ] = None,
    reduction: Annotated[
        Optional[int],
        typer.Option("--reduction", help="--fidelity asha: eta, epochs ratio between rungs and 1/share promoted."),
    ] = None,
    start: Annotated[
        Optional[list[str]],
        typer.Option(
            "--start",
            help="A network to evaluate first, as reports print its key (e.g. the network you have, "
            "'mobile|w16:k3e1/...'); repeat for several. The controller goes on from the results.",
        ),
    ] = None,
    max_minutes: Annotated[
        Optional[float],
        typer.Option(
            "--max-minutes",
            help="Start no child's training after this many minutes (also inside a batch); the search "
            "then picks its winner from what finished.",
        ),
    ] = None,
    max_evaluated: Annotated[
        Optional[int],
        typer.Option(
            "--max-evaluated", help="Stop sampling new batches once this many children were trained (or looked up)."
        ),
    ] = None,
    runs_dir: Annotated[Optional[Path], typer.Option("--runs-dir", help="Parent folder of run directories.")] = None,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Measure every child again instead of reusing cached latencies.")
    ] = False,
    name: Annotated[
        Optional[str], typer.Option("--name", help="Run directory name (default: time and profile).")
    ] = None,
) -> None:
    """Search for an accurate network that fits the device, and write a deployable winner.

    Each sampled child is checked against the hard budget (never trained if over it), timed
    under onnxruntime as the profile says, trained, scored on the validation split and
    recorded in the run directory's SQLite database. The best feasible child is written as
    winner.onnx, verified against torch, and scored on the test split.
    """
    from edgenas import api

    if resume is not None and (resume / MANIFEST_NAME).exists() and name is None:
        console.print(
            f"the search in {resume} already finished (manifest.json exists); nothing to resume", soft_wrap=True
        )
        return
    settings = dict(
        children=children,
        architectures_per_update=per_update,
        seed=seed,
        profile=profile,
        device=device,
        max_minutes=max_minutes,
        max_evaluated=max_evaluated,
        runs_dir=runs_dir,
        executor=executor,
        workers=workers,
        children_per_gpu=children_per_gpu,
        early_stopping=early_stopping,
        fidelity=fidelity,
        min_epochs=min_epochs,
        reduction=reduction,
        start=tuple(start) if start else None,
        ray_address=ray_address,
        table=table,
        table_metric=table_metric,
        data_dir=data_dir,
        download=download,
        image_size=image_size,
        channels=channels,
        max_images=max_images,
        mode=reward_mode,
        params_weight=params_weight,
        flops_weight=flops_weight,
        params_threshold=params_threshold,
        flops_threshold=flops_threshold,
        latency_threshold_ms=latency_threshold_ms,
        latency_target_ms=latency_target_ms,
        mnas_weight=mnas_weight,
        max_latency_ms=max_latency_ms,
        latency_limit=latency_limit,
        max_ram_kb=max_ram_kb,
        max_flash_kb=max_flash_kb,
        objectives=_objectives(objectives),
    )
    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(bar_width=30),
        MofNCompleteColumn(),
        TextColumn("elapsed"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=console,
    )
    task = bar.add_task("children", total=None)
    status = _Status()
    told: list[bool] = []
    live = Live(Group(bar, status), console=console, refresh_per_second=4)
    started: list[Path] = []

    def on_start(run_dir: Path, prepared) -> None:  # type: ignore[no-untyped-def]
        started.append(run_dir)
        verb = "resuming" if resume is not None else "run directory:"
        console.print(
            f"{verb} [bold]{run_dir}[/]  profile {prepared.profile.name} ({prepared.profile.latency_label})",
            soft_wrap=True,
        )
        live.start()

    def on_progress(p: SearchProgress) -> None:
        if p.took_over_lock_from is not None and not told:
            told.append(True)
            err_console.print(
                f"note: took over the lock of PID {p.took_over_lock_from}, which no longer runs (a search that died)"
            )
        desc = "children" if p.phase == "search" else "verifying winner"
        bar.update(task, completed=p.sampled, total=p.total, description=desc)
        status.update(p)

    previous_term = signal.signal(signal.SIGTERM, _terminate)  # `kill PID`: stop as cleanly as Ctrl-C
    try:
        run = api.search(
            dataset,
            pipeline=pipeline,
            budget=budget,
            no_budget=no_budget,
            epochs=epochs,
            space=space,
            controller=controller,
            name=name,
            resume=resume,
            progress=on_progress,
            on_start=on_start,
            no_cache=no_cache,
            command="edgenas " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
            **settings,
        )
    except KeyboardInterrupt as stop:
        live.stop()
        if not started:
            raise
        how = "stopped by SIGTERM" if isinstance(stop, Terminated) else "interrupted"
        err_console.print(
            f"{how}: every finished child is saved in {started[0] / 'search.db'} and the controller is "
            f"checkpointed.\nresume with: edgenas search --resume {shlex.quote(str(started[0]))}",
            soft_wrap=True,
        )
        raise typer.Exit(EXIT_TERMINATED if isinstance(stop, Terminated) else EXIT_INTERRUPTED) from None
    finally:
        live.stop()
        signal.signal(signal.SIGTERM, previous_term)
    _print_summary(run)
    if run.winner is None:
        err_console.print(
            "[bold red]no feasible child:[/] every candidate was rejected or failed; "
            "raise the budget or latency limit, or sample more children"
        )
        raise typer.Exit(EXIT_NO_RESULT)


def _objectives(text: str | None) -> tuple[str, ...] | None:
    if text is None:
        return None
    from edgenas.pareto import parse_objectives

    return parse_objectives(text)


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
    from edgenas.measure.latency import outside_fit_note

    m = run.manifest
    label = m["profile"]["latency_label"]
    table = candidates_table(run.top(5), f"top candidates (latency: profile {m['profile']['name']}, {label})")
    console.print(table)
    s = m["search"]
    limits = ", ".join(m.get("constraints") or []) or "no hard limits"
    console.print(
        f"sampled {s['samples']}: {'looked up' if m.get('table') else 'trained'} {s['trained']}, rejected {s['rejected']} "
        f"({limits}), failed {s['failed']}, stopped early "
        f"{s.get('stopped_early', 0)}, reused {s['reused']}; "
        f"wall time {s['wall_seconds']:.0f} s{_stopped_by(s.get('stopped_by'), m['pipeline']['search'])}"
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
        console.print(
            f"[bold green]winner[/] trial {w['trial_id']}: {fmt_int(w['params'])} params, "
            f"val {fmt_pct(w['val_accuracy'])}"
            + (f" (int8; fp32 {fmt_pct(w['fp32_val_accuracy'])})" if w.get("fp32_val_accuracy") is not None else "")
            + f", test {fmt_pct(w['test_accuracy'])}"
            + (" (fp32)" if w.get("fp32_val_accuracy") is not None else "")
            + f", {timing}{memory}"
        )
        if w["onnx"]:
            console.print(f"winner.onnx verified against torch (max |diff| {w['onnx']['parity_max_abs_diff']:.2g})")
        else:
            console.print(
                f"tabular search: accuracies looked up in {m['table']['path']} (val column {m['table']['val_column']}, "
                f"test column {m['table']['test_column']}); nothing was trained, so there is no winner.onnx",
                soft_wrap=True,
            )
    front = m.get("front")
    if front:
        members = ", ".join(
            f"trial {x['trial_id']} ({fmt_pct(x['accuracy'])}"
            + "".join(f", {o} {x[o]:.4g}" for o in front["objectives"][1:] if x.get(o) is not None)
            + ")"
            for x in front["members"]
        )
        console.print(
            f"Pareto front ({', '.join(front['objectives'])}), {len(front['members'])} members: {members}; "
            f"hypervolume {front['hypervolume']:.4f}. Choose one with: edgenas export {run.path} --pick knee "
            "(or e.g. --pick 'latency_ms<=2')",
            soft_wrap=True,
        )
    console.print(f"run directory: [bold]{run.path}[/]", soft_wrap=True)
