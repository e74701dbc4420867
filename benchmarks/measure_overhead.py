"""Cost of measuring latency per child: export + timing, for children of the default search.

Samples children (<= 150k params) from the default pipeline's space on digits, and times the
export and the latency measurement (cpu-arm, no cache) of each, in this process. With a run
directory, also prints the share of that search's wall time spent exporting and measuring.

    python benchmarks/measure_overhead.py [--children 30] [--run RUN_DIR]
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--children", type=int, default=30)
    ap.add_argument("--run", default=None)
    args = ap.parse_args()
    from edgenas.controllers import History, RandomController
    from edgenas.hardware.cost import count_params
    from edgenas.hardware.latency import Measurer
    from edgenas.hardware.onnx import export_onnx
    from edgenas.hardware.profiles import load_profile
    from edgenas.settings.pipeline import load_pipeline
    from edgenas.spaces import from_pipeline
    from edgenas.training.data import load_digits

    data = load_digits()
    space = from_pipeline(load_pipeline(), data.input_shape, data.num_classes)
    profile = load_profile("cpu-arm")
    m = Measurer(use_cache=False)
    m.measure(export_onnx(space.build(space.smallest()), data.input_shape), profile)  # start the worker
    ctl = RandomController(space, seed=5)
    totals, exports, measures = [], [], []
    while len(totals) < args.children:
        model = space.build(space.decode(ctl.propose(1, History())[0]))
        if count_params(model) > 150_000:
            continue
        t0 = time.perf_counter()
        blob = export_onnx(model, data.input_shape)
        t1 = time.perf_counter()
        m.measure(blob, profile)
        t2 = time.perf_counter()
        exports.append(t1 - t0)
        measures.append(t2 - t1)
        totals.append(t2 - t0)
    m.close()
    print(
        f"children: {len(totals)} (<= 150k params, default space, digits), profile cpu-arm "
        f"({profile.sessions} sessions x {profile.timed_runs} runs)"
    )
    print(f"export  : median {statistics.median(exports):.3f} s")
    print(f"measure : median {statistics.median(measures):.3f} s")
    print(f"total   : median {statistics.median(totals):.3f} s per child, max {max(totals):.3f} s")
    if args.run:
        conn = sqlite3.connect(Path(args.run) / "search.db")
        spent = conn.execute(
            "SELECT SUM(COALESCE(export_seconds, 0) + COALESCE(measure_seconds, 0)) FROM trials"
        ).fetchone()[0]
        wall = json.loads((Path(args.run) / "manifest.json").read_text())["search"]["wall_seconds"]
        print(f"search {args.run}: export + measure {spent:.1f} s of {wall:.1f} s wall ({100 * spent / wall:.1f} %)")


if __name__ == "__main__":
    main()
