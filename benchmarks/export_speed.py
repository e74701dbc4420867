"""Per-child ONNX export time: TorchScript exporter (what edgenas uses) vs the dynamo exporter.

Both export the same 20 children sampled from the default layer-wise space, in one process,
after one warm-up export each. Prints the median seconds per export and the ratio.
Needs onnxscript for the dynamo side (`pip install onnxscript`); without it, only the
TorchScript side is timed.

    python benchmarks/export_speed.py
"""

from __future__ import annotations

import io
import statistics
import time
import warnings

import torch

from edgenas.controllers import History, RandomController
from edgenas.hardware.onnx import export_onnx
from edgenas.spaces import create

SHAPE = (1, 8, 8)


def dynamo_export(model: torch.nn.Module) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model.eval(),
            (torch.zeros(1, *SHAPE),),
            buf,
            dynamo=True,
            verbose=False,
            input_names=["input"],
            output_names=["logits"],
        )
    return buf.getvalue()


def timed(fn, models) -> list[float]:
    fn(models[0])  # warm-up
    out = []
    for m in models:
        t0 = time.perf_counter()
        fn(m)
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    space = create("layerwise", input_shape=SHAPE, num_classes=10)
    models = [space.build(space.decode(a)) for a in RandomController(space, seed=0).propose(20, History())]
    ts = timed(lambda m: export_onnx(m, SHAPE), models)
    print(f"torchscript exporter: median {statistics.median(ts):.4f} s per child ({len(ts)} children)")
    try:
        import onnxscript  # noqa: F401
    except ImportError:
        print("dynamo exporter: skipped (onnxscript is not installed)")
        return
    import logging

    logging.disable(logging.WARNING)
    td = timed(dynamo_export, models)
    print(f"dynamo exporter:      median {statistics.median(td):.4f} s per child")
    print(f"ratio dynamo / torchscript: {statistics.median(td) / statistics.median(ts):.1f}x")


if __name__ == "__main__":
    main()
