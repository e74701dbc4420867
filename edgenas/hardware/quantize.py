"""Static int8 quantization with onnxruntime: the one implementation that timing and export share.

QDQ format, int8 activations and per-channel int8 weights, calibrated on the batches given.
Timing calibrates on random inputs (latency depends only on the int8 graph); the deployable
bundle calibrates on real training images (accuracy depends on them).
"""

from __future__ import annotations

import os
import tempfile
from typing import Iterable

import numpy as np

from edgenas.errors import MeasurementError


def quantize_int8(model: bytes, calibration: Iterable[dict[str, np.ndarray]]) -> bytes:
    """The static QDQ int8 version of `model` (ONNX bytes), calibrated on `calibration`, a
    sequence of input feeds ({input name: float32 array}). Raises MeasurementError when
    onnxruntime cannot quantize the graph."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    feeds = list(calibration)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter(feeds)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.items, None)

    with tempfile.TemporaryDirectory() as d:
        src, pre, out = (os.path.join(d, n) for n in ("m.onnx", "p.onnx", "q.onnx"))
        with open(src, "wb") as fh:
            fh.write(model)
        try:
            quant_pre_process(src, pre, skip_symbolic_shape=True)
            quantize_static(
                pre,
                out,
                Reader(),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QInt8,
                weight_type=QuantType.QInt8,
            )
        except Exception as exc:
            raise MeasurementError(f"onnxruntime could not quantize the model to int8: {exc}") from exc
        with open(out, "rb") as fh:
            return fh.read()


def calibration_images(x_train, images: int, seed: int) -> np.ndarray:
    """`images` training images (a normalised N x C x H x W tensor) drawn without replacement
    with `seed`: what calibrates int8 activation ranges, in the search and in the bundle alike."""
    import torch

    idx = torch.randperm(len(x_train), generator=torch.Generator().manual_seed(seed))[:images]
    return x_train[idx].cpu().numpy()


def batched_feeds(x: np.ndarray, input_name: str, batch_size: int = 32) -> list[dict[str, np.ndarray]]:
    """`x` (N x ...) as input feeds of at most `batch_size` rows each."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    return [{input_name: x[i : i + batch_size]} for i in range(0, len(x), batch_size)]
