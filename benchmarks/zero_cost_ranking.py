"""Do training-free scores rank networks as training them does? (Issue 39, item 4, continued.)

Reads a results file of `benchmarks/supernet_ranking.py` (its networks and their stand-alone
accuracies: the expensive part, already paid), loads the same dataset the same way, and scores
each network at initialisation, without training, by the zero-cost proxies of the literature:

- `naswot` (Mellor et al., "Neural Architecture Search without Training", ICML 2021): how
  differently a batch of images switches the network's ReLUs, log |det K| of the batch's
  activation-pattern similarity matrix;
- `synflow` (Tanaka et al. 2020, as a NAS score in Abdelfattah et al., "Zero-Cost Proxies for
  Lightweight NAS", ICLR 2021): sum of |theta * dR/dtheta| with R the output sum of the network with
  |weights| on an all-ones input (BatchNorm in inference mode, float64);
- `snip` and `grad_norm` (same paper): sum of |theta * dL/dtheta| and of the gradients' norms, L the
  cross-entropy of one labelled batch;
- `params`: the parameter count (the free baseline every cheap score has to beat).

Each proxy is averaged over `--inits` initialisations and batches (seeds 0..inits-1), and Kendall's
tau against the stand-alone accuracy is printed next to the ranking file's own cheap scores.

    python benchmarks/zero_cost_ranking.py --ranking benchmarks/results/supernet_ranking_cifar5k.json \
        [--data-dir /tmp/data] [--batch 64] [--inits 3] [--threads 1] [--out FILE]

The ranking's dataset is loaded from where that run had it (`folder:/tmp/data/cifar10-jpg-train`
for the CIFAR-10 file: `tar xzf ../shared/data/cifar10-jpg-train.tar.gz -C /tmp/data`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F


def naswot(model: nn.Module, x: torch.Tensor) -> float:
    """log |det K|, K[i, j] = how many ReLU units images i and j both switch on or both leave off."""
    codes: list[torch.Tensor] = []

    def hook(_module, _inputs, out):
        codes.append((out.detach().flatten(1) > 0).to(torch.float64))

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.ReLU, nn.ReLU6))]
    model.train()
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    c = torch.cat(codes, 1)
    k = c @ c.T + (1 - c) @ (1 - c).T
    return float(torch.linalg.slogdet(k).logabsdet)


def synflow(model: nn.Module, shape: tuple[int, ...]) -> float:
    model = model.double().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.abs_()
    model.zero_grad()
    model(torch.ones((1, *shape), dtype=torch.float64)).sum().backward()
    return float(sum((p * p.grad).abs().sum() for p in model.parameters() if p.grad is not None))


def gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """(snip, grad_norm) of one labelled batch."""
    model.train()
    model.zero_grad()
    F.cross_entropy(model(x), y).backward()
    weights = [m.weight for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        return sum(float((w * w.grad).abs().sum()) for w in weights), sum(float(w.grad.norm()) for w in weights)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ranking", required=True, help="a results file of benchmarks/supernet_ranking.py")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--inits", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    import dataclasses

    import numpy as np
    from scipy.stats import kendalltau

    from edgenas import api, spaces
    from edgenas.settings.pipeline import SpaceSettings
    from edgenas.training.data import load_pipeline_dataset

    torch.set_num_threads(args.threads)
    ranking = json.loads(Path(args.ranking).read_text())
    extra = {"max_images": ranking["max_images"]} if ranking.get("max_images") else {}
    pipeline = api.make_pipeline(ranking["dataset"], space="mobile", seed=0, **extra)
    pipeline = dataclasses.replace(pipeline, space=SpaceSettings("mobile", {"widths": ranking["widths"]}))
    data = load_pipeline_dataset(pipeline)
    space = spaces.from_pipeline(pipeline, data.input_shape, data.num_classes)
    shape = tuple(data.input_shape)
    full = ranking["standalone"]
    archs = [space.parse(key.split("|", 1)[1]) for key in ranking["archs"]]
    names = ("naswot", "synflow", "snip", "grad_norm")
    scores: dict[str, list[float]] = {n: [] for n in names}
    t0 = time.process_time()
    for a in archs:
        per: dict[str, list[float]] = {n: [] for n in names}
        for s in range(args.inits):
            g = torch.Generator().manual_seed(s)
            idx = torch.randperm(len(data.y_train), generator=g)[: args.batch]
            x, y = data.x_train[idx], data.y_train[idx]
            torch.manual_seed(s)
            model = space.build(a)
            per["naswot"].append(naswot(model, x))
            snip, norm = gradients(model, x, y)
            per["snip"].append(snip)
            per["grad_norm"].append(norm)
            torch.manual_seed(s)
            per["synflow"].append(synflow(space.build(a), shape))
        for n in names:
            scores[n].append(float(np.mean(per[n])))
    cpu = time.process_time() - t0
    taus = {n: float(kendalltau(scores[n], full).statistic) for n in names}
    taus["params"] = float(kendalltau(ranking["params"], full).statistic)
    out = {
        "command": "python benchmarks/zero_cost_ranking.py " + " ".join(argv or sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d"),
        "ranking": args.ranking,
        "dataset": ranking["dataset"],
        "max_images": ranking.get("max_images"),
        "networks": len(archs),
        "standalone_epochs": ranking["standalone_epochs"],
        "batch": args.batch,
        "inits": args.inits,
        "kendall_tau": taus,
        # the ranking file's own cheap scores, for the side-by-side
        "kendall_tau_ranking_file": {
            "inherited": ranking["kendall_tau_inherited"],
            "epoch_1": ranking.get("kendall_tau_epoch_1"),
            "epoch_2": ranking.get("kendall_tau_epoch_2"),
        },
        "cpu_seconds": cpu,
        "scores": scores,
    }
    print(
        f"{len(archs)} networks of {args.ranking} ({ranking['dataset']}), Kendall tau vs "
        f"{ranking['standalone_epochs']}-epoch stand-alone accuracy: "
        + ", ".join(f"{n} {t:.3f}" for n, t in taus.items())
        + f" (ranking file: inherited {ranking['kendall_tau_inherited']:.3f}, 1-epoch "
        f"{ranking.get('kendall_tau_epoch_1') or float('nan'):.3f}); {cpu:.0f} CPU s for {args.inits} inits"
    )
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
