"""Calibrated Raspberry Pi 5 latency from this host: quality by cross-validation.

Builds every network of ../shared/data/pi5-onnxruntime-latency-calibration.csv (NB201 cells in
the C=16, N=5 skeleton, 100-class head, input 1x3x32x32, as the file's README describes), times
each on this host under the cpu-arm profile (through the latency cache, so `edgenas calibrate`
afterwards reuses these measurements), reads per-operator features from its ONNX graph, and
prints 5-fold cross-validated Spearman and MAPE of edgenas' calibration model next to the
one-factor baseline (host x constant) fitted on the same folds in the same run.

    python benchmarks/calibration.py [--limit N] [--out-dir hardware_profiles]

With --out-dir it also writes the calibrated profile there, exactly as `edgenas calibrate` does.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "pi5-onnxruntime-latency-calibration.csv"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--out-dir", default=None, help="also write cpu-arm-calibrated.toml and its calibration here")
    args = ap.parse_args()
    from edgenas.calibrate import calibrate

    t0 = time.time()

    def progress(i: int, n: int) -> None:
        if i % 100 == 0 or i == n:
            print(f"  {i}/{n} networks timed ({time.time() - t0:.0f} s)", file=sys.stderr, flush=True)

    cal, host, device = calibrate("cpu-arm", args.data, args.limit, on_progress=progress)
    base, model = cal.baseline_cv, cal.cv
    print(f"networks: {cal.pairs} (device: Raspberry Pi 5; host: {cal.host_cpu}; profile cpu-arm)")
    print(
        f"baseline host x factor : Spearman {base['spearman']:.4f}  MAPE {base['mape_pct']:.2f} %  "
        f"within 10 %: {100 * base['within_10pct']:.1f} %"
    )
    print(
        f"edgenas calibration    : Spearman {model['spearman']:.4f}  MAPE {model['mape_pct']:.2f} %  "
        f"within 10 %: {100 * model['within_10pct']:.1f} %  within 5 %: {100 * model['within_5pct']:.1f} %"
    )
    print(f"MAPE ratio baseline / edgenas: {base['mape_pct'] / model['mape_pct']:.2f}x  ({time.time() - t0:.0f} s)")
    if args.out_dir:
        from edgenas.calibrate import write_calibrated_profile
        from edgenas.profiles import load_profile

        written = write_calibrated_profile(load_profile("cpu-arm").source_path, cal, Path(args.out_dir))
        print("wrote", *written)


if __name__ == "__main__":
    main()
