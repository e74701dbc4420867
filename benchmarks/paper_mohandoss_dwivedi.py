"""Mohandoss & Dwivedi at our scale: accuracy alone against a multi-objective reward.

Their setup: the layer-wise space, REINFORCE with a baseline, the same number of children, the
reward either validation accuracy alone or `accuracy - l1 * params - l2 * FLOPs`; they report the
multi-objective winner 33 % smaller at 0.75 points less accuracy (161k against 240k parameters,
71.7 % against 72.5 % on CIFAR-10).

Here: per search seed, two real `edgenas search` runs on the CIFAR-10 JPEGs (a stratified
subset, `--max-images`), `--space layerwise --controller reinforce --no-budget --no-templates`,
the same seed and children, one with `--reward-mode budget` (accuracy alone: no budget, so R = validation accuracy), one with
`--reward-mode linear --params-weight L1 --flops-weight L2` (penalties per million parameters and
per million FLOPs); each winner then goes through `edgenas export` (trained again on train +
validation with the photos recipe, scored once on the test split, timed under `cpu-arm`). Both use
a pipeline file written from pipelines/photos.toml (its augmentation and recipe) with the epochs
given here.

    tar xzf ../shared/data/cifar10-jpg-train.tar.gz -C /tmp/data
    python benchmarks/paper_mohandoss_dwivedi.py --data /tmp/data/cifar10-jpg-train \
        --results benchmarks/results/paper_mohandoss_dwivedi.json

Their subset's size (12,500 images) is the default; their children and epochs (many, tens) take
hours on 2 CPU cores, so the defaults below are what one CPU session affords (three seeds, 32
children of 3 epochs each), and the results file records them.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from pathlib import Path

from _search_export import describe, machine, photos_pipeline, search_and_export


def run(args, reward: str, seed: int, work: Path) -> dict:
    """One search and its export; the row is kept beside the run directory, so a rerun reads it
    instead of searching and exporting again."""
    name = f"md-{reward}" + (f"-seed{seed}" if seed else "")
    kept = work / f"{name}.row.json"
    if kept.is_file():
        return json.loads(kept.read_text())
    search = [
        "--pipeline", str(work / "md.toml"),
        "--dataset", f"folder:{args.data}", "--max-images", str(args.max_images),
        "--space", "layerwise", "--controller", "reinforce", "--no-budget", "--no-templates",
        "--profile", "cpu-arm", "--children", str(args.children), "--per-update", str(args.per_update),
        "--seed", str(seed), "--quiet",
    ]  # fmt: skip
    if reward == "accuracy":
        search += ["--reward-mode", "budget"]
    else:
        search += ["--reward-mode", "linear", "--params-weight", str(args.l1), "--flops-weight", str(args.l2)]
    row = {"reward": reward, "seed": seed, **search_and_export(work / name, search)}
    kept.write_text(json.dumps(row, indent=1) + "\n")
    return row


def compare(acc: dict, multi: dict) -> dict[str, float]:
    """The multi-objective winner against accuracy alone's, as fractions and test points."""
    return {
        "params_change": multi["params"] / acc["params"] - 1,
        "flops_change": multi["flops"] / acc["flops"] - 1,
        "test_points": 100 * (multi["test_accuracy"] - acc["test_accuracy"]),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="an ImageFolder of photos (the CIFAR-10 JPEGs)")
    ap.add_argument("--max-images", type=int, default=12500, help="their subset's size")
    ap.add_argument("--children", type=int, default=32)
    ap.add_argument("--per-update", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=3, help="training epochs per child")
    ap.add_argument("--final-epochs", type=int, default=15, help="export's training of each winner")
    ap.add_argument("--seeds", default="0,1,2", help="search seeds, comma-separated (a pair of searches each)")
    ap.add_argument("--l1", type=float, default=0.2, help="penalty per million parameters")
    ap.add_argument("--l2", type=float, default=0.001, help="penalty per million FLOPs")
    ap.add_argument("--work", default="/tmp/edgenas-md", help="run directories (a rerun resumes them)")
    ap.add_argument("--results", help="write the results here")
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    photos_pipeline(work / "md.toml", args.epochs, args.final_epochs, "layerwise", "reinforce")
    runs = []
    for seed in (int(s) for s in args.seeds.split(",")):
        acc, multi = (run(args, reward, seed, work) for reward in ("accuracy", "multi"))
        runs.append({"seed": seed, "rows": [acc, multi], **compare(acc, multi)})
        for r in (acc, multi):
            print(describe(r, f"{r['reward']} s{seed}"))
        c = runs[-1]
        print(f"seed {seed}: multi-objective winner {100 * c['params_change']:+.0f} % parameters, "
              f"{100 * c['flops_change']:+.0f} % FLOPs, {c['test_points']:+.2f} test points")  # fmt: skip
    if args.results:
        out = {
            "command": "python " + " ".join(sys.argv),
            "date": date.today().isoformat(),
            "machine": machine(),
            "scale": {
                k: getattr(args, k)
                for k in ("max_images", "children", "per_update", "epochs", "final_epochs", "l1", "l2")
            },
            "runs": runs,
        }
        Path(args.results).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
