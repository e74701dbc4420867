"""How long the README's paths take, relative to the default search: the same 16-child digits
search under each path's profile, one after another in this process's machine state, timed
wall to wall (the `edgenas` CLI in a subprocess, no latency cache), printed as ratios to the
`cpu-arm` run. The README's minutes per path are the default search's measured minutes
(benchmarks/results/default_search.txt) times these ratios.

    python benchmarks/paths_time.py --reps 2
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time

PATHS = {
    "cpu-arm": ["--budget", "150000", "--profile", "cpu-arm"],
    "stm32f746": ["--profile", "stm32f746"],
    "pixel-litert": ["--budget", "150000", "--profile", "pixel-litert"],
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--children", type=int, default=16)
    args = ap.parse_args()
    runs = tempfile.mkdtemp(prefix="edgenas-paths-")
    seconds: dict[str, list[float]] = {name: [] for name in PATHS}
    for rep in range(args.reps):
        for name, flags in PATHS.items():  # interleaved: each rep runs every path once
            cmd = [sys.executable, "-m", "edgenas", "search", "--children", str(args.children), *flags,
                   "--runs-dir", runs, "--name", f"{name}-{rep}", "--quiet", "--no-cache"]  # fmt: skip
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True)
            seconds[name].append(time.perf_counter() - t0)
            print(f"{name} rep {rep + 1}: {seconds[name][-1]:.1f} s", flush=True)
    base = statistics.median(seconds["cpu-arm"])
    for name, secs in seconds.items():
        print(f"{name}: median {statistics.median(secs):.1f} s, {statistics.median(secs) / base:.2f}x cpu-arm")


if __name__ == "__main__":
    main()
