"""Does the weight-sharing supernet rank networks as training them does? (Issue 39, item 4.)

Trains the mobile space's supernet exactly as `--executor supernet` does (sandwich rule,
`--supernet-epochs`), draws N random subnetworks, scores each with inherited weights (BatchNorm
recalibrated, validation accuracy), trains each stand-alone with the pipeline's recipe for
`--epochs`, and prints Kendall's tau between the two (and the 1-epoch stand-alone score against
the full one, the cheap score ASHA's first rung uses), with the CPU time of each path.

    python benchmarks/supernet_ranking.py [--dataset digits] [--networks 30] [--supernet-epochs 10]
        [--epochs 10] [--widths 8,16,24,32] [--out benchmarks/results/supernet_ranking.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--networks", type=int, default=30)
    ap.add_argument("--supernet-epochs", type=int, default=10)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--widths", default="8,16,24,32")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-distill", action="store_true", help="train the supernet on labels only")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    import tempfile

    import numpy as np
    import torch
    from scipy.stats import kendalltau

    from edgenas import api
    from edgenas.controllers.base import complete_uniformly
    from edgenas.evaluators import supernet
    from edgenas.evaluators.jobs import WORKER, setup
    from edgenas.evaluators.supernet import SupernetEvaluator
    from edgenas.training.trainer import train_child

    torch.set_num_threads(1)
    supernet.DISTILL = not args.no_distill
    widths = [int(w) for w in args.widths.split(",")]
    runs = tempfile.mkdtemp(prefix="edgenas-supernet-")
    import dataclasses

    from edgenas.settings.pipeline import SpaceSettings

    pipeline = api.make_pipeline(args.dataset, space="mobile", executor="supernet", supernet_epochs=args.supernet_epochs,
                                 epochs=args.epochs, seed=args.seed, runs_dir=runs, device="cpu")  # fmt: skip
    pipeline = dataclasses.replace(pipeline, space=SpaceSettings("mobile", {"widths": widths}))
    ev = SupernetEvaluator(pipeline.to_json(), 1)
    setup(ev.pipeline_json, 1, None)
    t0 = time.process_time()
    ev.net = ev.trained()
    supernet_cpu = time.process_time() - t0
    space, data = WORKER["space"], WORKER["data"]
    rng = np.random.default_rng(args.seed)
    archs = [space.decode(complete_uniformly(space, [], rng)) for _ in range(args.networks)]
    t0 = time.process_time()
    inherited = [ev.score(a, args.seed)[0] for a in archs]
    score_cpu = time.process_time() - t0
    first, full = [], []
    t0 = time.process_time()
    for i, a in enumerate(archs):
        torch.manual_seed(args.seed)
        res = train_child(space.build(a), data.x_train, data.y_train, data.x_val, data.y_val, pipeline.training,
                          args.seed, torch.device("cpu"), [None] * args.epochs)  # fmt: skip
        first.append(res.curve[0])
        full.append(res.val_accuracy)
        print(f"  {i + 1}/{len(archs)}: inherited {inherited[i]:.4f}, 1 epoch {first[-1]:.4f}, "
              f"{args.epochs} epochs {full[-1]:.4f}", file=sys.stderr, flush=True)  # fmt: skip
    train_cpu = time.process_time() - t0
    out = {
        "command": "python benchmarks/supernet_ranking.py " + " ".join(argv or sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d"),
        "dataset": args.dataset,
        "networks": args.networks,
        "widths": widths,
        "supernet_epochs": args.supernet_epochs,
        "distill": supernet.DISTILL,
        "standalone_epochs": args.epochs,
        "kendall_tau_inherited": float(kendalltau(inherited, full).statistic),
        "kendall_tau_first_epoch": float(kendalltau(first, full).statistic),
        "cpu_seconds": {"supernet_training": supernet_cpu, "inherited_scores": score_cpu, "standalone": train_cpu},
        "inherited": inherited,
        "first_epoch": first,
        "standalone": full,
        "archs": [a.key() for a in archs],
    }
    print(
        f"{args.networks} networks on {args.dataset}: Kendall tau vs {args.epochs}-epoch stand-alone accuracy: "
        f"inherited weights {out['kendall_tau_inherited']:.3f}, 1-epoch score {out['kendall_tau_first_epoch']:.3f}; "
        f"CPU s: supernet {supernet_cpu:.0f} + scoring {score_cpu:.0f}, stand-alone {train_cpu:.0f}"
    )
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
