"""Boards and runtimes from measured data: the Pi 5 under onnxruntime, LiteRT and PyTorch Mobile,
and a Pixel phone under LiteRT, latency and (Pi 5) energy per inference, predicted from the graph.

Reads ../shared/data/hw-nas-bench-360-boards-cifar100.csv (1,994 NB201 networks, each timed on
every board and runtime; see ../shared/data/README.md), reads each network's per-operator features
from its ONNX graph once, and per profile:

- fits the graph-only latency predictor (and, on the Pi 5, the energy predictor) exactly as
  `edgenas calibrate FILE --graph-only --board B --framework F` does;
- reports 5-fold cross-validated Spearman, MAPE, and the share within 10 % and 5 % (held-out
  networks, i.e. held-out cells);
- extrapolation: fitted on the cheapest 70 % of the networks (by the measured quantity), tested on
  the most expensive 30 %;
- which work carries the prediction (mean share of each operator group);
- the ceiling the readings set: networks whose features are identical get one prediction from any
  model of these features, so where their readings disagree no such model is right about all of
  them (`ceiling`).

    python benchmarks/boards.py [--out-dir hardware_profiles] [--results benchmarks/results/boards.json]

With --out-dir it writes pi5-litert, pi5-torchmobile and pixel-litert (profile + calibration
files) and the cpu-arm energy calibration (cpu-arm's latency calibration is benchmarks/calibration.py's).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "hw-nas-bench-360-boards-cifar100.csv"

PI5 = "Raspberry Pi 5 (4x Cortex-A76)"
# profile name -> (board, framework in the file, target (the device: profiles of one board share it), description)
PROFILES = {
    "cpu-arm": ("raspberry-pi-5", "onnx", PI5, ""),
    "pi5-litert": (
        "raspberry-pi-5",
        "litert",
        PI5,
        "Raspberry Pi 5-class board (4x Cortex-A76), LiteRT (TensorFlow Lite) CPU, fp32, 1 thread pinned to one "
        "core, batch 1 (converted with litert-torch); milliseconds and energy per inference (PMIC)",
    ),
    "pi5-torchmobile": (
        "raspberry-pi-5",
        "torchmobile",
        PI5,
        "Raspberry Pi 5-class board (4x Cortex-A76), PyTorch Mobile (torch.jit.trace + optimize_for_mobile), fp32, "
        "1 thread pinned to one core, batch 1; milliseconds and energy per inference (PMIC)",
    ),
    "pixel-litert": (
        "pixel-phone",
        "litert",
        "Pixel phone",
        "Pixel phone, LiteRT benchmark tool, 1 thread on the big cores, fp32, batch 1 (the measuring script's "
        "default delegate was its GPU delegate, not recorded per row; the tool's average); milliseconds, no energy",
    ),
}


def features_of(data: Path) -> dict[str, dict[str, float]]:
    """Graph features of every distinct network of the file (cellstr -> features), cached in the
    temp directory by the file's and the feature code's digest."""
    import hashlib
    import tempfile

    from edgenas.hardware import calibration
    from edgenas.hardware.calibrate import file_digest, read_pairs

    code = hashlib.sha256(Path(calibration.__file__).read_bytes()).hexdigest()[:12]
    cache = Path(tempfile.gettempdir()) / f"edgenas-boards-features-{file_digest(data)}-{code}.json"
    if cache.is_file():
        return json.loads(cache.read_text())
    pairs = read_pairs(data, board="raspberry-pi-5", framework="onnx")
    out: dict[str, dict[str, float]] = {}
    t0 = time.perf_counter()
    for i, p in enumerate(pairs):
        model = p.model()
        out[p.name] = {"plain": calibration.graph_features(model), "folded": calibration.graph_features(model, True)}
        if (i + 1) % 200 == 0:
            print(f"  graph features: {i + 1}/{len(pairs)} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    cache.write_text(json.dumps(out))
    return out


def extrapolation(feats: list[dict[str, float]], y: list[float], share: float = 0.7) -> dict[str, float]:
    """Fit on the cheapest `share` of the networks, test on the rest."""
    import numpy as np

    from edgenas.hardware.calibrate import GRAPH_FEATURES, _matrix, _nnls_relative, metrics

    order = np.argsort(y)
    cut = int(len(y) * share)
    train, test = order[:cut], order[cut:]
    x = _matrix(None, feats, GRAPH_FEATURES)
    yy = np.asarray(y)
    w, _ = _nnls_relative(x[train], yy[train])
    return metrics(x[test] @ w, yy[test])


def ceiling(feats: list[dict[str, float]], y: list[float]) -> dict[str, float]:
    """What the readings allow any predictor that reads only these features (work per operator
    group): networks with identical features get one prediction from any such model, so where
    their readings differ, no such model can be right about all of them.

    - `best_within_10pct`: an upper bound on the share within 10 % for any function of the
      features (per group of identical features, the one number that is within 10 % of the most
      readings, chosen with the readings themselves; a network alone in its group counts as hit);
    - `spearman`, `mape_pct`, `within_10pct`: each network that shares its features with another,
      predicted by the median of the *others'* readings (what the best such model could do
      without having seen it), over those networks (`networks`, in `groups` groups)."""
    import numpy as np

    from edgenas.hardware.calibrate import metrics

    groups: dict[str, list[float]] = {}
    for f, v in zip(feats, y):
        groups.setdefault(json.dumps(f, sort_keys=True), []).append(v)
    hits, pred, truth, shared = 0, [], [], 0
    for values in groups.values():
        # the most readings one number p can be within 10 % of (|p - w| <= 0.1 w, i.e. p in
        # [0.9 w, 1.1 w]): the most such intervals that share a point, found at a left end
        hits += max(sum(0.9 * w <= 0.9 * v <= 1.1 * w for w in values) for v in values)
        if len(values) < 2:
            continue
        shared += 1
        for i, v in enumerate(values):
            pred.append(float(np.median(values[:i] + values[i + 1 :])))
            truth.append(v)
    out = metrics(pred, truth)
    out.update(best_within_10pct=hits / len(y), networks=len(truth), groups=shared)
    return out


def from_latency(latency_ms: list[float], energy_mj: list[float]) -> dict[str, float]:
    """How well the board's own measured latency predicts its measured energy (a * ms + b, least
    relative squares, in sample): what the energy readings allow any latency-based model."""
    import numpy as np

    from edgenas.hardware.calibrate import metrics

    t, e = np.asarray(latency_ms), np.asarray(energy_mj)
    x = np.c_[t, np.ones_like(t)]
    w = np.linalg.lstsq(x / e[:, None], np.ones_like(e), rcond=None)[0]
    return metrics(x @ w, e)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--out-dir", default=None, help="write the profiles and calibration files here")
    ap.add_argument("--results", default=None, help="write the measured numbers (JSON) here")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    from edgenas.hardware.calibrate import calibrate, write_calibrated_profile
    from edgenas.hardware.profiles import load_profile

    data = Path(args.data)
    if not data.is_file():
        print(f"no data file at {data}; see ../shared/data/README.md", file=sys.stderr)
        return 2
    feats = features_of(data)
    import platform

    from edgenas.hardware.calibration import host_cpu

    results: dict = {"data": data.name, "pairs": {}, "date": time.strftime("%Y-%m-%d"),
                     "machine": f"{host_cpu()} ({platform.machine()})", "command": "python benchmarks/boards.py " + " ".join(argv or sys.argv[1:])}  # fmt: skip
    base = load_profile("cpu-arm-host")
    print(f"{'profile':17} {'quantity':8} {'Spearman':>8} {'MAPE':>7} {'<=10%':>7} {'<=5%':>7}   "
          f"{'extrapolated (top 30 %)':>26}   carried by")  # fmt: skip
    for name, (board, framework, target, description) in PROFILES.items():
        fitted = calibrate("cpu-arm-host", data, host_timing=False, board=board, framework=framework, features=feats)
        entry = {"board": board, "framework": framework, "pairs": fitted.graph.pairs}
        for quantity, cal, y in (
            ("latency", fitted.graph, fitted.device_ms),
            ("energy", fitted.energy, fitted.energy_mj),
        ):
            if cal is None:
                continue
            ext = extrapolation(fitted.features, y)
            entry[quantity] = {"cv": cal.cv, "extrapolation": ext, "contributions": cal.contributions, "unit": cal.unit,
                               "fold_constants": cal.fold_constants, "ceiling": ceiling(fitted.features, y)}  # fmt: skip
            m = cal.cv
            shares = ", ".join(f"{g} {100 * v:.0f}%" for g, v in list(cal.contributions.items())[:4])
            print(
                f"{name + (' *' if cal.fold_constants else ''):17} {quantity:8} {m['spearman']:8.4f} {m['mape_pct']:6.2f}% {100 * m['within_10pct']:6.1f}% "
                f"{100 * m['within_5pct']:6.1f}%   rho {ext['spearman']:.4f}, MAPE {ext['mape_pct']:5.2f}%, "
                f"{100 * ext['within_10pct']:5.1f}% in 10%   {shares}"
            )
            c = entry[quantity]["ceiling"]
            print(f"{'':17} {'':8} any model of these features: at most {100 * c['best_within_10pct']:.1f}% in 10%; "
                  f"the {c['networks']} sharing their features, each predicted by the others' median: Spearman "
                  f"{c['spearman']:.4f}, MAPE {c['mape_pct']:.2f}%, {100 * c['within_10pct']:.1f}% in 10%")  # fmt: skip
        if fitted.energy_mj is not None:
            entry["energy"]["from_measured_latency"] = from_latency(fitted.device_ms, fitted.energy_mj)
            m = entry["energy"]["from_measured_latency"]
            print(f"{'':17} energy from the board's measured latency (a*ms+b): Spearman {m['spearman']:.4f}, "
                  f"MAPE {m['mape_pct']:.2f}%, {100 * m['within_10pct']:.1f}% in 10%")  # fmt: skip
        results["pairs"][name] = entry
        if args.out_dir:
            out = Path(args.out_dir)
            if name == "cpu-arm":  # its latency calibration is benchmarks/calibration.py's: add energy only
                assert fitted.energy is not None
                fitted.energy.profile = name
                fitted.energy.save(out / "cpu-arm.energy-calibration.json")
                continue
            fitted.graph.profile = name
            if fitted.energy is not None:
                fitted.energy.profile = name
            write_calibrated_profile(base.source_path, fitted, out, name, target=target, description=description)
    print("* : features of the graph with constants folded, as the runtime's converter leaves it (chosen by "
          "cross-validation); the others: the graph as exported")  # fmt: skip
    if args.results:
        Path(args.results).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
