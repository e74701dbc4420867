"""`edgenas export` and `edgenas report`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from edgenas.cli.common import candidates_table, console, fmt_int, fmt_ms, fmt_pct, handle_errors
from edgenas.cli.settings_flags import setting_flags


@handle_errors
@setting_flags(command="export")
def export(
    run_dir: Annotated[
        Path, typer.Argument(help="A run directory written by `edgenas search` (finished or interrupted).")
    ],
    settings: dict[str, Any] | None = None,
) -> None:
    """Write a deployable bundle: the winner retrained at full fidelity on train + validation,
    model.onnx (checked against torch), optional int8 model, manifest.json and README.txt.

    The bundle runs with nothing but onnxruntime and numpy.
    """
    from edgenas import api

    results = api.export(run_dir, progress=lambda m: console.print(f"  {m}"), **(settings or {}))
    _print_bundles(results)


def _print_bundles(results: list[Any]) -> None:
    """Per bundle: its models (size, test accuracy, latency), the TFLite Micro arena, how it was picked."""
    from edgenas.hardware.latency import outside_fit_note

    for r in results:
        m = r.manifest
        notes = {outside_fit_note(v.get("latency")) for v in m["models"].values()} - {""}
        title = f"bundle {r.path} (latency: {m['profile']['name']}, {m['latency_measured_on']})"
        title += " ('~': " + "; ".join(sorted(notes)) + ")" if notes else ""
        table = Table(title=title)
        energy = any((v.get("latency") or {}).get("energy_mj") is not None for v in m["models"].values())
        for col in (
            "model",
            "file",
            "KB",
            "test acc",
            "latency median ms",
            "p90 ms",
            *(["energy mJ"] if energy else []),
        ):
            table.add_column(col, justify="left" if col in ("model", "file") else "right")
        for name, v in m["models"].items():
            lat = v.get("latency") or {}
            mj = lat.get("energy_mj")
            table.add_row(
                name,
                v.get("file") or "(refused)",
                f"{v['bytes'] / 1024:.1f}",
                fmt_pct(v["test_accuracy"]),
                fmt_ms(lat.get("median_ms")) + ("~" if outside_fit_note(lat) else ""),
                fmt_ms(lat.get("p90_ms")),
                *([f"{mj:.4g}" if mj is not None else "-"] if energy else []),
            )
        console.print(table)
        lite = m["models"].get("tflite")
        if lite and lite.get("file"):
            micro, est = lite.get("tflite_micro") or {}, lite["estimate"]
            if "arena_bytes" in micro:
                arena = (
                    f"TFLite Micro arena {fmt_int(micro['arena_bytes'])} bytes (activations "
                    f"{fmt_int(micro['arena_head_bytes'])}, runtime {fmt_int(micro['arena_tail_bytes'])}; "
                    f"estimated peak RAM {fmt_int(est['peak_ram_bytes'])})"
                )
            else:
                why = micro.get("error") or "install tflite-micro to measure the arena"
                arena = f"estimated peak RAM {fmt_int(est['peak_ram_bytes'])} bytes ({why})"
            console.print(
                f"model.tflite: flash {fmt_int(lite['bytes'])} bytes, {arena}; LiteRT test accuracy "
                f"{fmt_pct(lite['test_accuracy'])} vs int8 ONNX {fmt_pct(lite['int8_onnx_test_accuracy'])}",
                soft_wrap=True,
            )
            if lite.get("float_ops"):
                console.print(
                    f"model.tflite is not fully int8: {len(lite['float_ops'])} operators compute in float "
                    f"({', '.join(sorted(set(lite['float_ops'])))})",
                    soft_wrap=True,
                    markup=False,
                )
        if m.get("pick"):
            console.print(f"picked by --pick '{m['pick']['expression']}' (rank {m['pick']['rank']})", soft_wrap=True)
        console.print(
            f"{fmt_int(m['params'])} params; test accuracy {fmt_pct(m['test_accuracy'])} on "
            f"{m['test_images']} held-out images; see {r.path / 'README.txt'}",
            soft_wrap=True,
        )


@handle_errors
def report(
    run_dir: Annotated[Path, typer.Argument(help="A run directory written by `edgenas search`.")],
    top: Annotated[int, typer.Option("--top", help="Rows in the candidates table.")] = 5,
    out: Annotated[
        Optional[Path], typer.Option("--out", help="Where to write the HTML (default: RUN_DIR/report.html).")
    ] = None,
) -> None:
    """Summarise a run in the terminal and write its HTML report (plots embedded)."""
    from edgenas import api
    from edgenas.run.report import report_data

    d = report_data(run_dir)
    pareto = {"latency": set(d["pareto_latency"]), "params": set(d["pareto_params"])}
    table = candidates_table(d["top"][:top], f"top candidates of {run_dir}", pareto)
    console.print(table)
    for axis, ids in (("latency", d["pareto_latency"]), ("parameters", d["pareto_params"])):
        members = [d["trials"][i] for i in ids]
        console.print(
            f"Pareto front, accuracy vs {axis}: "
            + ", ".join(
                f"trial {t.id} ({fmt_pct(t.val_accuracy)}, "
                f"{fmt_ms(t.latency_median_ms) + ' ms' if axis == 'latency' else fmt_int(t.params)})"
                for t in members
            ),
            soft_wrap=True,
        )
    mo = d["multi_objective"]
    if mo:
        _print_front(d, mo)
    c = d["counts"]
    console.print(
        f"sampled {len(d['samples'])}: trained {c.get('ok', 0)}, rejected {c.get('rejected', 0)}, "
        f"failed {c.get('failed', 0)}, stopped early {c.get('stopped', 0)}, reused {d['reused']}"
    )
    path = api.report(run_dir, out)
    console.print(f"report: [bold]{path}[/]", soft_wrap=True)


def _print_front(d, mo) -> None:  # type: ignore[no-untyped-def]
    from edgenas.pareto import trial_values

    table = Table(title=f"Pareto front ({', '.join(mo['objectives'])}): {len(mo['trial_ids'])} members")
    for col in ("trial", "val acc", "params", "FLOPs", "latency ms", "peak RAM KiB", "flash KiB", "picked"):
        table.add_column(col, justify="right")
    for i in mo["trial_ids"]:
        v = trial_values(d["trials"][i])
        table.add_row(
            str(i),
            fmt_pct(v["accuracy"]),
            fmt_int(v["params"]),
            fmt_int(v["flops"]),
            fmt_ms(v["latency"]),
            f"{v['ram_kb']:.1f}" if v["ram_kb"] is not None else "-",
            f"{v['flash_kb']:.1f}" if v["flash_kb"] is not None else "-",
            mo["picked"].get(i, ""),
        )
    console.print(table)
    hv = mo["hypervolume_per_update"]
    console.print(
        "hypervolume per update: "
        + ", ".join(f"{u + 1}: {v:.4f}" for u, v in hv[-12:])
        + (" (last 12)" if len(hv) > 12 else ""),
        soft_wrap=True,
    )
