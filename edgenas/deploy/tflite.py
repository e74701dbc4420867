"""A fully int8 TFLite model for TFLite Micro, checked under LiteRT and measured under TFLite Micro.

The optional extra `pip install 'edgenas[tflite]'` brings the three Google packages this needs:
litert-torch (the converter: PyTorch -> TFLite, static int8 through the PT2E quantizer),
ai-edge-litert (the LiteRT interpreter that checks the converted model's accuracy on the test
images) and tflite-micro (the TFLite Micro interpreter, built for the host: it runs the model with
the microcontroller runtime's own reference kernels and reports the tensor arena it allocated).

Why litert-torch and not onnx2tf: onnx2tf pins exact versions of onnx, onnxruntime, numpy and
TensorFlow (onnx==1.19.1, onnxruntime==1.23.0, numpy==1.26.4, tensorflow==2.19.0 in 1.29.24), so
installing it would downgrade the packages edgenas itself runs on; litert-torch resolves against
the torch this project already needs and brings no TensorFlow. It converts the trained torch model
directly, so the ONNX file and the .tflite are two exports of one network, not one converted from
the other.

Quantization: weights int8 per output channel (symmetric), activations int8 per tensor,
calibrated on the same training images as the ONNX int8 model; input and output int8, as TFLite
Micro wants them. The input keeps the ONNX model's layout (N x C x H x W, batch 1) and its
normalisation: quantize a normalised image with the input's scale and zero point.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgenas.errors import EdgenasError

EXTRA = "pip install 'edgenas[tflite]'"
ARENA_START_BYTES = 16 * 1024  # the first tensor arena tried under TFLite Micro (doubled until it fits)
ARENA_MAX_BYTES = 256 * 1024 * 1024


class TfliteError(EdgenasError):
    """A TFLite bundle cannot be built: the extra is missing, or the converter or an interpreter
    cannot handle the model. The ONNX bundle written before it is complete."""


@contextlib.contextmanager
def _stderr_to(fh):
    """Point the process's stderr (fd 2, what native libraries write to) at the file `fh`."""
    sys.stderr.flush()
    saved = os.dup(2)
    os.dup2(fh.fileno(), 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


@contextlib.contextmanager
def _silenced_stderr():
    """stderr to /dev/null: the converter's native libraries log there on import (absl, oneDNN)
    whatever their log level says, and TFLite Micro reports every failed allocation."""
    with open(os.devnull, "wb") as null, _stderr_to(null):
        yield


def require() -> None:
    """Raise TfliteError naming the missing package when the TFLite extra is not installed."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("LITERT_TORCH_SHOW_PROGRESS", "n")
    os.environ.setdefault("LITERT_TORCH_SILENCE_TORCH_LOGS", "y")
    for module, package in (("litert_torch", "litert-torch"), ("ai_edge_litert", "ai-edge-litert")):
        if sys.modules.get(module) is not None:
            continue  # imported already
        try:
            with _silenced_stderr(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                __import__(module)
        except ImportError as exc:
            raise TfliteError(
                f"--tflite needs the optional TFLite extra ({package} is not installed: {exc}); "
                f"install it with {EXTRA}, or export without --tflite"
            ) from exc


def tflm_available() -> bool:
    try:
        from tflite_micro.python.tflite_micro import runtime  # noqa: F401
    except ImportError:
        return False
    return True


def convert_int8(model, calibration: np.ndarray) -> bytes:
    """The fully int8 .tflite of `model` (a torch module, evaluated on CPU), calibrated on
    `calibration` (normalised N x C x H x W float32 images, one at a time: the model has batch 1,
    as on a microcontroller). Raises TfliteError when the converter cannot handle the model."""
    require()
    import copy

    import litert_torch
    import torch
    from litert_torch.quantize.pt2e_quantizer import get_symmetric_quantization_config
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    net = copy.deepcopy(model).to("cpu").to(memory_format=torch.contiguous_format).eval()
    images = torch.from_numpy(np.ascontiguousarray(calibration, dtype=np.float32))
    sample = (images[:1],)
    try:
        quantizer = _quantizer().set_global(get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False))
        graph = prepare_pt2e(torch.export.export(net, sample).module(), quantizer)
        with torch.no_grad():
            for i in range(len(images)):
                graph(images[i : i + 1])
        graph = convert_pt2e(graph, fold_quantize=False)
        _quantize_float_edges(graph)
        graph.training = False  # exported from the eval-mode network: batch norm is already folded for inference
        converted = litert_torch.convert(graph, sample, quant_config=QuantConfig(pt2e_quantizer=quantizer))
        return bytes(converted.model_content())
    except Exception as exc:  # the converter raises many kinds; every one means "cannot convert"
        raise TfliteError(
            f"the LiteRT converter cannot convert this model to int8 TFLite: {type(exc).__name__}: {exc}"
        ) from exc


def _quantizer():
    """litert-torch's PT2E quantizer, plus int8 for standalone ReLU / ReLU6 / max pooling.

    The stock quantizer annotates a ReLU only fused behind a convolution or an addition, so a
    network that starts with one (the pre-activation cells: ReLU, conv, BN) got a float input and
    a float RELU in front of the QUANTIZE. These ops only pass values through (or clip them), so
    their output shares the input's scale: the same rule TFLite's own int8 kernels follow."""
    import torch
    from litert_torch.quantize import pt2e_quantizer_utils as utils
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation, SharedQuantizationSpec

    passthrough = {
        torch.ops.aten.relu.default,
        torch.ops.aten.relu_.default,
        torch.ops.aten.hardtanh.default,
        torch.ops.aten.hardtanh_.default,
        torch.ops.aten.max_pool2d.default,
    }

    class Quantizer(PT2EQuantizer):
        def annotate(self, model):
            model = super().annotate(model)
            for node in model.graph.nodes:
                if node.op != "call_function" or node.target not in passthrough:
                    continue
                done = node.meta.get("quantization_annotation")
                if done is not None and done._annotated:
                    continue
                source = node.args[0]
                node.meta["quantization_annotation"] = QuantizationAnnotation(
                    input_qspec_map={source: utils.get_input_act_qspec(self.global_config)},
                    output_qspec=SharedQuantizationSpec((source, node)),
                    _annotated=True,
                )
            return model

    return Quantizer()


def _quantize_float_edges(graph) -> int:
    """Route every float use of a quantized tensor through its int8 value.

    The PT2E quantizer leaves one kind of edge unquantized: when a residual addition's output feeds
    both the next block (through its quantize node) and the next residual addition directly, that
    second addition reads the float tensor, and the converter then runs both additions in float
    behind DEQUANTIZE / QUANTIZE pairs (measured on MobileNetV2 stages of three blocks). Reading
    the quantized value instead is what a fully int8 model computes anyway. Returns the number of
    edges rewired."""
    import torch

    qop = torch.ops.quantized_decomposed.quantize_per_tensor.default
    dqop = torch.ops.quantized_decomposed.dequantize_per_tensor.default
    g, rewired = graph.graph, 0
    for node in list(g.nodes):
        quantized = [u for u in node.users if u.op == "call_function" and u.target == qop]
        if len(quantized) != 1:
            continue
        q = quantized[0]
        for user in [u for u in node.users if u is not q and u.op == "call_function"]:
            with g.inserting_after(q):
                dq = g.call_function(dqop, args=(q, *q.args[1:]))
            user.replace_input_with(node, dq)
            rewired += 1
    if rewired:
        g.lint()
        graph.recompile()
    return rewired


@dataclass(frozen=True)
class Quantization:
    scale: float
    zero_point: int

    def quantize(self, x: np.ndarray) -> np.ndarray:
        return np.clip(np.round(x / self.scale) + self.zero_point, -128, 127).astype(np.int8)

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        return (q.astype(np.float32) - self.zero_point) * self.scale


def _io(details: dict) -> Quantization:
    if np.dtype(details["dtype"]) != np.int8:
        raise TfliteError(f"the converted model's {details.get('name', 'tensor')} is {details['dtype']}, not int8")
    params = details["quantization_parameters"]  # LiteRT and TFLite Micro both give this form
    return Quantization(float(params["scales"][0]), int(params["zero_points"][0]))


def litert_logits(tflite: bytes, x: np.ndarray) -> np.ndarray:
    """Dequantized logits of the int8 model for normalised images `x` (N x C x H x W), one image
    per invoke, under the LiteRT interpreter (the builtin kernels, no delegate)."""
    require()
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    try:
        it = Interpreter(
            model_content=tflite, experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        )
        it.allocate_tensors()
    except Exception as exc:
        raise TfliteError(f"the LiteRT interpreter cannot load the converted model: {exc}") from exc
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    qin, qout = _io(inp), _io(out)
    x = np.asarray(x, dtype=np.float32)
    logits = []
    for i in range(len(x)):
        it.set_tensor(inp["index"], qin.quantize(x[i : i + 1]))
        it.invoke()
        logits.append(qout.dequantize(it.get_tensor(out["index"])))
    return np.concatenate(logits)


def describe(tflite: bytes) -> dict[str, Any]:
    """The model's builtin operators in execution order (`ops`), those that compute in float
    (`float_ops`: empty for a fully int8 model; the converter leaves float what the PT2E quantizer
    has no int8 pattern for, e.g. a hard-sigmoid) and the int8 quantization of its input and
    output (`input`, `output`: scale and zero point)."""
    require()
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    it = Interpreter(
        model_content=tflite, experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    )
    tensors = {t["index"]: t for t in it.get_tensor_details()}
    ops = it._get_ops_details()
    float_ops = [
        d["op_name"] for d in ops if any(i >= 0 and np.dtype(tensors[i]["dtype"]) == np.float32 for i in d["outputs"])
    ]
    io = {}
    for key, details in (("input", it.get_input_details()[0]), ("output", it.get_output_details()[0])):
        q = _io(details)
        io[key] = {
            "dtype": "int8",
            "shape": [int(v) for v in details["shape"]],
            "scale": q.scale,
            "zero_point": q.zero_point,
        }
    return {"ops": [d["op_name"] for d in ops], "float_ops": float_ops, **io}


def _allocations(interpreter) -> str:
    """What TFLite Micro's RecordingMicroAllocator prints (to the C stderr) about its arena."""
    with tempfile.TemporaryFile() as fh:
        with _stderr_to(fh):
            interpreter.print_allocations()
        fh.seek(0)
        return fh.read().decode("utf-8", "replace")


def _arena_line(text: str, what: str) -> int | None:
    for line in text.splitlines():
        if f"Arena allocation {what}" in line:
            return int(line.split()[-2])
    return None


def tflm_run(tflite: bytes, x: np.ndarray, timeout_s: float = 600.0) -> dict[str, Any]:
    """Run the model under TFLite Micro on normalised images `x` and report its tensor arena:
    `arena_bytes` (the smallest arena, to 1 KiB, in which the interpreter allocates the model;
    what a firmware must reserve), `arena_head_bytes` (the planned activation buffers: what
    `measure.memory` estimates), `arena_tail_bytes` (TFLite Micro's persistent bookkeeping),
    `logits` (dequantized).

    Every interpreter lives in a child process of its own: TFLite Micro's host build can crash
    instead of failing cleanly when an arena is too small (an unsigned underflow in its tail
    allocator, seen on MobileNetV2), and a crash must not take the export with it. Raises
    TfliteError when TFLite Micro cannot run the model in any arena up to ARENA_MAX_BYTES."""
    import json
    import subprocess

    with tempfile.TemporaryDirectory(prefix="edgenas-tflm-") as d:
        work = Path(d)
        (work / "model.tflite").write_bytes(tflite)
        np.save(work / "x.npy", np.ascontiguousarray(x, dtype=np.float32))

        def child(*args: str) -> subprocess.CompletedProcess:
            try:
                return subprocess.run(
                    [sys.executable, "-m", "edgenas.deploy.tflite", *args, str(work)],
                    capture_output=True,
                    text=True,
                    timeout=timeout_s,
                )
            except subprocess.TimeoutExpired as exc:
                raise TfliteError(f"TFLite Micro did not finish within {timeout_s:.0f} s") from exc

        def fits(arena: int) -> bool:
            return child("probe", str(arena)).returncode == 0

        size = ARENA_START_BYTES
        while not fits(size):
            if size >= ARENA_MAX_BYTES:
                raise TfliteError(f"TFLite Micro cannot allocate the model in {size:,} bytes of tensor arena")
            size *= 2
        lo, hi = size // 2, size  # the smallest arena that works lies in (lo, hi]
        while hi - lo > 1024:
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if fits(mid) else (mid, hi)
        proc = child("run", str(hi))
        result = work / "result.json"
        if proc.returncode != 0 or not result.exists():
            how = f"signal {-proc.returncode}" if proc.returncode < 0 else f"exit code {proc.returncode}"
            tail = (proc.stderr or "").strip().splitlines()[-1:] or [""]
            raise TfliteError(f"TFLite Micro crashed running the model ({how}) {tail[0]}".strip())
        out = json.loads(result.read_text())
        if "error" in out:
            raise TfliteError(out["error"])
        out["arena_bytes"] = hi
        out["logits"] = np.load(work / "logits.npy")
        return out


def _worker(mode: str, arena: int, work: Path) -> int:
    """The child process of `tflm_run`. `probe`: exit 0 when TFLite Micro allocates model.tflite
    in `arena` bytes, 3 when it cannot. `run`: run it on x.npy, write logits.npy and result.json
    (the arena's head and tail as TFLite Micro's RecordingMicroAllocator reports them)."""
    import json

    from tflite_micro.python.tflite_micro import runtime

    tflite = (work / "model.tflite").read_bytes()
    try:
        with _silenced_stderr():  # TFLite Micro reports each failed allocation on stderr
            it = runtime.Interpreter.from_bytes(tflite, arena_size=arena)
    except RuntimeError as exc:
        if mode == "probe":
            return 3
        (work / "result.json").write_text(json.dumps({"error": f"TFLite Micro cannot allocate the model: {exc}"}))
        return 0
    if mode == "probe":
        return 0
    x = np.load(work / "x.npy")
    try:
        qin, qout = _io(it.get_input_details(0)), _io(it.get_output_details(0))
        logits = []
        for i in range(len(x)):
            it.set_input(qin.quantize(x[i : i + 1]), 0)
            it.invoke()
            logits.append(qout.dequantize(it.get_output(0)))
    except (RuntimeError, TfliteError) as exc:
        (work / "result.json").write_text(json.dumps({"error": f"TFLite Micro cannot run the model: {exc}"}))
        return 0
    text = _allocations(it)
    np.save(work / "logits.npy", np.concatenate(logits) if logits else np.zeros((0, 0), np.float32))
    (work / "result.json").write_text(
        json.dumps({"arena_head_bytes": _arena_line(text, "head"), "arena_tail_bytes": _arena_line(text, "tail")})
    )
    return 0


def c_header(tflite: bytes, name: str, arena_bytes: int | None) -> str:
    """A C header holding the model as a 16-byte-aligned array (`name`, `name_len`) and, when
    known, the tensor arena TFLite Micro needs (`NAME_ARENA_BYTES`), for firmware that cannot read
    files."""
    guard = name.upper() + "_H_"
    rows = [", ".join(f"0x{b:02x}" for b in tflite[i : i + 12]) for i in range(0, len(tflite), 12)]
    lines = [
        "// Generated by edgenas export --tflite: a fully int8 TFLite model for TFLite Micro.",
        f"#ifndef {guard}",
        f"#define {guard}",
        "",
        "#ifndef __cplusplus",
        "#include <stdalign.h>",
        "#endif",
        "",
    ]
    if arena_bytes is not None:
        lines += [
            "// The tensor arena TFLite Micro (host build) needed to allocate this model; add your",
            "// port's own margin if its kernels keep more scratch memory.",
            f"#define {name.upper()}_ARENA_BYTES {arena_bytes}",
            "",
        ]
    lines += [
        f"alignas(16) const unsigned char {name}[] = {{",
        *(f"  {r}," for r in rows),
        "};",
        f"const unsigned int {name}_len = {len(tflite)};",
        "",
        f"#endif  // {guard}",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(_worker(sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])))
