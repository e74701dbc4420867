"""Peak RAM and flash estimated from the ONNX graph (`edgenas.hardware.memory`) against TFLite Micro.

For each network: the ONNX graph's estimate (peak activation RAM in the graph's order and in the
best order found, flash at int8) next to what the real toolchain gives for the same trained-shape
network: the size of the fully int8 .tflite written by `edgenas export --tflite` (litert-torch,
calibrated on random images; sizes do not depend on the values) and TFLite Micro's own
RecordingMicroAllocator under the host build of its interpreter: the arena head (the planned
activation buffers, what the estimate models), the tail (its persistent bookkeeping) and the
smallest arena (to 1 KiB) in which it allocates. Ratios estimate / measured are printed per row.

Networks: the three hand-designed references of `benchmarks/cifar_quality.py` at 32x32x3
(ResNet-8, the MobileNetV2-style network, the VGG-style network), torchvision's MobileNetV2 at
width 0.35 and 96x96 (the README's worked example), and `--samples` random networks from each of
the layerwise, mobile, cell-small and blocks spaces (seeded).

Needs the TFLite extra: pip install 'edgenas[tflite]'

    python benchmarks/tflite_memory.py --samples 4
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))


def random_arch(space, rng: random.Random):
    actions: list[int] = []
    while (d := space.next_decision(actions)) is not None:
        actions.append(rng.choice([i for i, ok in enumerate(d.mask) if ok]))
    return space.decode(actions)


def networks(samples: int, seed: int):
    import torchvision
    from cifar_quality import references

    from edgenas.spaces import create

    shape, classes = (3, 32, 32), 10
    for name, (build, _) in references(shape, classes).items():
        yield name, build, shape
    # the README's worked example: torchvision's MobileNetV2, width 0.35, at 96x96
    yield (
        "torchvision MNv2-0.35 @96",
        lambda: torchvision.models.mobilenet_v2(width_mult=0.35, num_classes=10),
        (3, 96, 96),
    )
    rng = random.Random(seed)
    for space_name in ("layerwise", "mobile", "cell-small", "blocks"):
        space = create(space_name, input_shape=shape, num_classes=classes)
        for i in range(samples):
            arch = random_arch(space, rng)
            yield f"{space_name} sample {i}", (lambda s=space, a=arch: s.build(a)), shape


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=4, help="random networks per space")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from edgenas.deploy import tflite as tfl
    from edgenas.hardware.memory import memory_estimate
    from edgenas.hardware.onnx import export_onnx

    tfl.require()
    if not tfl.tflm_available():
        raise SystemExit("tflite-micro is not installed: pip install 'edgenas[tflite]'")
    torch.manual_seed(args.seed)
    header = (
        f"{'network':<26} {'params':>8} | {'est peak':>9} {'best':>9} {'TFLM head':>9} {'est/head':>8} | "
        f"{'TFLM tail':>9} {'arena':>8} | {'est flash':>9} {'.tflite':>8} {'est/file':>8}"
    )
    print(header)
    print("-" * len(header))
    ratios, flash_ratios = [], []
    for name, build, shape in networks(args.samples, args.seed):
        model = build().eval()
        params = sum(p.numel() for p in model.parameters())
        calib = np.random.default_rng(args.seed).standard_normal((16, *shape)).astype(np.float32)
        est = memory_estimate(export_onnx(model, shape), "int8")
        try:
            lite = tfl.convert_int8(model, calib)
            micro = tfl.tflm_run(lite, calib[:1])
        except tfl.TfliteError as exc:
            print(f"{name:<26} {params:>8,} | conversion or TFLite Micro failed: {exc}")
            continue
        head = micro["arena_head_bytes"]
        ratios.append(est.peak_ram_bytes / head)
        flash_ratios.append(est.flash_bytes / len(lite))
        print(
            f"{name:<26} {params:>8,} | {est.peak_ram_bytes:>9,} {est.best_peak_ram_bytes:>9,} {head:>9,} "
            f"{ratios[-1]:>8.3f} | {micro['arena_tail_bytes']:>9,} {micro['arena_bytes']:>8,} | "
            f"{est.flash_bytes:>9,} {len(lite):>8,} {flash_ratios[-1]:>8.3f}"
        )
    if ratios:
        print(
            f"\npeak RAM estimate / TFLite Micro arena head over {len(ratios)} networks: "
            f"min {min(ratios):.3f}, median {float(np.median(ratios)):.3f}, max {max(ratios):.3f}"
        )
        print(
            f"flash estimate / .tflite bytes: min {min(flash_ratios):.3f}, median "
            f"{float(np.median(flash_ratios)):.3f}, max {max(flash_ratios):.3f}"
        )


if __name__ == "__main__":
    main()
