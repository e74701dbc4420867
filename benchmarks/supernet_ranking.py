"""Does the weight-sharing supernet rank networks as training them does? (Issue 39, item 4.)

Trains the mobile space's supernet exactly as `--executor supernet` does (`--rule`: sandwich or
progressive shrinking, `--supernet-epochs`), draws N random subnetworks, scores each with inherited weights (BatchNorm
recalibrated, validation accuracy), trains each stand-alone with the pipeline's recipe for
`--epochs`, and prints Kendall's tau between the two (and the 1-epoch stand-alone score against
the full one, the cheap score ASHA's first rung uses), with the CPU time of each path.

    python benchmarks/supernet_ranking.py [--dataset digits] [--max-images N] [--networks 30]
        [--supernet-epochs 10] [--rule sandwich] [--epochs 10] [--widths 8,16,24,32] [--device cpu] [--threads 1]
        [--repeat-seed S] [--work DIR] [--out benchmarks/results/supernet_ranking.json]

With --work DIR the supernet (checkpointed every epoch) and each network's row stay in DIR, so a
run stopped at any point continues where it stopped when started again with the same arguments,
and a run with another `--rule` on the same DIR trains only that rule's supernet: its inherited
scores are ranked against the stand-alone accuracies already there (the output compares the rules).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def claim(work: Path, name: str) -> bool:
    """True when this process takes `name` (a network, or the supernet) among the processes sharing
    `work`: its claim file is created here, or left by a process that is gone."""
    import os

    path = work / "claims" / name
    path.parent.mkdir(exist_ok=True)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        try:
            os.kill(int(path.read_text()), 0)
        except (ValueError, ProcessLookupError):
            path.unlink(missing_ok=True)  # a process that is gone (or died before writing its pid)
            return claim(work, name)
        except PermissionError:
            pass  # alive, another user's
        return False  # its process is alive: it trains it
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    return True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--dataset", default="digits", help="digits, cifar10, folder:DIR, ... as `edgenas search --dataset`"
    )
    ap.add_argument("--max-images", type=int, default=None, help="use at most this many images of the dataset")
    ap.add_argument("--networks", type=int, default=30)
    ap.add_argument("--supernet-epochs", type=int, default=10)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--widths", default="8,16,24,32")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat-seed", type=int, default=None, help="train each network stand-alone again with "
                    "this seed: Kendall tau between the two trainings is what any cheap score can hope for")  # fmt: skip
    ap.add_argument("--no-distill", action="store_true", help="train the supernet on labels only")
    ap.add_argument("--rule", default="sandwich", choices=("sandwich", "progressive"), help="how the supernet "
                    "trains (`edgenas search --supernet-rule`)")  # fmt: skip
    ap.add_argument("--work", default=None, help="keep the supernet and each network's row here: a rerun with "
                    "the same arguments continues where it stopped, and several processes given the same directory "
                    "(one per core, --threads 1; start the others once the supernet is trained) share the networks "
                    "(default: a new temporary directory)")  # fmt: skip
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    import dataclasses
    import tempfile

    import numpy as np
    import torch
    from scipy.stats import kendalltau

    from edgenas import api
    from edgenas.controllers.base import complete_uniformly
    from edgenas.evaluators import supernet
    from edgenas.evaluators.jobs import WORKER, setup
    from edgenas.evaluators.supernet import SupernetEvaluator
    from edgenas.settings.pipeline import SpaceSettings
    from edgenas.training.trainer import train_child

    torch.set_num_threads(args.threads)
    supernet.DISTILL = not args.no_distill
    widths = [int(w) for w in args.widths.split(",")]
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="edgenas-supernet-"))
    work.mkdir(parents=True, exist_ok=True)
    extra = {"max_images": args.max_images} if args.max_images else {}
    setup_name = str(api.setup_for(args.dataset, None, extra)[0])
    pipeline = api.make_pipeline(args.dataset, space="mobile", executor="supernet", supernet_epochs=args.supernet_epochs,
                                 epochs=args.epochs, seed=args.seed, runs_dir=str(work), device=args.device, supernet_rule=args.rule,
                                 **extra)  # fmt: skip
    pipeline = dataclasses.replace(pipeline, space=SpaceSettings("mobile", {"widths": widths}))
    # each network's row, one JSON line, appended as it is measured: a rerun skips what is there
    settings = {k: getattr(args, k) for k in ("dataset", "max_images", "networks", "supernet_epochs", "epochs",
                                              "widths", "seed", "no_distill")}  # fmt: skip
    rows_path = work / "rows.jsonl"
    rows = [json.loads(line) for line in rows_path.read_text().splitlines()] if rows_path.is_file() else []
    if rows and rows[0].get("settings") != settings:
        print(f"{rows_path} holds rows of other settings ({rows[0].get('settings')}); give another --work",
              file=sys.stderr)  # fmt: skip
        return 2

    def rule_of(row: dict) -> str:
        return row.get("rule", "sandwich")

    scored = {rule_of(r): r for r in rows if "inherited" in r}  # each rule's supernet: CPU time, inherited scores
    if args.rule not in scored and not claim(work, "supernet" + ("" if args.rule == "sandwich" else f"-{args.rule}")):
        print(f"another process is training the supernet in {work}; start this one once {rows_path} has its first "
              "line", file=sys.stderr)  # fmt: skip
        return 2
    ev = SupernetEvaluator(pipeline.to_json(), args.threads)
    setup(ev.pipeline_json, args.threads, None)
    space, data, device = WORKER["space"], WORKER["data"], WORKER["device"]
    print(f"{args.dataset}: {len(data.y_train)} training, {len(data.y_val)} validation images "
          f"{tuple(data.input_shape)}, device {device}, setup {setup_name}", file=sys.stderr)  # fmt: skip
    rng = np.random.default_rng(args.seed)
    archs = [space.decode(complete_uniformly(space, [], rng)) for _ in range(args.networks)]
    if args.rule not in scored:
        t0 = time.process_time()
        ev.net = ev.trained()
        supernet_cpu = time.process_time() - t0
        t0 = time.process_time()
        scores = [ev.score(a, args.seed)[0] for a in archs]
        row = {"supernet_cpu_s": supernet_cpu, "inherited": scores, "inherited_cpu_s": time.process_time() - t0}
        row = {"settings": settings, **row, "archs": [a.key() for a in archs]} if not rows else row
        scored[args.rule] = {**row, "rule": args.rule} if args.rule != "sandwich" else row
        rows.append(scored[args.rule])
        with rows_path.open("a") as fh:
            fh.write(json.dumps(scored[args.rule]) + "\n")
    head = rows[0]
    assert head["archs"] == [a.key() for a in archs], "the same seed draws the same networks"
    inherited = scored[args.rule]["inherited"]
    done = {r["index"]: r for r in rows[1:] if "index" in r and "repeat" not in r}
    repeats = {r["index"]: r for r in rows[1:] if "index" in r and r.get("repeat") == args.repeat_seed}

    def standalone(a, seed: int) -> dict:
        torch.manual_seed(seed)
        model = space.build(a)
        t0 = time.process_time()
        res = train_child(model, data.x_train, data.y_train, data.x_val, data.y_val, pipeline.training, seed, device,
                          [None] * args.epochs)  # fmt: skip
        return {"curve": list(res.curve), "standalone": res.val_accuracy,
                "params": sum(p.numel() for p in model.parameters()), "cpu_s": time.process_time() - t0}  # fmt: skip

    def refresh() -> None:  # the rows other processes sharing --work appended meanwhile
        for line in rows_path.read_text().splitlines()[1:]:
            r = json.loads(line)
            if "index" not in r:
                scored.setdefault(rule_of(r), r)
            elif "repeat" not in r:
                done[r["index"]] = r
            elif r["repeat"] == args.repeat_seed:
                repeats[r["index"]] = r

    for i, a in enumerate(archs):
        for seed, table, tag in ((args.seed, done, {}), (args.repeat_seed, repeats, {"repeat": args.repeat_seed})):
            refresh()
            if seed is None or i in table or not claim(work, f"{i}" + (f"-seed{seed}" if tag else "")):
                continue
            table[i] = {"index": i, **tag, **standalone(a, seed)}
            with rows_path.open("a") as fh:
                fh.write(json.dumps(table[i]) + "\n")
            r = table[i]
            print(f"  {i + 1}/{len(archs)}{' (seed %d)' % seed if tag else ''}: inherited {inherited[i]:.4f}, "
                  f"1 epoch {r['curve'][0]:.4f}, {args.epochs} epochs {r['standalone']:.4f} ({r['cpu_s']:.0f} CPU s)",
                  file=sys.stderr, flush=True)  # fmt: skip
    refresh()
    idx = sorted(done)
    full = [done[i]["standalone"] for i in idx]
    repeat: dict = {}  # a second stand-alone training of the same networks, where asked for
    if args.repeat_seed is not None:
        both = [i for i in idx if i in repeats]
        again = [repeats[i]["standalone"] for i in both]
        repeat = {"repeat_seed": args.repeat_seed, "repeat_networks": len(both), "standalone_repeat": again,
                  "kendall_tau_repeat": float(kendalltau(again, [done[i]["standalone"] for i in both]).statistic)}  # fmt: skip
    # the accuracy after each epoch of the same run (its learning rate not yet annealed) against the last
    by_epoch = [float(kendalltau([done[i]["curve"][e] for i in idx], full).statistic) for e in range(args.epochs - 1)]
    rungs = {f"kendall_tau_epoch_{e}": by_epoch[e - 1] for e in (1, 2) if e < args.epochs}
    out = {
        "command": "python benchmarks/supernet_ranking.py " + " ".join(argv or sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d"),
        "dataset": args.dataset,
        "max_images": args.max_images,
        "training_images": len(data.y_train),
        "validation_images": len(data.y_val),
        "setup": setup_name,
        "networks": len(idx),
        "widths": widths,
        "supernet_epochs": args.supernet_epochs,
        "distill": supernet.DISTILL,
        "rule": args.rule,
        "standalone_epochs": args.epochs,
        "kendall_tau_inherited": float(kendalltau([inherited[i] for i in idx], full).statistic),
        # the free proxy any cheap score has to beat: larger networks tend to end better
        "kendall_tau_params": float(kendalltau([done[i]["params"] for i in idx], full).statistic),
        "kendall_tau_first_epoch": rungs.get("kendall_tau_epoch_1"),
        **rungs,
        "kendall_tau_by_epoch": by_epoch,
        # every rule whose supernet was trained on this --work, ranked against the same stand-alone accuracies
        "rules": {
            rule: {
                "kendall_tau_inherited": float(kendalltau([r["inherited"][i] for i in idx], full).statistic),
                "supernet_cpu_s": r["supernet_cpu_s"],
                "inherited_cpu_s": r["inherited_cpu_s"],
                "inherited": [r["inherited"][i] for i in idx],
            }  # fmt: skip
            for rule, r in sorted(scored.items())
        },
        "cpu_seconds": {
            "supernet_training": scored[args.rule]["supernet_cpu_s"],
            "inherited_scores": scored[args.rule]["inherited_cpu_s"],
            "standalone": sum(done[i]["cpu_s"] for i in idx),
        },  # fmt: skip
        **repeat,
        "inherited": [inherited[i] for i in idx],
        "first_epoch": [done[i]["curve"][0] for i in idx],
        "standalone": full,
        "params": [done[i]["params"] for i in idx],
        "archs": [head["archs"][i] for i in idx],
    }
    print(
        f"{len(idx)} networks on {args.dataset}: Kendall tau vs {args.epochs}-epoch stand-alone accuracy: "
        f"inherited weights {out['kendall_tau_inherited']:.3f}, parameter count {out['kendall_tau_params']:.3f}, "
        + ", ".join(f"{name[len('kendall_tau_epoch_') :]}-epoch score {tau:.3f}" for name, tau in rungs.items())
        + (
            f", another training of the same networks (seed {args.repeat_seed}) {repeat['kendall_tau_repeat']:.3f}"
            if repeat
            else ""
        )
        + "".join(
            f", inherited weights of the {rule} rule's supernet {r['kendall_tau_inherited']:.3f}"
            for rule, r in out["rules"].items()
            if rule != args.rule
        )
        + f"; CPU s: supernet {out['cpu_seconds']['supernet_training']:.0f} + scoring "
        f"{out['cpu_seconds']['inherited_scores']:.0f}, "
        f"stand-alone {out['cpu_seconds']['standalone']:.0f}"
    )
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
