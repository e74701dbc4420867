"""Microcontroller memory from the ONNX graph alone: peak activation RAM and flash.

Peak RAM (the tensor arena a runtime such as TFLite Micro must allocate) is the largest sum of
live tensors over an execution order. A tensor is live from the step of the node that writes it
to the step of the last node that reads it, both included; a graph input is live from the start
to its last reader, a graph output to the end. While a node runs, its inputs and its outputs are
live at once. Weights (initializers, Constant nodes) live in flash, not in the arena.
Assumptions, stated: a ReLU / ReLU6 (Clip) whose input comes only from a convolution, matrix
product or addition is fused into it (as TFLite converters fuse them), BatchNormalization is
folded (the exporter already folds it in eval mode); otherwise no tensor shares memory with
another (no in-place kernels, Reshape and Flatten copy); the arena holds nothing else (the
runtime's own bookkeeping is the profile's RAM headroom), tensors are packed without alignment
padding. Element sizes follow the precision:
int8 = 1 byte for every float tensor (full-integer quantization, int8 input and output), fp32 = 4;
non-float tensors keep their own size.

Two orders are reported: the graph's own node order (what onnxruntime and a converted TFLite model
run) and the best order found (`best_order`): the exact minimum over all topological orders where
the number of states stays small (dynamic programming over the sets of executed nodes), else a
greedy order; the smaller of that and the graph order. For branchy networks the order changes the
peak (MCUNet's observation).

Flash is the model's weights at the precision plus, for int8, the per-output-channel data a
TFLite int8 convolution or fully connected layer carries (int32 bias; float32 scale and int64
zero point for the weights and for the bias: 28 bytes per output channel), plus
FLASH_BYTES_PER_OP for each operator, counting the converter's own (its flatbuffer entry, its
output tensor's descriptor, name and quantization parameters; fitted to real .tflite files).

The live-set peak is a lower bound on the arena any planner needs; TFLite Micro's greedy planner
(largest buffer first, each at the lowest free offset) can leave gaps on branchy graphs. Measured
(benchmarks/tflite_memory.py, tests/test_tflite.py): equal to TFLite Micro's planned activations
on 16 of 20 networks, at most 6 % below on the rest; 10 % below on the STM32F746 digits winner
(a concatenation with skip inputs: 17,792 vs 19,840 bytes, where the live-set peak of the
.tflite's own operator order is 17,792 too).

The converter's own copies are counted, each measured: an image input with more than one
channel is transposed to NHWC first (a copy), a feature-map output back to NCHW (a copy); an
input of a concatenation that other nodes read too is requantized to the concatenation's shared
int8 scale right after it is written (a QUANTIZE copy); a convolution or pooling whose padding
is neither TFLite's 'VALID' nor 'SAME' (PyTorch's symmetric padding at stride 2 on an even size)
gets its own PAD operator writing a padded copy of its input; a mean over the spatial axes
written as a reduction (`x.mean((2, 3))`) is preceded by a transpose back to NCHW (a copy);
global pooling is not. BatchNormalization parameters are counted as folded into the preceding
convolution (0 bytes), as every converter does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgenas.errors import MeasurementError

# Fitted (scipy nnls: file bytes - weight bytes ~ channels, operators) to the .tflite files
# litert-torch 0.10 writes for 35 networks (the cifar_quality references and 8 random networks of
# each of the layerwise, mobile, cell-small and blocks spaces at 32x32x3): the estimate is within
# 0.97-1.14 of the file on benchmarks/tflite_memory.py's networks (results/tflite_memory.txt).
FLASH_BYTES_PER_OP = 680  # operator entry + its output tensor's descriptor, name and quantization
INT8_BYTES_PER_OUTPUT_CHANNEL = 28  # int32 bias + (float32 scale + int64 zero point) for weight and bias
WEIGHTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
FOLDED_OPS = ("BatchNormalization",)
EXACT_STATE_LIMIT = 2_000  # sets of executed nodes the exact order search may visit
FUSED_ACTIVATIONS = ("Relu", "Clip")  # fused into a producer of FUSES_INTO that only they read
FUSES_INTO = ("Conv", "ConvTranspose", "Gemm", "MatMul", "Add")


@dataclass(frozen=True)
class MemoryEstimate:
    peak_ram_bytes: int  # in the graph's own node order
    best_peak_ram_bytes: int  # in the best order found (<= peak_ram_bytes)
    best_order_exact: bool  # was the best order proven optimal (exact search finished)?
    flash_bytes: int
    precision: str
    peak_node: str  # the node running when the graph-order peak is reached

    def to_json(self) -> dict:
        return dict(self.__dict__)


@dataclass
class _Graph:
    nodes: list[str]  # node names, graph order
    outputs: list[list[str]]  # tensor names written by each node
    inputs: list[list[str]]  # activation tensors read by each node (no weights)
    size: dict[str, int]  # activation tensor -> bytes
    graph_inputs: list[str]
    graph_outputs: set[str]


def _elem_bytes(elem_type: int, precision: str) -> int:
    from onnx import TensorProto, helper

    if elem_type in (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.BFLOAT16):
        return 1 if precision == "int8" else 4
    try:
        return int(np.dtype(helper.tensor_dtype_to_np_dtype(elem_type)).itemsize)
    except Exception:
        return 4


def _load(model: bytes):
    import onnx
    from onnx import shape_inference

    try:
        return shape_inference.infer_shapes(onnx.load_from_string(model))
    except Exception as exc:
        raise MeasurementError(f"cannot read shapes from the ONNX graph: {exc}") from exc


def _graph(proto, precision: str, batch: int = 1) -> _Graph:
    g = proto.graph
    weights = _weights(g)
    size: dict[str, int] = {}
    shape: dict[str, list[int]] = {}
    elem: dict[str, int] = {}
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        tt = vi.type.tensor_type
        if vi.name in weights or not vi.type.HasField("tensor_type"):
            continue
        dims = [d.dim_value if d.dim_value > 0 else batch for d in tt.shape.dim]
        shape[vi.name], elem[vi.name] = dims, _elem_bytes(tt.elem_type, precision)
        size[vi.name] = int(np.prod(dims, dtype=np.int64)) * elem[vi.name]
    readers: dict[str, int] = {}
    for node in g.node:
        for t in node.input:
            readers[t] = readers.get(t, 0) + 1
    producer_op = {t: node.op_type for node in g.node for t in node.output}
    outputs_of_graph = {vi.name for vi in g.output}
    renamed: dict[str, str] = {}  # an activation's output -> the fused producer's output
    nodes, outs, ins = [], [], []

    def copy_node(node_name: str, source: str, copy: str, nbytes: int) -> str:
        """A converter-added operator that reads `source` and writes `copy` (`nbytes`)."""
        size[copy] = nbytes
        nodes.append(node_name)
        outs.append([copy])
        ins.append([source])
        return copy

    requantize: list[tuple[str, str]] = []  # (a concatenation's input, its requantized copy)
    graph_inputs = [vi.name for vi in g.input if vi.name not in weights]
    for t in graph_inputs:  # the converter's NCHW -> NHWC copy of an image input with channels
        dims = shape.get(t, [])
        if len(dims) == 4 and dims[1] > 1:
            renamed[t] = copy_node(f"{t}/Transpose", t, f"{t}/nhwc", size[t])
    for i, node in enumerate(g.node):
        if node.output and node.output[0] in weights:
            continue  # a constant (or computed from constants only): folded, lives in flash
        src = node.input[0] if node.input else ""
        if (
            node.op_type in FUSED_ACTIVATIONS
            and producer_op.get(src) in FUSES_INTO
            and readers.get(src) == 1
            and src not in outputs_of_graph
        ):
            renamed[node.output[0]] = renamed.get(src, src)
            size[renamed[node.output[0]]] = max(size.get(src, 0), size.get(node.output[0], 0))
            continue
        for t in list(node.input) + list(node.output):
            if t and t not in weights and t not in size:
                raise MeasurementError(f"the ONNX graph has no shape for tensor '{t}'; export with fixed input shapes")
        name = node.name or f"{node.op_type}_{i}"
        reads = [renamed.get(t, t) for t in node.input if t and t not in weights]
        if _reduces_nchw_spatial(node, shape.get(src)):  # the converter's NHWC -> NCHW copy before it
            reads[0] = copy_node(f"{name}/Transpose", reads[0], f"{name}/nchw", size[src])
        if node.op_type == "Concat":
            # int8: the inputs of a concatenation share its scale. One that other nodes read too
            # keeps its own and is requantized (a QUANTIZE copy) right after it is written.
            for j, t in enumerate(node.input):
                if t and t not in weights and readers.get(t, 0) > 1 and reads[j] not in graph_inputs:
                    copy = f"{name}/requantized{j}"
                    size[copy] = size[reads[j]]
                    requantize.append((reads[j], copy))
                    reads[j] = copy
        padded = _explicit_pad(node, shape.get(src))
        if padded is not None:  # the converter's PAD: a padded copy of the input, then the convolution
            nbytes = int(np.prod(padded, dtype=np.int64)) * elem[src]
            reads[0] = copy_node(f"{name}/Pad", reads[0], f"{name}/padded", nbytes)
        nodes.append(name)
        outs.append([t for t in node.output if t])
        ins.append(reads)
    for source, copy in requantize:  # each QUANTIZE right after the node that writes its input
        at = next(i for i, written in enumerate(outs) if source in written) + 1
        nodes.insert(at, f"{copy}/Quantize")
        outs.insert(at, [copy])
        ins.insert(at, [source])
    final = set()
    for vi in g.output:  # the converter's NHWC -> NCHW copy of a feature-map output with channels
        t = renamed.get(vi.name, vi.name)
        dims = shape.get(vi.name, [])
        if len(dims) == 4 and dims[1] > 1:
            t = copy_node(f"{t}/Transpose", t, f"{t}/nchw", size[t])
        final.add(t)
    return _Graph(nodes, outs, ins, size, graph_inputs, final)


def _reduces_nchw_spatial(node, in_shape: list[int] | None) -> bool:
    """A mean over the spatial axes written as a reduction (`x.mean((2, 3))`, ONNX ReduceMean over
    axes 2 and 3), not as global pooling: litert-torch transposes the NHWC activation back to NCHW
    before it (a full copy, measured); `nn.AdaptiveAvgPool2d(1)` becomes a MEAN on NHWC without one."""
    if node.op_type != "ReduceMean" or not in_shape or len(in_shape) != 4:
        return False
    axes = next((list(a.ints) for a in node.attribute if a.name == "axes"), None)
    return axes is not None and {a % 4 for a in axes} >= {2, 3}


def _explicit_pad(node, in_shape: list[int] | None) -> list[int] | None:
    """The padded input shape when a TFLite converter must give the convolution (or pooling) `node`
    its own PAD operator, else None. TFLite convolutions pad only as 'VALID' (none) or 'SAME'
    (total = max((ceil(n / s) - 1) * s + (k - 1) * d + 1 - n, 0), the smaller half first); any
    other padding, e.g. PyTorch's symmetric 1 + 1 at stride 2 on an even size (SAME there is 0 + 1),
    becomes a PAD operator writing a padded copy of the input."""
    if node.op_type not in ("Conv", "MaxPool", "AveragePool") or not in_shape or len(in_shape) != 4:
        return None
    attrs = {a.name: a for a in node.attribute}
    pads = list(attrs["pads"].ints) if "pads" in attrs else [0, 0, 0, 0]
    if len(pads) != 4 or not any(pads):
        return None
    kernel = list(attrs["kernel_shape"].ints) if "kernel_shape" in attrs else None
    if kernel is None:
        return None
    strides = list(attrs["strides"].ints) if "strides" in attrs else [1, 1]
    dilations = list(attrs["dilations"].ints) if "dilations" in attrs else [1, 1]
    same = []
    for axis in range(2):
        n, k, st, d = in_shape[2 + axis], kernel[axis], strides[axis], dilations[axis]
        total = max((-(-n // st) - 1) * st + (k - 1) * d + 1 - n, 0)
        same.append((total // 2, total - total // 2))
    if (pads[0], pads[2]) == same[0] and (pads[1], pads[3]) == same[1]:
        return None
    return [in_shape[0], in_shape[1], in_shape[2] + pads[0] + pads[2], in_shape[3] + pads[1] + pads[3]]


def _weights(g) -> set[str]:
    """Tensors known without running the network: initializers, Constant outputs, and the outputs
    of nodes that read only such tensors (the exporter's Identity copies of shared weights)."""
    weights = {t.name for t in g.initializer}
    for node in g.node:
        if node.op_type == "Constant" or (node.input and all(t in weights for t in node.input if t)):
            weights.update(node.output)
    return weights


def _lifetimes(graph: _Graph, order: list[int]) -> dict[str, tuple[int, int]]:
    """Per activation tensor, the first and last step of `order` it is live at (both included)."""
    last_use: dict[str, int] = {}
    for step, i in enumerate(order):
        for t in graph.inputs[i]:
            last_use[t] = step
    end = len(order)
    born = {t: -1 for t in graph.graph_inputs}
    for step, i in enumerate(order):
        for t in graph.outputs[i]:
            born[t] = step
    for t in born:
        if t in graph.graph_outputs:
            last_use[t] = end
        last_use.setdefault(t, born[t])
    return {t: (max(b, 0), min(last_use[t], end - 1)) for t, b in born.items()}


def _peak(graph: _Graph, order: list[int]) -> tuple[int, int]:
    """Peak live bytes over `order` (indices into graph.nodes), and the step where it happens."""
    end = len(order)
    delta = [0] * (end + 2)
    for t, (start, stop) in _lifetimes(graph, order).items():
        delta[start] += graph.size[t]
        delta[stop + 1] -= graph.size[t]
    live, best, where = 0, 0, 0
    for step in range(end):
        live += delta[step]
        if live > best:
            best, where = live, step
    return best, where


def _greedy(graph: _Graph, preds: list[set[int]]) -> list[int]:
    """Run next the ready node that leaves the least memory live."""
    n = len(graph.nodes)
    done: set[int] = set()
    order: list[int] = []
    remaining = {t: len(c) for t, c in _readers(graph).items()}
    while len(order) < n:
        ready = [i for i in range(n) if i not in done and preds[i] <= done]

        def freed(i: int) -> int:
            return sum(graph.size[t] for t in set(graph.inputs[i]) if remaining.get(t) == 1)

        i = min(ready, key=lambda i: (sum(graph.size[t] for t in graph.outputs[i]) - freed(i), i))
        order.append(i)
        done.add(i)
        for t in set(graph.inputs[i]):
            remaining[t] -= 1
    return order


def _readers(graph: _Graph) -> dict[str, list[int]]:
    readers: dict[str, list[int]] = {}
    for i, ins in enumerate(graph.inputs):
        for t in set(ins):
            readers.setdefault(t, []).append(i)
    return readers


def best_order(graph: _Graph) -> tuple[list[int], int, bool]:
    """A topological order with the smallest peak found: exact (dynamic programming over the sets
    of executed nodes) when at most EXACT_STATE_LIMIT sets are reachable, else greedy."""
    n = len(graph.nodes)
    producer = {t: i for i, outs in enumerate(graph.outputs) for t in outs}
    preds = [{producer[t] for t in ins if t in producer} for ins in graph.inputs]
    readers = _readers(graph)
    greedy = _greedy(graph, preds)
    greedy_peak = _peak(graph, greedy)[0]

    def live_after(done: int) -> int:
        total = 0
        for t in graph.graph_inputs + [t for i in range(n) if done >> i & 1 for t in graph.outputs[i]]:
            if t in graph.graph_outputs or any(not (done >> r & 1) for r in readers.get(t, [])):
                total += graph.size[t]
        return total

    pred_mask = [sum(1 << j for j in p) for p in preds]
    memo: dict[int, tuple[int, int]] = {}
    full = (1 << n) - 1
    # best(done) = min over ready v of max(live(done) + outputs(v), best(done | v)), over the
    # reachable sets of executed nodes (bit masks), computed from the full set down.
    stack = [0]
    seen = {0}
    while stack:
        s = stack.pop()
        if len(seen) > EXACT_STATE_LIMIT:
            return greedy, greedy_peak, False
        for v in range(n):
            if not (s >> v & 1) and (pred_mask[v] & ~s) == 0:
                t = s | 1 << v
                if t not in seen:
                    seen.add(t)
                    stack.append(t)
    live = {s: live_after(s) for s in seen}
    for s in sorted(seen, key=lambda s: -bin(s).count("1")):
        if s == full:
            memo[s] = (0, -1)
            continue
        best = None
        for v in range(n):
            if not (s >> v & 1) and (pred_mask[v] & ~s) == 0:
                during = live[s] + sum(graph.size[t] for t in graph.outputs[v])
                cand = max(during, memo[s | 1 << v][0])
                if best is None or cand < best[0]:
                    best = (cand, v)
        memo[s] = best
    order, s = [], 0
    while s != full:
        v = memo[s][1]
        order.append(v)
        s |= 1 << v
    exact_peak = _peak(graph, order)[0]
    if greedy_peak < exact_peak:  # cannot happen if the DP is right; keep the better one anyway
        return greedy, greedy_peak, False
    return order, exact_peak, True


def flash_bytes(proto, precision: str, ops: int | None = None) -> int:
    """Weights at `precision` (see the module's notes) + FLASH_BYTES_PER_OP x `ops` (default: every
    non-Constant node)."""
    g = proto.graph
    by_name = {t.name: t for t in g.initializer}
    for node in g.node:
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value" and a.HasField("t"):
                    by_name[node.output[0]] = a.t
    alias = {n.output[0]: n.input[0] for n in g.node if n.op_type == "Identity" and n.input and n.input[0] in by_name}
    role: dict[str, str] = {}
    out_channels: dict[str, int] = {}
    for node in g.node:
        node_inputs = [alias.get(t, t) for t in node.input]
        del node.input[:]
        node.input.extend(node_inputs)
        if node.op_type in WEIGHTED_OPS and len(node.input) > 1 and node.input[1] in by_name:
            role[node.input[1]] = "weight"
            w = list(by_name[node.input[1]].dims)
            if node.op_type == "Conv":
                out_channels[node.input[1]] = w[0]
            elif node.op_type == "Gemm":
                trans_b = any(a.name == "transB" and a.i for a in node.attribute)
                out_channels[node.input[1]] = w[0] if trans_b else w[-1]
            else:
                out_channels[node.input[1]] = w[-1]
            if len(node.input) > 2 and node.input[2] in by_name:
                role[node.input[2]] = "bias"
        elif node.op_type in FOLDED_OPS:
            for t in node.input[1:]:
                role.setdefault(t, "folded")
    total = 0
    for name, t in by_name.items():
        elems = int(np.prod(list(t.dims), dtype=np.int64)) if len(t.dims) else 1
        kind = role.get(name)
        if kind == "folded":
            continue
        if precision == "int8":
            if kind == "weight":
                total += elems + INT8_BYTES_PER_OUTPUT_CHANNEL * out_channels[name]
            elif kind == "bias":
                continue  # counted in the per-output-channel bytes
            else:
                total += elems * _elem_bytes(t.data_type, precision)
        else:
            total += elems * _elem_bytes(t.data_type, precision)
    if ops is None:
        weights = _weights(g)
        ops = sum(1 for n in g.node if not (n.output and n.output[0] in weights))
    return int(total + FLASH_BYTES_PER_OP * ops)


_ESTIMATES: dict[tuple[str, str], MemoryEstimate] = {}  # (graph structure hash, precision) -> estimate


def memory_estimate(model: bytes, precision: str = "int8") -> MemoryEstimate:
    """Peak activation RAM (graph order and best order found) and flash of `model` at batch 1.

    Cached by the graph's structure (weight values do not change either number), so the
    controller's feasibility check and the gate on the same architecture estimate it once."""
    from edgenas.hardware.latency import graph_hash

    key = (graph_hash(model), precision)
    if key not in _ESTIMATES:
        _ESTIMATES[key] = _estimate(model, precision)
    return _ESTIMATES[key]


def _estimate(model: bytes, precision: str) -> MemoryEstimate:
    proto = _load(model)
    graph = _graph(proto, precision)
    order = list(range(len(graph.nodes)))
    peak, where = _peak(graph, order)
    _, best, exact = best_order(graph)
    return MemoryEstimate(
        peak_ram_bytes=peak,
        best_peak_ram_bytes=min(best, peak),
        best_order_exact=exact,
        flash_bytes=flash_bytes(proto, precision, ops=len(graph.nodes)),
        precision=precision,
        peak_node=graph.nodes[where] if graph.nodes else "",
    )
