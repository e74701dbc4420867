"""Scaling: children per hour of the same search on each executor (local, process pool with 1
and 2 workers, Ray), same seed, same children, in this process one after another.

The search is the default pipeline (layer-wise space, predictor controller, cpu-arm timing
without the latency cache, so every configuration measures every child) on the embedded digits
set, shortened with --children/--epochs. Each configuration runs in a fresh run directory; configurations
with the same torch threads per job must give identical trials (checked), so the only difference
is where training ran.
Reported: children per hour over the whole search wall time, and the time spent in the
training phase (timing/export/controller are in the main process whatever the executor).

    python benchmarks/scaling.py [--children 24] [--epochs 4] [--configs local,process1,process2,ray]

On a GPU machine: `--configs cpu,cuda,cuda-k1,cuda-k2,cuda-k4` compares training on the CPU, on
the GPU in the main process, and K children at once on the GPU (process executor, K workers
sharing it: `--children-per-gpu K`). `--dataset folder:PATH --max-images N` uses an ImageFolder
(e.g. the CIFAR-10 one) instead of digits.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import tempfile
import time


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--children", type=int, default=24)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--configs", default="local,process1,process2,ray")
    ap.add_argument("--reps", type=int, default=1, help="repeat the configurations (interleaved); median reported")
    ap.add_argument("--dataset", default="digits", help="digits, or folder:PATH (an ImageFolder)")
    ap.add_argument("--max-images", type=int, default=None, help="a stratified subset of the dataset")
    args = ap.parse_args()
    from edgenas.hardware.latency import Measurer
    from edgenas.loop.run import run_search
    from edgenas.settings.pipeline import load_pipeline

    cores = len(os.sched_getaffinity(0))
    base = load_pipeline("default").override("search", children=args.children).override("training", epochs=args.epochs)
    base = base.override("dataset", name=args.dataset, max_images=args.max_images)
    configs = {
        "local": dict(executor="local", threads_per_job=cores),
        "process1": dict(executor="process", workers=1, threads_per_job=cores),
        "process2": dict(executor="process", workers=2, threads_per_job=max(1, cores // 2)),
        "ray": dict(executor="ray", threads_per_job=max(1, cores // 2)),
        # GPU machine: CPU training for reference, the GPU in-process, K children sharing the GPU
        "cpu": dict(executor="local", device="cpu", threads_per_job=cores),
        "cuda": dict(executor="local", device="cuda", threads_per_job=cores),
        **{
            f"cuda-k{k}": dict(
                executor="process", device="cuda", children_per_gpu=k, threads_per_job=max(1, cores // k)
            )
            for k in (1, 2, 4, 8)
        },
    }
    chosen = args.configs.split(",")
    results: dict[str, list[tuple[float, float, int]]] = {c: [] for c in chosen}
    trials: dict[str, list] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.reps):
            for name in chosen:
                pipe = base.override("search", runs_dir=tmp, **configs[name])
                measurer = Measurer(use_cache=False)
                try:
                    t0 = time.perf_counter()
                    res = run_search(pipe, run_name=f"{name}-{rep}", measurer=measurer)
                    wall = time.perf_counter() - t0
                finally:
                    measurer.close()
                conn = sqlite3.connect(res.run_dir / "search.db")
                rows = conn.execute("SELECT arch_key, status, val_accuracy FROM trials ORDER BY arch_key").fetchall()
                train_s = conn.execute("SELECT COALESCE(SUM(train_seconds), 0) FROM trials").fetchone()[0]
                conn.close()
                trained = sum(1 for r in rows if r[1] in ("ok", "failed", "stopped"))
                trials.setdefault(name, rows)
                results[name].append((wall, train_s, trained))
                print(f"  {name} rep {rep}: {wall:.1f} s wall, {trained} children trained", flush=True)
    ref = chosen[0]
    # Identical trials are promised for the same torch threads per job (float summation order).
    for name in chosen:
        same = ("threads_per_job", "device")
        twins = [
            o for o in chosen[: chosen.index(name)] if all(configs[o].get(k) == configs[name].get(k) for k in same)
        ]
        for other in twins:
            print(
                f"trials of {name} identical to {other} (both {configs[name]['threads_per_job']} thread(s) per job): "
                f"{trials[name] == trials[other]}"
            )
    import statistics

    print(
        f"\n{args.children} children sampled, {args.epochs} epochs each, {cores} cores, {args.dataset}"
        f"{f' ({args.max_images} images)' if args.max_images else ''}, cpu-arm timing"
    )
    print(f"{'executor':>10} {'wall s':>8} {'children/h':>11} {'vs ' + ref:>9}  training s (sum over children)")
    ref_rate = None
    for name in chosen:
        wall = statistics.median(w for w, _, _ in results[name])
        trained = results[name][0][2]
        rate = trained / wall * 3600
        ref_rate = ref_rate or rate
        print(
            f"{name:>10} {wall:8.1f} {rate:11.0f} {rate / ref_rate:8.2f}x  "
            f"{statistics.median(t for _, t, _ in results[name]):.1f}"
        )


if __name__ == "__main__":
    main()
