"""Xu at our scale: REINFORCE with and without experience replay.

Xu searches a space of residual blocks, convolutions and pools (`--space blocks`) with REINFORCE
and replays earlier good architectures to the controller; they report 86.13 % on CIFAR-10 after
437 children on a GPU. edgenas's replay (`reinforce`'s `replay_size` / `replay_count`) keeps the
best `replay_size` distinct results seen so far and adds the best `replay_count` of them to every
update's batch; it is a best-K buffer, not Xu's tree of prefixes (edgenas rewards whole networks,
not every prefix: see the `blocks` space in the README).

Two parts, one command:
1. The ablation on the NAS-Bench-201 table, in the sample-efficiency benchmark's format
   (benchmarks/sample_efficiency.py: 100 seeds, batches of 8, the test accuracy of the best
   validation pick after 25 ... 400 distinct networks): `reinforce` against
   `reinforce:{"replay_size": 8, "replay_count": 2}`. Skipped with --no-table.
2. One search each on the CIFAR-10 JPEGs (`--data`, a stratified subset `--max-images`) with the
   blocks space, the same seed and number of children, with and without replay, each winner
   exported (`edgenas export`: trained again with the photos recipe, scored once on the test
   split). Skipped without --data.

    python benchmarks/paper_xu.py --data /tmp/data/cifar10-jpg-train --results benchmarks/results/paper_xu.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from datetime import date
from pathlib import Path

from _search_export import describe, machine, photos_pipeline, search_and_export

ROOT = Path(__file__).resolve().parents[1]
REPLAY = {"replay_size": 8, "replay_count": 2}


def table_part(args) -> list[str]:
    cmd = [
        sys.executable, str(ROOT / "benchmarks" / "sample_efficiency.py"), "--reps", str(args.reps),
        "--strategies", f"reinforce;reinforce:{json.dumps(REPLAY, separators=(',', ':'))}",
        "--log", str(Path(args.work) / "nb201.jsonl"),
    ]  # fmt: skip
    print("$", " ".join(cmd[1:]), flush=True)
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    print(out, flush=True)
    return out.splitlines()


def cifar_part(args, work: Path) -> list[dict]:
    photos_pipeline(work / "xu.toml", args.epochs, args.final_epochs, "blocks", "reinforce")
    rows = []
    for label, options in (("no replay", {}), ("replay", REPLAY)):
        search = [
            "--pipeline", str(work / "xu.toml"),
            "--dataset", f"folder:{args.data}", "--max-images", str(args.max_images),
            "--no-budget", "--no-templates", "--profile", "cpu-arm",
            "--children", str(args.children), "--per-update", str(args.per_update), "--seed", str(args.seed),
            "--quiet",
        ]  # fmt: skip
        if options:  # the controller's options live in the pipeline file
            pipe = work / "xu-replay.toml"
            text = (
                (work / "xu.toml")
                .read_text()
                .replace(
                    '[controller]\nname = "reinforce"',
                    '[controller]\nname = "reinforce"\n' + "\n".join(f"{k} = {v}" for k, v in options.items()),
                )
            )
            pipe.write_text(text)
            search[1] = str(pipe)
        rows.append({"replay": bool(options), **search_and_export(work / f"xu-{label.replace(' ', '-')}", search)})
        print(describe(rows[-1], label), flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=100, help="NB201 repetitions per strategy")
    ap.add_argument("--no-table", action="store_true", help="leave out the NB201 part")
    ap.add_argument("--data", help="an ImageFolder of photos (the CIFAR-10 JPEGs) for the blocks-space part")
    ap.add_argument("--max-images", type=int, default=4000)
    ap.add_argument("--children", type=int, default=16)
    ap.add_argument("--per-update", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--final-epochs", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", default="/tmp/edgenas-xu", help="run directories and the NB201 log (reruns resume)")
    ap.add_argument("--results")
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    out: dict = {
        "command": "python " + " ".join(sys.argv),
        "date": date.today().isoformat(),
        "machine": machine(),
        "replay": REPLAY,
    }
    if not args.no_table:
        out["nb201"] = table_part(args)
    if args.data:
        out["scale"] = {k: getattr(args, k) for k in ("max_images", "children", "per_update", "epochs", "final_epochs")}
        out["blocks"] = cifar_part(args, work)
    if args.results:
        Path(args.results).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
