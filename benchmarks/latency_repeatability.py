"""Repeatability of edgenas latency measurements: 20 children measured in two independent runs.

The children are sampled from the default layer-wise space at CIFAR-10 input size (3x32x32, so
most take more than 0.2 ms); each run uses a fresh Measurer (fresh worker process, no cache)
under the cpu-arm profile (1 thread, pinned, 3 sessions x 40 runs). Prints each child's ratio
run2 / run1 of the reported median and how many of the children above 0.2 ms stay within +-2 %.
With --pairs N, N independent pairs of runs one after another (a summary line per pair): on a
shared VM the host's speed drifts between runs, and one pair says little about how often.

    python benchmarks/latency_repeatability.py [--children 20] [--profile cpu-arm] [--pairs 5]
"""

from __future__ import annotations

import argparse


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--children", type=int, default=20)
    ap.add_argument("--profile", default="cpu-arm")
    ap.add_argument("--pairs", type=int, default=1)
    args = ap.parse_args()
    from edgenas.controllers import RandomController
    from edgenas.measure.export import export_onnx
    from edgenas.profiles import load_profile
    from edgenas.spaces import create

    shape = (3, 32, 32)
    space = create("layerwise", input_shape=shape, num_classes=10)
    models = []
    seen = set()
    ctl = RandomController(space, seed=11)
    while len(models) < args.children:
        arch = space.decode(ctl.propose(1)[0])
        if arch.key() not in seen:
            seen.add(arch.key())
            models.append(export_onnx(space.build(arch), shape))
    profile = load_profile(args.profile)
    passed = 0
    for pair in range(args.pairs):
        passed += measure_pair(models, profile, verbose=pair == 0)
    print(f"pairs with every child above 0.2 ms within +-2 %: {passed}/{args.pairs}")


def measure_pair(models, profile, verbose: bool) -> bool:
    from edgenas.measure.latency import Measurer

    runs = []
    for _ in range(2):
        m = Measurer(use_cache=False)
        runs.append([m.measure(b, profile) for b in models])
        m.close()
    ok = big = 0
    if verbose:
        print(f"{'child':>5} {'run1 ms':>9} {'run2 ms':>9} {'ratio':>7} {'spread1':>8} {'spread2':>8}")
    for i, (a, b) in enumerate(zip(*runs)):
        ratio = b.median_ms / a.median_ms
        flag = ""
        if a.median_ms > 0.2:
            big += 1
            ok += abs(ratio - 1) <= 0.02
            flag = "" if abs(ratio - 1) <= 0.02 else "  outside +-2 %"
        if verbose:
            print(f"{i:5d} {a.median_ms:9.4f} {b.median_ms:9.4f} {ratio:7.3f} {a.spread:8.3f} {b.spread:8.3f}{flag}")
    ratios = sorted(abs(b.median_ms / a.median_ms - 1) for a, b in zip(*runs) if a.median_ms > 0.2)
    allr = sorted(abs(b.median_ms / a.median_ms - 1) for a, b in zip(*runs))
    print(f"children above 0.2 ms: {big}; within +-2 %: {ok}/{big}; "
          + (f"median |ratio - 1|: {100 * ratios[len(ratios) // 2]:.2f} %; " if ratios else "")
          + f"all {len(allr)} children within +-2 %: {sum(r <= 0.02 for r in allr)}")
    return ok == big

if __name__ == "__main__":
    main()
