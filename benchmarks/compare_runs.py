"""Do two searches make the same decisions? Compares two run directories' trials and samples.

    python benchmarks/compare_runs.py RUN_A RUN_B

Trials are compared on what a search decides and learns from (architecture key, status,
parameters, MACs, validation accuracy, reward, seed, where it was first sampled, the rung it
reached), the samples the controller was told, the rung results of a multi-fidelity search and
the controller's statistics after each update; not on latency or wall time, which differ from
machine to machine. Exit code 0 when identical.
"""

from __future__ import annotations

import sqlite3
import sys

COLUMNS = "arch_key, status, params, macs, val_accuracy, reward, seed, origin_update, origin_position, rung, curve"


def rows(run: str) -> tuple[list, list, list, list]:
    conn = sqlite3.connect(f"file:{run}/search.db?mode=ro", uri=True)
    trials = conn.execute(f"SELECT {COLUMNS} FROM trials ORDER BY id").fetchall()
    samples = conn.execute(
        "SELECT update_index, position, arch_key, reward, reused FROM samples ORDER BY update_index, position"
    ).fetchall()
    rungs = conn.execute(
        "SELECT trial_id, rung, epochs, val_accuracy, reward, update_index FROM rungs ORDER BY trial_id, rung"
    ).fetchall()
    updates = conn.execute(
        "SELECT update_index, loss, entropy, baseline, mean_reward FROM updates ORDER BY update_index"
    ).fetchall()
    return trials, samples, rungs, updates


def main() -> int:
    from pathlib import Path

    if len(sys.argv) != 3 or not all((Path(p) / "search.db").is_file() for p in sys.argv[1:]):
        print("usage: python benchmarks/compare_runs.py RUN_A RUN_B (two run directories, each with a search.db)")
        return 2
    a, b = sys.argv[1], sys.argv[2]
    (ta, sa, ra, ua), (tb, sb, rb, ub) = rows(a), rows(b)
    print(f"trials {len(ta)} vs {len(tb)}; samples {len(sa)} vs {len(sb)}; rung results {len(ra)} vs {len(rb)}")
    print(f"trials identical: {ta == tb}; samples identical: {sa == sb}; rungs identical: {ra == rb}; "
          f"controller updates identical: {ua == ub}")  # fmt: skip
    for i, (x, y) in enumerate(zip(ta, tb), 1):
        if x != y:
            print(f"first different trial: #{i}\n  {x}\n  {y}")
            break
    best = max((t for t in ta if t[1] == "ok"), key=lambda t: (t[5], -t[2]), default=None)
    if best:
        print(f"best of {a}: {best[0]} ({best[2]:,} params, val {best[4]:.4f})")
    return 0 if (ta, sa, ra, ua) == (tb, sb, rb, ub) else 1


if __name__ == "__main__":
    sys.exit(main())
