"""Raspberry Pi 5 latency predicted on any host: quality by cross-validation, in one run.

Builds every network of ../shared/data/pi5-onnxruntime-latency-calibration.csv (NB201 cells in
the C=16, N=5 skeleton, 100-class head, input 1x3x32x32, 'none' as x * 0, as the file's README
and the reference code describe), times each on this host under the cpu-arm-host profile
(through the latency cache, so `edgenas calibrate` afterwards reuses these measurements), reads
per-operator features from its ONNX graph, and prints 5-fold cross-validated Spearman, MAPE and
the share of predictions within 10 % and 5 % for, on the same folds:

- the one-factor baseline (this host's time x a constant),
- the graph-only predictor (no host timing: what `--profile cpu-arm` uses on any machine),
- the host-timing calibration (host time + graph; what cpu-arm uses on a host with this CPU).

    python benchmarks/calibration.py [--limit N] [--out-dir hardware_profiles] [--families]

--families also cross-validates other graph-only model families on the same folds (signed least
squares, gradient-boosted trees on log latency, the linear model with a boosted residual), which
is how the shipped one (non-negative linear) was chosen.

With --out-dir it also writes the cpu-arm profile and its two calibration files there, exactly as
`edgenas calibrate PI5.csv --profile cpu-arm-host --name cpu-arm` does.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "pi5-onnxruntime-latency-calibration.csv"


def compare_families(fitted, data: str) -> None:
    """Other graph-only model families on the same 5 folds as the shipped one; then the networks
    the shipped family predicts more than 10 % off (out of fold)."""
    import csv

    import numpy as np
    from sklearn.ensemble import GradientBoostingRegressor

    from edgenas.hardware.calibrate import GRAPH_FEATURES, _matrix, _nnls_relative, metrics

    x = _matrix(None, fitted.features, GRAPH_FEATURES)
    y = np.asarray(fitted.device_ms)
    order = np.random.default_rng(0).permutation(len(y))  # the folds cross_validate uses

    def nnls(a, b, c):
        return c @ _nnls_relative(a, b)[0]

    def signed(a, b, c):
        return c @ np.linalg.lstsq(a / b[:, None], np.ones_like(b), rcond=None)[0]

    def trees(a, b, c):
        m = GradientBoostingRegressor(n_estimators=400, max_depth=3, learning_rate=0.05, random_state=0)
        return np.exp(m.fit(a, np.log(b)).predict(c))

    def residual(a, b, c):
        w = _nnls_relative(a, b)[0]
        m = GradientBoostingRegressor(n_estimators=200, max_depth=2, learning_rate=0.05, random_state=0)
        return (c @ w) * np.exp(m.fit(a, np.log(b / (a @ w))).predict(c))

    families = [
        ("non-negative linear (shipped)", nnls),
        ("signed least squares", signed),
        ("boosted trees, log latency", trees),
        ("linear + boosted residual", residual),
    ]
    print("graph-only model families, same folds:")
    for name, fit in families:
        pred = np.zeros(len(y))
        for k in range(5):
            test = order[k::5]
            train = np.setdiff1d(order, test)
            pred[test] = fit(x[train], y[train], x[test])
        m = metrics(pred, y)
        print(
            f"  {name:30s}: Spearman {m['spearman']:.4f}  MAPE {m['mape_pct']:.2f} %  "
            f"within 10 %: {100 * m['within_10pct']:.2f} %  within 5 %: {100 * m['within_5pct']:.2f} %"
        )
        if fit is nnls:
            shipped = pred
    with open(data) as f:
        cells = [r["cellstr"] for r in csv.DictReader(f)][: len(y)]
    print("networks the shipped family predicts more than 10 % off (out of fold):")
    for i in np.flatnonzero(np.abs(shipped / y - 1) > 0.10):
        print(
            f"  {cells[i]}  measured {y[i]:.2f} ms, predicted {shipped[i]:.2f} ms ({100 * (shipped[i] / y[i] - 1):+.1f} %)"
        )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--out-dir", default=None, help="also write cpu-arm.toml and its calibration files here")
    ap.add_argument("--families", action="store_true", help="also compare other graph-only model families")
    args = ap.parse_args()
    from edgenas.hardware.calibrate import calibrate

    t0 = time.time()

    def progress(i: int, n: int) -> None:
        if i % 100 == 0 or i == n:
            print(f"  {i}/{n} networks built and timed ({time.time() - t0:.0f} s)", file=sys.stderr, flush=True)

    fitted = calibrate("cpu-arm-host", args.data, args.limit, on_progress=progress)
    host = fitted.host
    print(f"networks: {host.pairs} (device: Raspberry Pi 5; host: {host.host_cpu}; profile cpu-arm-host)")
    rows = [
        ("baseline host x factor ", host.baseline_cv),
        ("graph only (any host)  ", fitted.graph.cv),
        ("host timing + graph    ", host.cv),
    ]
    for name, m in rows:
        print(
            f"{name}: Spearman {m['spearman']:.4f}  MAPE {m['mape_pct']:.2f} %  "
            f"within 10 %: {100 * m['within_10pct']:.1f} %  within 5 %: {100 * m['within_5pct']:.1f} %"
        )
    base, graph = host.baseline_cv, fitted.graph.cv
    print(
        f"MAPE ratio baseline / graph only: {base['mape_pct'] / graph['mape_pct']:.2f}x; "
        f"graph only / host timing: {graph['mape_pct'] / host.cv['mape_pct']:.2f}x  ({time.time() - t0:.0f} s)"
    )
    if args.families:
        compare_families(fitted, args.data)
    if args.out_dir:
        from edgenas.hardware.calibrate import write_calibrated_profile
        from edgenas.hardware.profiles import load_profile

        written = write_calibrated_profile(
            load_profile("cpu-arm-host").source_path, fitted, Path(args.out_dir), "cpu-arm"
        )
        print("wrote", *written)


if __name__ == "__main__":
    main()
