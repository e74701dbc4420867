"""Shared CLI pieces: the consoles and the one place where errors become exit codes."""

from __future__ import annotations

import functools
import sqlite3
from typing import Any, Callable, TypeVar

import typer
from rich.console import Console
from rich.text import Text

from edgenas.errors import EdgenasError

console = Console()
err_console = Console(stderr=True)

EXIT_NO_RESULT = 1
EXIT_DISK_FULL = 1  # a run that had to stop: what was saved is kept
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143  # 128 + SIGTERM, as a shell reports a process SIGTERM ended

F = TypeVar("F", bound=Callable[..., Any])


def handle_errors(func: F) -> F:
    """Turn the project's errors into one clear message and their exit code (no traceback):
    2 for bad input, 1 for a search that had to stop."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except EdgenasError as exc:
            # The message is plain text: "[training]" in it must not be read as rich markup.
            err_console.print(Text.assemble(("error:", "bold red"), " ", str(exc)), highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except (OSError, sqlite3.OperationalError) as exc:
            if not _disk_full(exc):
                raise
            where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
            err_console.print(
                Text.assemble(
                    ("error:", "bold red"),
                    f" the disk is full{where}: {exc}. What was saved before is kept (a trial is committed whole "
                    "or not at all); free some space, then run the same command again (a search: with --resume RUN_DIR)",
                ),
                highlight=False,
                soft_wrap=True,
            )
            raise typer.Exit(EXIT_DISK_FULL) from None

    return wrapper  # type: ignore[return-value]


def _disk_full(exc: BaseException) -> bool:
    """No space left (ENOSPC), over a quota (EDQUOT) or a file-size limit (EFBIG), as an OSError
    or as SQLite's "database or disk is full"."""
    import errno

    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
    return "disk is full" in str(exc) or "disk I/O error" in str(exc)


def fmt_ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}" if value < 1 else f"{value:.3f}"


def fmt_pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f} %"


def fmt_kib(value: float | None) -> str:
    return "-" if value is None else f"{value / 1024:,.1f}"


def fmt_int(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def candidates_table(trials: list, title: str, pareto: dict[str, set[int]] | None = None):
    """The top-candidates table `search` and `report` print: one row per trial, best first;
    `pareto` (front name -> trial ids) adds a column naming the fronts each trial is on."""
    from rich.table import Table

    from edgenas.hardware.latency import outside_fit_note

    flagged = any(outside_fit_note(t.latency) for t in trials)
    if flagged:
        title += " ('~': predicted outside what the calibration saw; rough)"
    table = Table(title=title)
    cols = ["#", "trial", "params", "MACs", "val acc", "latency median ms", "p90 ms", "reward"]
    memory = any(t.memory for t in trials)
    int8 = any(t.fp32_val_accuracy is not None for t in trials)
    if int8:
        cols[cols.index("val acc")] = "val acc (int8)"
        cols.insert(cols.index("val acc (int8)") + 1, "fp32 val")
    cols += ["peak RAM KiB", "flash KiB"] if memory else []
    rungs = any(t.rung is not None for t in trials)  # multi-fidelity: the highest rung each reached
    cols += ["rung"] if rungs else []
    cols += ["Pareto"] if pareto is not None else []
    for col in cols + ["architecture"]:
        table.add_column(col, justify="left" if col == "architecture" else "right")
    for rank, t in enumerate(trials, 1):
        row = [
            str(rank),
            str(t.id),
            fmt_int(t.params),
            fmt_int(t.macs),
            fmt_pct(t.val_accuracy),
            *([fmt_pct(t.fp32_val_accuracy)] if int8 else []),
            fmt_ms(t.latency_median_ms) + ("~" if outside_fit_note(t.latency) else ""),
            fmt_ms(t.latency_p90_ms),
            f"{t.reward:.4f}",
        ]
        if memory:
            m = t.memory or {}
            row += [fmt_kib(m.get("peak_ram_bytes")), fmt_kib(m.get("flash_bytes"))]
        if rungs:
            row.append("-" if t.rung is None else str(t.rung))
        if pareto is not None:
            row.append(",".join(name for name, ids in pareto.items() if t.id in ids))
        table.add_row(*row, t.arch_text)
    return table
