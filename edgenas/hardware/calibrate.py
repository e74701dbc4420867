"""Calibrated device latency: predict a board's latency from the ONNX graph (on any host) and,
where this host's CPU is the one it was fitted on, from this host's measurement too.

`fit` learns, from pairs (ONNX model, latency measured on the device), a model of

    device_ms = sum_k w_k * x_k,    w_k >= 0 (non-negative least squares on relative error)

whose features x are per-operator work read from the ONNX graph alone (for each operator group:
multiply-accumulates, output elements, node count) and, for a host-timing calibration, the host
measurement under the profile's settings. Convolutions are split by what runs them at different
cost per MAC on a CPU: 1x1 (a matrix product), 3x3 (Winograd / im2col), other kernel sizes, and
grouped or depthwise. Nothing in it is specific to one search space, so it applies to any
network. The fit is weighted by 1/device_ms so that it minimises relative, not absolute, error.
`cross_validate` reports Spearman rank correlation, mean absolute percentage error and the share
within 5 and 10 % over k folds; they are stored with the calibration.

`calibrate` fits the graph-only model (no host timing: the same prediction on every machine)
and, unless told `host_timing=False`, times every pair on this host and fits the host-timing
model and the one-factor baseline (host x factor) on the same folds.

A network with work in a feature group that no calibration pair had (say depthwise convolutions
when every pair used 1x1 and 3x3) is outside what the fit saw, and its prediction says so
(`edgenas.hardware.calibration`).
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edgenas.errors import ConfigError
from edgenas.hardware.calibration import (  # noqa: F401  (re-exported: the calibrate API)
    FEATURES,
    GRAPH_FEATURES,
    HOST,
    Calibration,
    _matrix,
    _nnls_relative,
    covered_features,
    graph_features,
    host_cpu,
)


def fit(
    host_ms: Sequence[float] | None,
    feats: Sequence[dict[str, float]],
    device_ms: Sequence[float],
    names: Sequence[str] = FEATURES,
) -> list[float]:
    """Non-negative weights for `names` (FEATURES: host timing + graph; GRAPH_FEATURES: graph only)."""
    x = _matrix(host_ms, feats, names)
    y = np.asarray(device_ms, dtype=np.float64)
    if len(y) < 5:
        raise ConfigError(f"calibration needs at least 5 pairs, got {len(y)}")
    if (y <= 0).any():
        raise ConfigError("device latencies must be positive")
    w, _ = _nnls_relative(x, y)
    return [float(v) for v in w]


def fit_scale(host_ms: Sequence[float], device_ms: Sequence[float]) -> float:
    """The baseline: one global factor, least relative squared error."""
    h = np.asarray(host_ms, dtype=np.float64)
    y = np.asarray(device_ms, dtype=np.float64)
    r = h / y
    return float(r.sum() / (r * r).sum())


def metrics(pred: Sequence[float], truth: Sequence[float]) -> dict[str, float]:
    from scipy.stats import spearmanr

    p = np.asarray(pred)
    t = np.asarray(truth)
    ape = np.abs(p - t) / t
    return {
        "spearman": float(spearmanr(p, t).statistic),
        "mape_pct": float(100 * ape.mean()),
        "within_10pct": float((ape <= 0.10).mean()),
        "within_5pct": float((ape <= 0.05).mean()),
    }


def cross_validate(
    host_ms: Sequence[float] | None,
    feats: Sequence[dict[str, float]],
    device_ms: Sequence[float],
    folds: int = 5,
    seed: int = 0,
    names: Sequence[str] = FEATURES,
) -> tuple[dict[str, float], dict[str, float]]:
    """Out-of-fold metrics of the calibration model on `names` and of the one-factor baseline
    (empty without host timings)."""
    n = len(device_ms)
    if n < 2 * folds:
        raise ConfigError(f"{folds}-fold cross-validation needs at least {2 * folds} pairs, got {n}")
    order = np.random.default_rng(seed).permutation(n)
    pred = np.zeros(n)
    base = np.zeros(n)
    y = np.asarray(device_ms, dtype=np.float64)
    x = _matrix(host_ms, feats, names)
    h = np.asarray(host_ms, dtype=np.float64) if host_ms is not None else None
    for k in range(folds):
        test = order[k::folds]
        train = np.setdiff1d(order, test)
        w, _ = _nnls_relative(x[train], y[train])
        pred[test] = x[test] @ w
        if h is not None:
            base[test] = h[test] * fit_scale(h[train], y[train])
    return metrics(pred, y), (metrics(base, y) if h is not None else {})


def file_digest(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


# -- pairs from files, and the whole calibration --------------------------------------------


@dataclass
class Pair:
    """One (model, device latency) pair; the model is built or read only when asked for."""

    name: str
    device_ms: float
    source: Any  # a Path to an ONNX file, or an NB201Arch to build
    energy_mj: float | None = None  # energy per inference on the device, where the file has it

    def model(self) -> bytes:
        if isinstance(self.source, Path):
            try:
                return self.source.read_bytes()
            except OSError as exc:
                raise ConfigError(f"cannot read model {self.source}: {exc.strerror or exc}") from exc
        from edgenas.hardware.onnx import export_onnx
        from edgenas.spaces.nb201 import NB201Net

        return export_onnx(NB201Net(self.source, 3, 100, prune=False).eval(), (3, 32, 32))


def read_pairs(
    path: str | Path, limit: int | None = None, board: str | None = None, framework: str | None = None
) -> list[Pair]:
    """Pairs from a CSV, in one of three layouts:

    - `model,device_ms[,energy_mj]`: ONNX files (paths relative to the CSV) and their latency;
    - `cellstr,lat_ms_median`: NAS-Bench-201 cells (networks built as ../shared/data/README.md
      describes: C=16, N=5, 100 classes, input 1x3x32x32);
    - `cellstr,board,framework,lat_ms_median[,energy_mj]`: NB201 cells timed on several boards and
      runtimes (HW-NAS-Bench-360's layout); `board` and `framework` choose the rows (needed when
      the file holds more than one pair of them).

    An `energy_mj` column is read as energy per inference in mJ: every chosen row must have a
    positive one, or none of them (a board without energy data)."""
    import csv

    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            columns = reader.fieldnames or []
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ConfigError(f"cannot read the calibration file {path}: {exc}") from exc
    if {"board", "framework"} <= set(columns):
        rows = _board_rows(path, rows, board, framework)
    elif board or framework:
        raise ConfigError(
            f"{path} has no board and framework columns (it has {columns}); leave --board and --framework out"
        )
    rows = rows[:limit]
    if {"model", "device_ms"} <= set(columns):
        out = []
        for r in rows:
            mp = (path.parent / r["model"]).resolve()
            if not mp.is_file():
                raise ConfigError(f"{path}: model file {mp} does not exist")
            out.append(Pair(r["model"], _number(path, r, "device_ms"), mp))
        return _with_energy(path, rows, out)
    if {"cellstr", "lat_ms_median"} <= set(columns):
        from edgenas.spaces.nb201 import NB201Arch

        out = []
        for r in rows:
            try:
                arch = NB201Arch.parse(r["cellstr"])
            except ValueError as exc:
                raise ConfigError(f"{path}: {exc}") from exc
            out.append(Pair(r["cellstr"], _number(path, r, "lat_ms_median"), arch))
        return _with_energy(path, rows, out)
    raise ConfigError(
        f"{path} has columns {columns}; a calibration file needs either 'model,device_ms' (ONNX files and "
        "their latency on the device), 'cellstr,lat_ms_median' (NAS-Bench-201 cells) or "
        "'cellstr,board,framework,lat_ms_median' (cells timed on several boards)"
    )


def board_pairs(rows: list[dict[str, str]]) -> list[tuple[str, str]]:
    """The (board, framework) pairs a boards file holds, in file order."""
    return list(dict.fromkeys((r["board"], r["framework"]) for r in rows))


def _board_rows(path: Path, rows: list[dict[str, str]], board: str | None, framework: str | None) -> list:
    have = board_pairs(rows)
    listed = ", ".join(f"{b}/{f}" for b, f in have)
    if board is None and framework is None:
        if len(have) == 1:
            return rows
        raise ConfigError(
            f"{path} holds timings of {len(have)} board/framework pairs ({listed}); choose one with --board and "
            "--framework"
        )
    chosen = [
        r for r in rows if (board is None or r["board"] == board) and (framework is None or r["framework"] == framework)
    ]
    if not chosen:
        raise ConfigError(
            f"{path} has no rows for board {board or 'any'} and framework {framework or 'any'}; it holds {listed}"
        )
    if len(board_pairs(chosen)) > 1:
        raise ConfigError(f"--board {board} --framework {framework} still matches several pairs of {listed}; give both")
    return chosen


def _number(path: Path, row: dict[str, str], column: str) -> float:
    try:
        value = float(row[column])
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{path}: {column} '{row[column]}' is not a number") from exc
    if not value > 0:
        raise ConfigError(f"{path}: {column} must be positive, a row has {row[column]}")
    return value


def _with_energy(path: Path, rows: list[dict[str, str]], pairs: list[Pair]) -> list[Pair]:
    """`pairs` with their energies where the file has an energy_mj column with values: all or none
    of the chosen rows must have one, and each must be a positive number."""
    if not rows or "energy_mj" not in rows[0]:
        return pairs
    missing = [i for i, r in enumerate(rows) if not (r.get("energy_mj") or "").strip()]
    if len(missing) == len(rows):
        return pairs  # a board without energy data (the phone)
    if missing:
        raise ConfigError(
            f"{path}: {len(missing)} of {len(rows)} chosen rows have no energy_mj (the first: data row "
            f"{missing[0] + 1}); give every row its energy per inference, or leave the column empty throughout"
        )
    for p, r in zip(pairs, rows):
        try:
            p.energy_mj = float(r["energy_mj"])
        except ValueError as exc:
            raise ConfigError(f"{path}: energy_mj '{r['energy_mj']}' is not a number") from exc
        if not p.energy_mj > 0:
            raise ConfigError(
                f"{path}: energy_mj must be a positive number of mJ per inference, the row of {p.name} has "
                f"{r['energy_mj']}"
            )
    return pairs


@dataclass
class Fitted:
    """What `calibrate` fitted: the graph-only calibration (any host), the host-timing one (this
    host's CPU only; None when told not to time) and the latencies it was fitted on."""

    graph: Calibration
    host: Calibration | None
    host_ms: list[float] | None
    device_ms: list[float]
    features: list[dict[str, float]]  # per pair, from its ONNX graph
    energy: Calibration | None = None  # graph only, energy per inference (mJ), where the pairs had energies
    energy_mj: list[float] | None = None


def _energy_calibration(
    graph: Calibration, feats: list[dict[str, float]], energies: list[float], folds: int
) -> Calibration:
    """The graph-only energy predictor (mJ per inference) on the latency calibration's pairs and
    features (the same graph, folded or not, as the runtime runs it)."""
    weights = fit(None, feats, energies, GRAPH_FEATURES)
    return dataclasses.replace(
        graph,
        method=graph.method.replace("per-operator", "energy per inference (mJ) from per-operator"),
        weights=weights,
        cv=cross_validate(None, feats, energies, folds=folds, names=GRAPH_FEATURES)[0],
        baseline_cv={},
        device_ms_range=[min(energies), max(energies)],
        unit="mJ",
        contributions=contributions(weights, feats, GRAPH_FEATURES),
    )


def _choose_features(
    both: list[dict[str, dict[str, float]]], device: list[float], folds: int
) -> tuple[bool, list[dict[str, float]]]:
    """Whether the device runs the graph as exported (onnxruntime, PyTorch Mobile) or as a
    constant-folding converter leaves it (LiteRT removes NB201's x * 0 edges and all they fed),
    decided by which features predict these pairs better out of fold (MAPE); where folding
    removes nothing, as exported."""
    plain = [b["plain"] for b in both]
    folded = [b["folded"] for b in both]
    if plain == folded or len(device) < 2 * folds:
        return False, plain
    as_exported = cross_validate(None, plain, device, folds=folds, names=GRAPH_FEATURES)[0]["mape_pct"]
    as_folded = cross_validate(None, folded, device, folds=folds, names=GRAPH_FEATURES)[0]["mape_pct"]
    return (True, folded) if as_folded < as_exported else (False, plain)


def contributions(
    weights: Sequence[float], feats: Sequence[dict[str, float]], names: Sequence[str]
) -> dict[str, float]:
    """Which work carries the weight: per feature group (conv3x3, act, ...; "host" for host
    timing), its mean share of the fitted prediction over the pairs, largest first; groups
    below 0.1 % left out."""
    from edgenas.hardware.calibration import _group

    x = _matrix(None if HOST not in names else [f.get(HOST, 0.0) for f in feats], feats, names)
    parts = x * np.asarray(weights)[None, :]
    total = parts.sum(1)
    total[total <= 0] = 1.0
    shares: dict[str, float] = {}
    for j, name in enumerate(names):
        group = "host" if name == HOST else _group(name)
        shares[group] = shares.get(group, 0.0) + float((parts[:, j] / total).mean())
    return {g: round(v, 4) for g, v in sorted(shares.items(), key=lambda kv: -kv[1]) if v >= 0.001}


def calibrate(
    profile_name: str,
    pairs_csv: str | Path,
    limit: int | None = None,
    folds: int = 5,
    on_progress=None,
    host_timing: bool = True,
    board: str | None = None,
    framework: str | None = None,
    features: dict[str, dict[str, float]] | None = None,
) -> Fitted:
    """Fit and cross-validate the graph-only calibration on the pairs of `pairs_csv` (its rows of
    `board` / `framework` for a boards file); where the pairs have energies, the graph-only energy
    calibration too; with `host_timing`, also time every model on this host under the (host-timed)
    profile, through the latency cache, and fit the host-timing calibration and the one-factor
    baseline. `features` (pair name -> graph features) skips building graphs already read."""
    from edgenas.hardware.profiles import load_profile

    profile = load_profile(profile_name)
    if host_timing and (not profile.timing or profile.measured_on != "host"):
        raise ConfigError(
            f"calibrate needs a host-timed profile to time the host side; '{profile.name}' is "
            f"{profile.latency_label} (use cpu-arm-host, or calibrate from the graph alone with --graph-only)"
        )
    pairs = read_pairs(pairs_csv, limit, board, framework)
    measurer = None
    if host_timing:
        from edgenas.hardware.latency import default_measurer

        measurer = default_measurer()
    host: list[float] | None = [] if host_timing else None
    both: list[dict[str, dict[str, float]]] = []  # per pair: its features as exported and as folded
    for i, p in enumerate(pairs):
        known = features.get(p.name) if features is not None and measurer is None else None
        model = p.model() if known is None else b""
        if measurer is not None:
            host.append(measurer.measure(model, profile).median_ms)
        both.append(known or {"plain": graph_features(model), "folded": graph_features(model, fold_constants=True)})
        if on_progress:
            on_progress(i + 1, len(pairs))
    device = [p.device_ms for p in pairs]
    fold, feats = _choose_features(both, device, folds)
    chosen = f", board {board or '-'}, framework {framework or '-'}" if board or framework else ""
    source = f"{Path(pairs_csv).name} ({file_digest(pairs_csv)}{chosen})"
    covered = covered_features(feats)
    graph_cv, base = cross_validate(host, feats, device, folds=folds, names=GRAPH_FEATURES)
    weights = fit(None, feats, device, GRAPH_FEATURES)
    how = "constants folded as the runtime's converter does" if fold else "the graph as exported"
    graph = Calibration(
        profile=profile.name,
        method=f"nnls-relative, graph only ({how}): per-operator MACs/elements/count, convolutions by kernel kind",
        fold_constants=fold,
        features=list(GRAPH_FEATURES),
        weights=weights,
        host_cpu="",
        pairs=len(pairs),
        cv=graph_cv,
        baseline_cv=base,
        source=source,
        covered=covered,
        device_ms_range=[min(device), max(device)],
        contributions=contributions(weights, feats, GRAPH_FEATURES),
    )
    energies = [float(p.energy_mj) for p in pairs] if pairs and all(p.energy_mj is not None for p in pairs) else None
    energy = _energy_calibration(graph, feats, energies, folds) if energies is not None else None
    cal = None
    if host is not None:
        cv, _ = cross_validate(host, feats, device, folds=folds)
        cal = Calibration(
            profile=profile.name,
            method="nnls-relative: host_ms + per-operator MACs/elements/count, convolutions by kernel kind",
            features=list(FEATURES),
            weights=fit(host, feats, device),
            host_cpu=host_cpu(),
            pairs=len(pairs),
            cv=cv,
            baseline_cv=base,
            source=source,
            covered=covered,
            baseline_scale=fit_scale(host, device),
            device_ms_range=[min(device), max(device)],
        )
    return Fitted(graph, cal, host, device, feats, energy, energies)


def write_calibrated_profile(
    base_profile_path: str,
    fitted: Fitted,
    out_dir: Path,
    name: str | None = None,
    target: str | None = None,
    description: str | None = None,
) -> list[Path]:
    """Write profile `name` (default `<profile>-calibrated`) with its calibration files next to it:
    `NAME.calibration.json` (graph only, any host) and, if fitted, `NAME.host-calibration.json`
    (used on a host with this host's CPU). Returns the paths written, the profile first."""
    import tomllib

    base = tomllib.loads(Path(base_profile_path).read_text(encoding="utf-8"))
    name = name or f"{fitted.graph.profile}-calibrated"
    out_dir.mkdir(parents=True, exist_ok=True)
    cal_path = out_dir / f"{name}.calibration.json"
    fitted.graph.save(cal_path)
    written = [cal_path]
    cv = fitted.graph.cv
    quality = f"graph only, cross-validated Spearman {cv['spearman']:.3f}, MAPE {cv['mape_pct']:.1f} %"
    base.update(name=name, measured_on="calibrated", calibration=cal_path.name)
    for key, cal in (("host_calibration", fitted.host), ("energy_calibration", fitted.energy)):
        base.pop(key, None)
        if cal is not None:  # NAME.host-calibration.json, NAME.energy-calibration.json
            path = out_dir / f"{name}.{key.replace('_', '-')}.json"
            cal.save(path)
            written.append(path)
            base[key] = path.name
    if fitted.host is not None:
        quality += f"; with host timing on {fitted.host.host_cpu}: MAPE {fitted.host.cv['mape_pct']:.1f} %"
    if fitted.energy is not None:
        ecv = fitted.energy.cv
        quality += f"; energy per inference: Spearman {ecv['spearman']:.3f}, MAPE {ecv['mape_pct']:.1f} %"
    if target:
        base["target"] = target
    base["description"] = f"{description or base.get('description', '')}; predicted by edgenas calibrate ({quality})"
    from edgenas.settings.schema import to_toml

    text = to_toml(
        base, f"Written by edgenas calibrate from {fitted.graph.source}: latencies are predicted, not measured."
    )
    prof_path = out_dir / f"{name}.toml"
    prof_path.write_text(text, encoding="utf-8")
    return [prof_path, *written]
