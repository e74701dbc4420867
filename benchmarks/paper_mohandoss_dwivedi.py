"""Mohandoss & Dwivedi at our scale: accuracy alone against a multi-objective reward.

Their setup: the layer-wise space, REINFORCE with a baseline, the same number of children, the
reward either validation accuracy alone or `accuracy - l1 * params - l2 * FLOPs`; they report the
multi-objective winner 33 % smaller at 0.75 points less accuracy (161k against 240k parameters,
71.7 % against 72.5 % on CIFAR-10).

Here: two real `edgenas search` runs on the CIFAR-10 JPEGs (a stratified subset, `--max-images`),
`--space layerwise --controller reinforce --no-budget --no-templates`, the same seed and children,
one with `--reward-mode budget` (accuracy alone: no budget, so R = validation accuracy), one with
`--reward-mode linear --params-weight L1 --flops-weight L2` (penalties per million parameters and
per million FLOPs); each winner then goes through `edgenas export` (trained again on train +
validation with the photos recipe, scored once on the test split, timed under `cpu-arm`). Both use
a pipeline file written from pipelines/photos.toml (its augmentation and recipe) with the epochs
given here.

    tar xzf ../shared/data/cifar10-jpg-train.tar.gz -C /tmp/data
    python benchmarks/paper_mohandoss_dwivedi.py --data /tmp/data/cifar10-jpg-train \
        --results benchmarks/results/paper_mohandoss_dwivedi.json

Their scale (12,500 images, many children, tens of epochs) takes hours on 2 CPU cores; the
defaults below are what one CPU session affords, and the results file records them.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from pathlib import Path

from _search_export import describe, machine, photos_pipeline, search_and_export


def run(args, reward: str, work: Path) -> dict:
    search = [
        "--pipeline", str(work / "md.toml"),
        "--dataset", f"folder:{args.data}", "--max-images", str(args.max_images),
        "--space", "layerwise", "--controller", "reinforce", "--no-budget", "--no-templates",
        "--profile", "cpu-arm", "--children", str(args.children), "--per-update", str(args.per_update),
        "--seed", str(args.seed), "--quiet",
    ]  # fmt: skip
    if reward == "accuracy":
        search += ["--reward-mode", "budget"]
    else:
        search += ["--reward-mode", "linear", "--params-weight", str(args.l1), "--flops-weight", str(args.l2)]
    return {"reward": reward, **search_and_export(work / f"md-{reward}", search)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="an ImageFolder of photos (the CIFAR-10 JPEGs)")
    ap.add_argument("--max-images", type=int, default=8000)
    ap.add_argument("--children", type=int, default=32)
    ap.add_argument("--per-update", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=3, help="training epochs per child")
    ap.add_argument("--final-epochs", type=int, default=15, help="export's training of each winner")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--l1", type=float, default=0.2, help="penalty per million parameters")
    ap.add_argument("--l2", type=float, default=0.001, help="penalty per million FLOPs")
    ap.add_argument("--work", default="/tmp/edgenas-md", help="run directories (a rerun resumes them)")
    ap.add_argument("--results", help="write the results here")
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    photos_pipeline(work / "md.toml", args.epochs, args.final_epochs, "layerwise", "reinforce")
    rows = [run(args, reward, work) for reward in ("accuracy", "multi")]
    acc, multi = rows
    smaller = 1 - multi["params"] / acc["params"]
    drop = 100 * (acc["test_accuracy"] - multi["test_accuracy"])
    for r in rows:
        print(describe(r, r["reward"]))
    print(f"multi-objective winner {100 * smaller:.0f} % smaller, {drop:.2f} points less accurate (test)")
    if args.results:
        out = {
            "command": "python " + " ".join(sys.argv),
            "date": date.today().isoformat(),
            "machine": machine(),
            "scale": {
                k: getattr(args, k)
                for k in ("max_images", "children", "per_update", "epochs", "final_epochs", "seed", "l1", "l2")
            },
            "rows": rows,
            "params_smaller_fraction": smaller,
            "test_points_lost": drop,
        }
        Path(args.results).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
