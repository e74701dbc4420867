"""Quality: a search on the CIFAR-10 ImageFolder with a hard 150,000-parameter budget, and the
winner next to a hand-designed reference of similar size trained by the same trainer.

1. `run_search` with the default pipeline on `folder:PATH` (a stratified subset of
   --max-images; 80 / 10 / 10 train / validation / test), --budget 150000, cpu-arm timing,
   children trained for --search-epochs (low fidelity).
2. The winner's architecture and the reference (a plain 4-layer VGG-style CNN, 3x3 convs,
   32-64-64-128 channels, stride 2 at layers 2 and 4: 131,754 params on 3x32x32) are each trained from
   scratch with the same recipe for --final-epochs on the train split, and scored once on the
   held-out test split (never seen by the search). Seeds fixed; printed side by side.

    tar xzf ../shared/data/cifar10-jpg-train.tar.gz -C /tmp/data
    python benchmarks/cifar_quality.py --data /tmp/data/cifar10-jpg-train --max-images 10000

For scale (not comparable, full data and 50 epochs): Mohandoss & Dwivedi's best multi-objective
network, 5 conv layers at stride 1 with 161,346 params, reached 71.7 % on CIFAR-10.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True, help="CIFAR-10 ImageFolder (the extracted cifar10-jpg-train)")
    ap.add_argument("--max-images", type=int, default=10000)
    ap.add_argument("--children", type=int, default=24)
    ap.add_argument("--search-epochs", type=int, default=3)
    ap.add_argument("--final-epochs", type=int, default=15)
    ap.add_argument("--budget", type=int, default=150_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--runs-dir", default=None, help="keep the search's run directory here (default: a temp dir)")
    ap.add_argument(
        "--resume",
        action="store_true",
        help="continue the search in RUNS_DIR/cifar-quality if an earlier run was cut off",
    )
    args = ap.parse_args()
    import torch

    from edgenas.config import load_pipeline
    from edgenas.measure.cost import count_params
    from edgenas.search import prepare, run_search
    from edgenas.spaces.layerwise import Layer, LayerwiseArch
    from edgenas.training.trainer import TrainRecipe, accuracy, resolve_device, train_child

    with tempfile.TemporaryDirectory() as tmp:
        pipe = (
            load_pipeline("default")
            .override("search", children=args.children, seed=args.seed, runs_dir=args.runs_dir or tmp)
            .override("training", epochs=args.search_epochs)
            .override(
                "dataset", name=f"folder:{args.data}", max_images=args.max_images, val_fraction=0.1, test_fraction=0.1
            )
            .override("reward", budget_params=args.budget)
        )
        prepared = prepare(pipe)
        data, space = prepared.data, prepared.space
        t0 = time.perf_counter()
        run_dir = Path(args.runs_dir or tmp) / "cifar-quality"
        if args.resume and run_dir.is_dir():
            result = run_search(pipe, run_dir=run_dir, prepared=prepared, resume=True)
        else:
            result = run_search(pipe, prepared=prepared, run_name="cifar-quality")
        search_s = time.perf_counter() - t0
        win = result.winner
        print(
            f"search: {result.counts} in {search_s:.0f} s ({args.children} children, {args.search_epochs} epochs, "
            f"{len(data.y_train)} train / {len(data.y_val)} val / {len(data.y_test)} test images)"
        )
        print(
            f"winner {win['arch_key']}: {win['params']:,} params, val {win['val_accuracy']:.4f} "
            f"(search training), latency {win['latency']['median_ms']:.3f} ms ({win['latency']['label']})"
        )
        reference = LayerwiseArch(
            (Layer(32, 3, 1, ()), Layer(64, 3, 2, (0,)), Layer(64, 3, 1, (1,)), Layer(128, 3, 2, (2,)))
        )
        device = resolve_device("auto")
        recipe = TrainRecipe(epochs=args.final_epochs, batch_size=64, learning_rate=0.1)
        rows = []
        for name, arch in (
            ("edgenas winner", space.arch_from_json(win["architecture"])),
            ("hand-designed reference", reference),
        ):
            torch.manual_seed(args.seed)
            model = space.build(arch)
            t0 = time.perf_counter()
            res = train_child(model, data.x_train, data.y_train, data.x_val, data.y_val, recipe, args.seed, device)
            test = accuracy(model, data.x_test, data.y_test)
            rows.append((name, count_params(model), res.val_accuracy, test, time.perf_counter() - t0))
        print(
            f"\nboth trained from scratch for {args.final_epochs} epochs on the same {len(data.y_train)} images, "
            f"device {device}"
        )
        print(f"{'network':>24} {'params':>9} {'val %':>7} {'test %':>7} {'train s':>8}")
        for name, params, val, test, secs in rows:
            print(f"{name:>24} {params:9,} {100 * val:7.2f} {100 * test:7.2f} {secs:8.0f}")


if __name__ == "__main__":
    main()
