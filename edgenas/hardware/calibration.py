"""The latency calibration model: predict a board's latency from the ONNX graph, and optionally
from this host's measurement too. `edgenas.calibrate` fits it; `edgenas.hardware.latency` applies it.

The model is

    device_ms = sum_k w_k * x_k,    w_k >= 0

whose features x are per-operator work read from the ONNX graph alone (for each operator group:
multiply-accumulates, output elements, node count) and, for a host-timing calibration, the host
measurement under the profile's settings. Convolutions are split by what runs them at different
cost per MAC on a CPU: 1x1 (a matrix product), 3x3 (Winograd / im2col), other kernel sizes, and
grouped or depthwise.

A graph-only calibration (no `host_ms` feature) predicts the same number on every machine; a
host-timing one applies only on a host with the CPU it was fitted on.

A network with work in a feature group that no calibration pair had (say depthwise convolutions
when every pair used 1x1 and 3x3) is outside what the fit saw, and every prediction for it says
so (`Calibration.uncovered`). A host-timing calibration then falls back to the one-factor model
(host x factor, fitted on the same pairs); a graph-only one prices the unseen group's work at the
weights of a group it saw (`PROXY`: depthwise and other kernels as 3x3 convolutions, matrix
products as 1x1 convolutions), a rough number that is labelled as such.
"""

from __future__ import annotations

import json
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from edgenas.errors import ConfigError, MeasurementError

OP_GROUPS = {
    "Conv": "conv",
    "ConvTranspose": "conv",
    "Gemm": "gemm",
    "MatMul": "gemm",
    "Relu": "act",
    "Clip": "act",
    "Sigmoid": "act",
    "HardSigmoid": "act",
    "HardSwish": "act",
    "Tanh": "act",
    "Add": "eltwise",
    "Mul": "eltwise",
    "Sub": "eltwise",
    "Sum": "eltwise",
    "AveragePool": "pool",
    "MaxPool": "pool",
    "GlobalAveragePool": "gpool",
    "ReduceMean": "gpool",
    "BatchNormalization": "bn",
    "Concat": "concat",
}
GROUPS = (
    "conv1x1", "conv3x3", "convkxk", "dwconv", "gemm", "act", "eltwise", "pool", "gpool", "bn", "concat", "other",
    "invoke",  # one per inference (invoke_count = 1): the runtime's fixed cost of a call
    # tensors read by more than one operator: each reader beyond the first (fanout_count) and the
    # elements it reads (fanout_elements); no MACs. A runtime that fuses an operator into the one
    # that produced its input (LiteRT/XNNPACK: an activation or addition into the convolution or
    # addition before it) cannot where another operator reads that input too, and pays for it
    "fanout",
)  # fmt: skip
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


