"""Calibrated device latency: predict a board's latency from this host's measurement and the
ONNX graph, for boards that are not attached.

`fit` learns, from pairs (ONNX model, latency measured on the device), a model of

    device_ms = sum_k w_k * x_k,    w_k >= 0 (non-negative least squares on relative error)

whose features x are the host measurement under the profile's settings and per-operator work
read from the ONNX graph alone (for each operator group: multiply-accumulates, output elements,
node count). Convolutions are split by what runs them at different cost per MAC on a CPU:
1x1 (a matrix product), 3x3 (Winograd / im2col), other kernel sizes, and grouped or depthwise.
Nothing in it is specific to one search space, so it applies to any network. The fit is
weighted by 1/device_ms so that it minimises relative, not absolute, error.
`cross_validate` reports Spearman rank correlation and mean absolute percentage error over k
folds; both are stored with the calibration.

A network with work in a feature group that no calibration pair had (say 5x5 convolutions when
every pair used 1x1 and 3x3) is outside what the fit saw: its prediction falls back to the
one-factor model (host x factor, fitted on the same pairs) and says so.
"""

from __future__ import annotations

import hashlib
import json
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edgenas.errors import ConfigError, MeasurementError

OP_GROUPS = {
    "Conv": "conv", "ConvTranspose": "conv", "Gemm": "gemm", "MatMul": "gemm",
    "Relu": "act", "Clip": "act", "Sigmoid": "act", "HardSigmoid": "act", "HardSwish": "act", "Tanh": "act",
    "Add": "eltwise", "Mul": "eltwise", "Sub": "eltwise", "Sum": "eltwise",
    "AveragePool": "pool", "MaxPool": "pool", "GlobalAveragePool": "gpool", "ReduceMean": "gpool",
    "BatchNormalization": "bn", "Concat": "concat",
}
GROUPS = ("conv1x1", "conv3x3", "convkxk", "dwconv", "gemm", "act", "eltwise", "pool", "gpool", "bn", "concat", "other")
FIELDS = ("macs", "elements", "count")


def _conv_group(weight_shape: list[int], group: int) -> str:
    """Which kind of convolution a Conv node is, from its weight shape (C_out, C_in/g, kH, kW)."""
    if group > 1:
        return "dwconv"
    kernel = weight_shape[2:]
    if all(k == 1 for k in kernel):
        return "conv1x1"
    if all(k == 3 for k in kernel):
        return "conv3x3"
    return "convkxk"


def graph_features(model: bytes) -> dict[str, float]:
    """Per-operator-group work of one forward pass at batch 1, from the ONNX graph alone.

    Also returns the totals over all convolutions as `conv_*`, the features of calibrations
    written before convolutions were split, so those files keep predicting as they did."""
    import onnx
    from onnx import shape_inference

    try:
        proto = shape_inference.infer_shapes(onnx.load_from_string(model))
    except Exception as exc:
        raise MeasurementError(f"cannot read shapes from the ONNX graph: {exc}") from exc
    shapes: dict[str, list[int]] = {}

    def dims(vi) -> list[int]:
        out = []
        for i, d in enumerate(vi.type.tensor_type.shape.dim):
            out.append(d.dim_value if d.dim_value > 0 else 1)  # symbolic batch -> 1
        return out

    for vi in list(proto.graph.input) + list(proto.graph.value_info) + list(proto.graph.output):
        shapes[vi.name] = dims(vi)
    for init in proto.graph.initializer:
        shapes[init.name] = list(init.dims)
    feats = {f"{g}_{k}": 0.0 for g in GROUPS + ("conv",) for k in FIELDS}
    for node in proto.graph.node:
        group = OP_GROUPS.get(node.op_type, "other")
        out = shapes.get(node.output[0], [])
        elements = float(np.prod(out)) if out else 0.0
        macs = 0.0
        if node.op_type == "Conv" and len(node.input) > 1 and node.input[1] in shapes:
            w = shapes[node.input[1]]  # C_out x C_in/group x kH x kW
            macs = elements * float(np.prod(w[1:]))
            groups = next((a.i for a in node.attribute if a.name == "group"), 1)
            kind = _conv_group(w, groups) if len(w) > 2 else "convkxk"
            feats[f"{kind}_macs"] += macs
            feats[f"{kind}_elements"] += elements
            feats[f"{kind}_count"] += 1.0
        elif node.op_type in ("Gemm", "MatMul") and len(node.input) > 1 and node.input[1] in shapes:
            w = shapes[node.input[1]]
            k = w[0] if node.op_type == "MatMul" else (w[1] if any(a.name == "transB" and a.i for a in node.attribute) else w[0])
            macs = elements * float(k)
        feats[f"{group}_macs"] += macs
        feats[f"{group}_elements"] += elements
        feats[f"{group}_count"] += 1.0
    return feats


