"""ONNX export of a trained (or untrained) child.

We use torch's TorchScript-based exporter (`dynamo=False`), knowingly: it is much faster per small
child than the dynamo exporter (`benchmarks/export_speed.py` measures both; the numbers are in the
CHANGELOG), which also needs onnxscript and forces opset >= 18. Children are plain
Conv/BN/ReLU/pool/linear graphs that the TorchScript exporter handles exactly; its deprecation
warning is silenced here.
"""

from __future__ import annotations

import io
import warnings

import onnx
import torch
import torch.nn as nn

OPSET = 17
INPUT_NAME = "input"
OUTPUT_NAME = "logits"


def export_onnx(model: nn.Module, input_shape: tuple[int, ...], metadata: dict[str, str] | None = None) -> bytes:
    """Serialise `model` (eval mode) with a dynamic batch axis; checked by onnx.checker."""
    model = model.eval()
    example = torch.zeros(1, *input_shape)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (example,),
            buf,
            dynamo=False,
            opset_version=OPSET,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            do_constant_folding=True,
        )
    proto = onnx.load_from_string(buf.getvalue())
    if metadata:
        for k, v in metadata.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = k, v
    onnx.checker.check_model(proto, full_check=True)
    return proto.SerializeToString()


def onnx_logits(session, x, batch_size: int = 256):
    """`session`'s outputs for `x` (a float32 N x C x H x W tensor or array), run in batches."""
    import numpy as np

    x = x.numpy() if hasattr(x, "numpy") else np.asarray(x, dtype=np.float32)
    return np.concatenate(
        [session.run(None, {INPUT_NAME: x[i : i + batch_size]})[0] for i in range(0, len(x), batch_size)]
    )