def graph_features(model: bytes, fold_constants: bool = False) -> dict[str, float]:
    """Per-operator-group work of one forward pass at batch 1, from the ONNX graph alone.

    With `fold_constants`, the work a converter that folds constants leaves (LiteRT's does;
    onnxruntime and PyTorch Mobile run the graph as exported): nodes computed from constants
    only, multiplications by an all-zero constant (NB201's 'none' edge is x * 0) and everything
    whose result then no longer reaches the output are not counted (`live_nodes`).

    Tensors read by more than one operator count as `fanout_*` (each reader beyond the first, and
    the elements it reads), whatever the operators.

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
    feats["invoke_count"] = 1.0
    nodes = list(proto.graph.node)
    if fold_constants:
        live = live_nodes(proto)
        nodes = [n for i, n in enumerate(nodes) if i in live]
    constants = {i.name for i in proto.graph.initializer}
    constants |= {o for n in proto.graph.node if n.op_type == "Constant" for o in n.output}
    readers: dict[str, int] = {}
    for node in nodes:
        for name in set(node.input) - constants - {""}:
            readers[name] = readers.get(name, 0) + 1
    for name, k in readers.items():
        if k > 1:
            feats["fanout_count"] += k - 1.0
            feats["fanout_elements"] += (k - 1) * float(np.prod(shapes.get(name, [0])))
    for node in nodes:
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
            k = (
                w[0]
                if node.op_type == "MatMul"
                else (w[1] if any(a.name == "transB" and a.i for a in node.attribute) else w[0])
            )
            macs = elements * float(k)
        feats[f"{group}_macs"] += macs
        feats[f"{group}_elements"] += elements
        feats[f"{group}_count"] += 1.0
    return feats


# operators whose output is zeros when their (first) input is: zeros flow through them for free
_ZERO_IN_ZERO_OUT = {"Relu", "Identity", "AveragePool", "MaxPool", "GlobalAveragePool", "Flatten", "Reshape", "Clip"}


def live_nodes(proto) -> set[int]:  # type: ignore[no-untyped-def]
    """Indices of the nodes (topologically ordered, as ONNX stores them) that still run after a
    converter simplifies and folds constants, as LiteRT's does: a multiplication by an all-zero
    constant is zeros (NB201's 'none' edge, x * 0), and zeros cost nothing (y + 0 is y; what
    zeros flow through stays zeros); a result computed from constants only is folded away when
    nothing that depends on the input uses it (the whole network when its output no longer
    depends on the input), but computed at run time where live work consumes it (a converter
    does not store large folded tensors); and nothing runs that no live node needs."""
    from onnx import numpy_helper

    const = {i.name for i in proto.graph.initializer}
    zero = {i.name for i in proto.graph.initializer if not numpy_helper.to_array(i).any()}
    for node in proto.graph.node:
        ins = [i for i in node.input if i]
        outs = set(node.output)
        if node.op_type == "Constant":
            value = next((a.t for a in node.attribute if a.name == "value"), None)
            if value is not None and not numpy_helper.to_array(value).any():
                zero |= outs
        elif (
            (node.op_type == "Mul" and any(i in zero for i in ins))
            or (node.op_type in ("Add", "Sum") and ins and all(i in zero for i in ins))
            or (node.op_type in _ZERO_IN_ZERO_OUT and ins and ins[0] in zero)
        ):
            zero |= outs
        elif not all(i in const for i in ins):
            continue
        const |= outs
    needed = {o.name for o in proto.graph.output if o.name not in const}
    live: set[int] = set()
    for idx in range(len(proto.graph.node) - 1, -1, -1):
        node = proto.graph.node[idx]
        if node.op_type == "Constant" or not any(o in needed and o not in zero for o in node.output):
            continue
        live.add(idx)
        needed |= {i for i in node.input if i and i not in zero}
    return live


HOST = "host_ms"
GRAPH_FEATURES = tuple(f"{g}_{k}" for g in GROUPS for k in FIELDS)
FEATURES = (HOST,) + GRAPH_FEATURES
RANGE_MARGIN = 2.0  # predictions within [fastest / 2, slowest x 2] of the pairs count as inside the fit
# A group no calibration pair had is priced, by a graph-only calibration, as this group it saw.
PROXY = {"dwconv": "conv3x3", "convkxk": "conv3x3", "gemm": "conv1x1", "concat": "eltwise", "gpool": "pool"}


def _group(name: str) -> str:
    return name.rsplit("_", 1)[0]


def _matrix(
    host_ms: Sequence[float] | None, feats: Sequence[dict[str, float]], names: Sequence[str] = FEATURES
) -> np.ndarray:
    """One row per network, one column per feature name; `host_ms` may be None when no name is HOST."""
    hosts = host_ms if host_ms is not None else [0.0] * len(feats)
    rows = [[h if name == HOST else f.get(name, 0.0) for name in names] for h, f in zip(hosts, feats)]
    return np.asarray(rows, dtype=np.float64).reshape(len(feats), len(names))


def covered_features(feats: Sequence[dict[str, float]]) -> list[str]:
    """The feature groups some calibration pair has work in (a group is covered as a whole)."""
    groups = {_group(name) for f in feats for name, v in f.items() if v}
    return [name for name in GRAPH_FEATURES if _group(name) in groups]


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
    host_cpu: str  # the CPU the host timings came from ("" for a graph-only calibration: any host)
    pairs: int
    cv: dict[str, float] = field(default_factory=dict)
    baseline_cv: dict[str, float] = field(default_factory=dict)
    source: str = ""
    covered: list[str] | None = None  # feature groups the pairs had work in (None: files of before)
    baseline_scale: float | None = None  # the one-factor model on the same pairs, for the fallback
    device_ms_range: list[float] | None = None  # [fastest, slowest] device latency among the pairs
    # what it predicts: "ms" (latency) or "mJ" (energy per inference; device_ms_range is then in mJ)
    unit: str = "ms"
    contributions: dict[str, float] = field(default_factory=dict)  # per feature group: its mean share
    # of the fitted prediction over the pairs (which work carries the weight on this runtime)
    fold_constants: bool = False  # features of the graph as a constant-folding converter leaves it
    # (LiteRT): chosen by cross-validation when fitted

    @property
    def uses_host(self) -> bool:
        """Does a prediction need this host's measurement (and so this host's CPU)?"""
        return HOST in self.features

    def applies_here(self) -> bool:
        return not self.uses_host or self.host_cpu == host_cpu()

    def uncovered(self, feats: dict[str, float]) -> list[str]:
        """Groups this network has work in that no calibration pair had."""
        if self.covered is None:
            return []
        covered = {_group(name) for name in self.covered}
        used = [name for name in self.features if name in GRAPH_FEATURES]  # a file of before has no invoke_*
        return sorted({_group(name) for name in used if feats.get(name) and _group(name) not in covered})

    def out_of_range(self, predicted_ms: float) -> bool:
        """Is a prediction more than RANGE_MARGIN x beyond the latencies the pairs had? (A linear
        model's per-network overheads are not identified by networks of one size.)"""
        if not self.device_ms_range:
            return False
        lo, hi = self.device_ms_range
        return not lo / RANGE_MARGIN <= predicted_ms <= hi * RANGE_MARGIN

    def outside(self, feats: dict[str, float], predicted_ms: float) -> list[str]:
        """Why a prediction is outside the fit: unseen work groups, and "size" when out of range."""
        return self.uncovered(feats) + (["size"] if self.out_of_range(predicted_ms) else [])

    def predict_from(self, host_ms: float | None, feats: dict[str, float]) -> float:
        return self.predict_explained(host_ms, feats)[0]

    def _weights_for(self, missing: Sequence[str]) -> np.ndarray:
        """The weights, with each unseen group's taken from its proxy group (graph-only fallback)."""
        w = dict(zip(self.features, self.weights))
        for group in missing:
            proxy = PROXY.get(group)
            for kind in FIELDS:
                w[f"{group}_{kind}"] = w.get(f"{proxy}_{kind}", 0.0) if proxy else 0.0
        return np.asarray([w.get(name, 0.0) for name in self.features])

    def predict_explained(self, host_ms: float | None, feats: dict[str, float]) -> tuple[float, str]:
        """The prediction and how it was made: "calibration" for a network inside what the fit saw,
        else a sentence that starts with "outside the fit" and says what was done instead."""
        missing = self.uncovered(feats)
        seen = "the calibration pairs had no " + ", ".join(missing) + " work"
        if missing and self.uses_host and self.baseline_scale and host_ms is not None:
            return host_ms * self.baseline_scale, f"outside the fit ({seen}): host x {self.baseline_scale:.3f}"
        if self.uses_host and host_ms is None:
            raise MeasurementError(f"the calibration of profile '{self.profile}' needs a host measurement")
        if missing and not self.uses_host:
            x = _matrix([host_ms or 0.0], [feats], self.features)[0]
            priced = ", ".join(f"{g} as {PROXY[g]}" for g in missing if g in PROXY) or "at no cost"
            return float(x @ self._weights_for(missing)), f"outside the fit ({seen}): priced {priced}"
        x = _matrix([host_ms or 0.0], [feats], self.features)[0]
        value = float(x @ np.asarray(self.weights))
        if self.out_of_range(value):
            lo, hi = self.device_ms_range
            took = "took" if self.unit == "ms" else "used"
            return value, (
                f"outside the fit (the calibration networks {took} {lo:.3g} to {hi:.3g} {self.unit} on the device, "
                f"this one is predicted at {value:.3g} {self.unit}): extrapolated"
            )
        return value, "calibration"

    def predict(self, model: bytes, host_ms: float | None) -> float:
        return self.predict_model(model, host_ms)[0]

    def predict_model(self, model: bytes, host_ms: float | None) -> tuple[float, str]:
        self.check_host()
        return self.predict_explained(host_ms, graph_features(model, self.fold_constants))

    def check_host(self) -> None:
        """MeasurementError unless this calibration applies on this host."""
        if not self.applies_here():
            raise MeasurementError(
                f"the calibration of profile '{self.profile}' was fitted on a host with CPU '{self.host_cpu}', "
                f"this host has '{host_cpu()}'; host measurements do not transfer between CPUs: run "
                "edgenas calibrate on this host, or use a profile that predicts from the graph alone (cpu-arm)"
            )

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
    from edgenas.hardware.timing import machine_info

    return machine_info()["cpu"] or platform.machine()
