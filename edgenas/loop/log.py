"""One plain line per event of a search: a child finished (or reached a rung), a controller update
finished. The same lines go to the run directory's search.log and, where standard output is not
a terminal, to the output of `edgenas search` (Optuna logs a line per finished trial the same way)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edgenas.loop.session import Progress

LOG_NAME = "search.log"


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s" if m else f"{s}s"


def child_line(p: Progress) -> str:
    """`child 12/160 trial 11 ok 12 epochs val 97.41 % reward 0.9741 params 25,898 latency 0.2563 ms
    elapsed 1m02s eta 12m30s` (what is unknown is left out)."""
    t = p.trial
    assert t is not None
    if p.phase == "retrain":  # --executor supernet: one of the best, trained stand-alone
        first = "trained stand-alone"
    elif p.phase == "final":  # --finalists: one of the best, trained again for longer
        first = "finalist"
    else:
        first = f"promoted to rung {p.rung}" if p.rung else f"child {p.sampled}/{p.total}"
    parts = [first, f"trial {t.id}"]
    parts.append("reused" if p.was_reused else t.status)
    if p.epochs is not None:
        parts.append(f"{p.epochs} epochs")
    if t.val_accuracy is not None:
        parts.append(f"val {100 * t.val_accuracy:.2f} %")
    parts.append(f"reward {t.reward:.4f}")
    parts.append(f"params {t.params:,}")
    if t.latency_median_ms is not None:
        parts.append(f"latency {t.latency_median_ms:.4f} ms")
        if (t.latency or {}).get("energy_mj") is not None:
            parts.append(f"energy {t.latency['energy_mj']:.4g} mJ")
    if t.status in ("rejected", "failed") and t.reason:
        parts.append(f"({t.reason})")
    parts.append(f"elapsed {_duration(p.elapsed_seconds)}")
    if (left := eta(p)) is not None:
        parts.append(left)
    return " ".join(parts)


def eta(p: Progress) -> str | None:
    """`eta 12m30s` at this pace for the children still to sample, or `eta 48m10s (--max-minutes)`
    where the time limit comes first; None before the first child and after the last."""
    if not 0 < p.sampled < p.total:
        return None
    pace = p.elapsed_seconds / p.sampled * (p.total - p.sampled)
    if p.seconds_left is not None and p.seconds_left < pace:
        return f"eta {_duration(p.seconds_left)} (--max-minutes)"
    return f"eta {_duration(pace)}"


def update_line(p: Progress) -> str:
    """`update 3: trained 24, rejected 0, failed 0, reused 1; best reward 0.9741 (val 97.41 %,
    25,898 params); loss 0.0123, entropy 1.23`."""
    stats = ", ".join(f"{k} {v:.4g}" for k, v in (p.update_stats or {}).items() if v is not None)
    best = (
        f"best reward {p.best_reward:.4f} (val {100 * (p.best_val_accuracy or 0):.2f} %, {p.best_params:,} params)"
        if p.best_reward is not None and p.best_params is not None
        else "no finished child yet"
    )
    counts = f"trained {p.trained}, rejected {p.rejected}, failed {p.failed}, stopped {p.stopped}, reused {p.reused}"
    return f"update {p.update + 1 if p.update is not None else '?'}: {counts}; {best}" + (f"; {stats}" if stats else "")


def event_line(p: Progress) -> str | None:
    """The line of an event snapshot (None for a plain refresh or a reused child)."""
    if p.update is not None:
        return update_line(p)
    if p.trial is not None and not p.was_reused:
        return child_line(p)
    return None


class RunLog:
    """Appends event lines to RUN_DIR/search.log (opened per line: a killed search loses nothing
    written before)."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / LOG_NAME

    def write(self, p: Progress) -> None:
        line = event_line(p)
        if line is not None:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(line + "\n")