FEATURES = ("host_ms",) + tuple(f"{g}_{k}" for g in GROUPS for k in FIELDS)


def _matrix(host_ms: Sequence[float], feats: Sequence[dict[str, float]], names: Sequence[str] = FEATURES) -> np.ndarray:
    rows = [[h] + [f.get(name, 0.0) for name in names[1:]] for h, f in zip(host_ms, feats)]
    return np.asarray(rows, dtype=np.float64)


def covered_features(feats: Sequence[dict[str, float]]) -> list[str]:
    """The feature groups some calibration pair has work in (a group is covered as a whole)."""
    groups = {name.rsplit("_", 1)[0] for f in feats for name, v in f.items() if v}
    return [name for name in FEATURES[1:] if name.rsplit("_", 1)[0] in groups]


def _nnls_relative(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Non-negative weights minimising sum(((x w) - y) / y)^2; columns scaled for conditioning."""
    from scipy.optimize import nnls

    scale = x.max(axis=0)
    scale[scale == 0] = 1.0
    xs = x / scale / y[:, None]
    w, _ = nnls(xs, np.ones_like(y))
    return w / scale, scale


@dataclass
class Calibration:
    profile: str
    method: str
    features: list[str]
    weights: list[float]
    host_cpu: str
    pairs: int
    cv: dict[str, float] = field(default_factory=dict)
    baseline_cv: dict[str, float] = field(default_factory=dict)
    source: str = ""
    covered: list[str] | None = None  # feature groups the pairs had work in (None: files of before)
    baseline_scale: float | None = None  # the one-factor model on the same pairs, for the fallback

    def uncovered(self, feats: dict[str, float]) -> list[str]:
        """Groups this network has work in that no calibration pair had."""
        if self.covered is None:
            return []
        covered = {name.rsplit("_", 1)[0] for name in self.covered}
        return sorted({name.rsplit("_", 1)[0] for name in self.features[1:]
                       if feats.get(name) and name.rsplit("_", 1)[0] not in covered})

    def predict_from(self, host_ms: float, feats: dict[str, float]) -> float:
        return self.predict_explained(host_ms, feats)[0]

    def predict_explained(self, host_ms: float, feats: dict[str, float]) -> tuple[float, str]:
        """The prediction and how it was made: the calibration, or the one-factor fallback."""
        missing = self.uncovered(feats)
        if missing and self.baseline_scale:
            return host_ms * self.baseline_scale, (
                f"host x {self.baseline_scale:.3f} (fallback: the calibration pairs had no {', '.join(missing)} work)")
        x = _matrix([host_ms], [feats], self.features)[0]
        return float(x @ np.asarray(self.weights)), "calibration"

    def predict(self, model: bytes, host_ms: float) -> float:
        return self.predict_model(model, host_ms)[0]

    def predict_model(self, model: bytes, host_ms: float) -> tuple[float, str]:
        if self.host_cpu != host_cpu():
            raise MeasurementError(
                f"the calibration of profile '{self.profile}' was fitted on a host with CPU '{self.host_cpu}', "
                f"this host has '{host_cpu()}'; host measurements do not transfer between CPUs: run "
                "edgenas calibrate on this host"
            )
        return self.predict_explained(host_ms, graph_features(model))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> "Calibration":
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            return cls(**data)
        except (OSError, ValueError, TypeError) as exc:
            raise ConfigError(f"cannot read the calibration file {path}: {exc}; run edgenas calibrate again") from exc


def host_cpu() -> str:
    from edgenas.measure.timing import machine_info

    return machine_info()["cpu"] or platform.machine()


def fit(host_ms: Sequence[float], feats: Sequence[dict[str, float]], device_ms: Sequence[float]) -> list[float]:
    x = _matrix(host_ms, feats)
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
    host_ms: Sequence[float], feats: Sequence[dict[str, float]], device_ms: Sequence[float], folds: int = 5, seed: int = 0
) -> tuple[dict[str, float], dict[str, float]]:
    """Out-of-fold metrics of the calibration model and of the one-factor baseline."""
    n = len(device_ms)
    if n < 2 * folds:
        raise ConfigError(f"{folds}-fold cross-validation needs at least {2 * folds} pairs, got {n}")
    order = np.random.default_rng(seed).permutation(n)
    pred = np.zeros(n)
    base = np.zeros(n)
    h = np.asarray(host_ms, dtype=np.float64)
    y = np.asarray(device_ms, dtype=np.float64)
    x = _matrix(host_ms, feats)
    for k in range(folds):
        test = order[k::folds]
        train = np.setdiff1d(order, test)
        w, _ = _nnls_relative(x[train], y[train])
        pred[test] = x[test] @ w
        base[test] = h[test] * fit_scale(h[train], y[train])
    return metrics(pred, y), metrics(base, y)


def file_digest(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


# -- pairs from files, and the whole calibration --------------------------------------------

@dataclass
class Pair:
    """One (model, device latency) pair; the model is built or read only when asked for."""

    name: str
    device_ms: float
    source: Any  # a Path to an ONNX file, or an NB201Arch to build

    def model(self) -> bytes:
        if isinstance(self.source, Path):
            try:
                return self.source.read_bytes()
            except OSError as exc:
                raise ConfigError(f"cannot read model {self.source}: {exc.strerror or exc}") from exc
        from edgenas.measure.export import export_onnx
        from edgenas.spaces.nb201 import NB201Net

        return export_onnx(NB201Net(self.source, 3, 100, prune=False).eval(), (3, 32, 32))


def read_pairs(path: str | Path, limit: int | None = None) -> list[Pair]:
    """Pairs from a CSV: either `model,device_ms` (ONNX paths, relative to the CSV) or an NB201
    file with `cellstr,lat_ms_median` (networks built as ../shared/data/README.md describes:
    C=16, N=5, 100 classes, input 1x3x32x32)."""
    import csv

    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            columns = reader.fieldnames or []
            rows = list(reader)[:limit]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ConfigError(f"cannot read the calibration file {path}: {exc}") from exc
    if {"model", "device_ms"} <= set(columns):
        out = []
        for r in rows:
            mp = (path.parent / r["model"]).resolve()
            if not mp.is_file():
                raise ConfigError(f"{path}: model file {mp} does not exist")
            try:
                out.append(Pair(r["model"], float(r["device_ms"]), mp))
            except ValueError as exc:
                raise ConfigError(f"{path}: device_ms '{r['device_ms']}' is not a number") from exc
        return out
    if {"cellstr", "lat_ms_median"} <= set(columns):
        from edgenas.spaces.nb201 import NB201Arch

        out = []
        for r in rows:
            try:
                out.append(Pair(r["cellstr"], float(r["lat_ms_median"]), NB201Arch.parse(r["cellstr"])))
            except ValueError as exc:
                raise ConfigError(f"{path}: {exc}") from exc
        return out
    raise ConfigError(
        f"{path} has columns {columns}; a calibration file needs either 'model,device_ms' (ONNX files and "
        "their latency on the device) or 'cellstr,lat_ms_median' (NAS-Bench-201 cells)"
    )


def calibrate(profile_name: str, pairs_csv: str | Path, limit: int | None = None, folds: int = 5,
              on_progress=None) -> tuple[Calibration, list[float], list[float]]:
    """Time every model of `pairs_csv` on this host under the profile (through the latency
    cache), fit, cross-validate. Returns the calibration and the host and device latencies."""
    from edgenas.measure.latency import default_measurer
    from edgenas.profiles import load_profile

    profile = load_profile(profile_name)
    if not profile.timing or profile.measured_on != "host":
        raise ConfigError(f"calibrate needs a host-timed profile to start from; '{profile.name}' is {profile.latency_label}")
    pairs = read_pairs(pairs_csv, limit)
    measurer = default_measurer()
    host, feats = [], []
    for i, p in enumerate(pairs):
        model = p.model()
        host.append(measurer.measure(model, profile).median_ms)
        feats.append(graph_features(model))
        if on_progress:
            on_progress(i + 1, len(pairs))
    device = [p.device_ms for p in pairs]
    cv, base = cross_validate(host, feats, device, folds=folds)
    cal = Calibration(
        profile=profile.name,
        method="nnls-relative: host_ms + per-operator MACs/elements/count, convolutions by kernel kind",
        features=list(FEATURES), weights=fit(host, feats, device), host_cpu=host_cpu(), pairs=len(pairs),
        cv=cv, baseline_cv=base, source=f"{Path(pairs_csv).name} ({file_digest(pairs_csv)})",
        covered=covered_features(feats), baseline_scale=fit_scale(host, device),
    )
    return cal, host, device


def write_calibrated_profile(base_profile_path: str, cal: Calibration, out_dir: Path) -> tuple[Path, Path]:
    """Store the calibration next to a new profile `<name>-calibrated.toml` that uses it."""
    import tomllib

    base = tomllib.loads(Path(base_profile_path).read_text(encoding="utf-8"))
    name = f"{cal.profile}-calibrated"
    cal_path = out_dir / f"{name}.calibration.json"
    cal.save(cal_path)
    base.update(
        name=name, measured_on="calibrated", calibration=cal_path.name,
        description=f"{base.get('description', '')}; latency predicted from this host by edgenas calibrate "
        f"(cross-validated Spearman {cal.cv['spearman']:.3f}, MAPE {cal.cv['mape_pct']:.1f} %)",
    )
    from edgenas.config import _toml_value

    lines = [f"# Written by edgenas calibrate from {cal.source}: latencies are predicted, not measured."]
    lines += [f"{k} = {_toml_value(v)}" for k, v in base.items()]
    prof_path = out_dir / f"{name}.toml"
    prof_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return prof_path, cal_path
