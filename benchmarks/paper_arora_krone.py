"""Arora & Krone at our scale: the 64-cell A_small space, PPO, and a hard parameter limit.

Their setup: a child of two cells (cell - maxpool - cell - maxpool - fc) whose cell is two
consecutive operations out of eight (64 networks, `--space cell-small`), each child trained for 10
epochs with Adam; every one of the 64 trained once and kept as a table, then their controller (an
LSTM with 100 hidden units, PPO, batches of 20 children) searching that table. They report:
(a) with validation accuracy as the reward, the batch's mean reward came within 0.5 points of the
best cell after about 200 episodes (about 4,000 samples); (b) under a parameter limit that leaves
only cells with at most one expensive convolution, the controller settled on the second-best cell
under the limit, not the best.

What this script does, with edgenas's own parts throughout:
1. The table (`--table-out`, kept in benchmarks/results/): one real `edgenas search --space
   cell-small` on the embedded digits set, with the random controller until all 64 cells were
   trained once (its dedup cache answers repeats), each child trained their way (Adam, learning
   rate 0.001, no weight decay, 10 epochs); then each child's saved weights are scored on the test
   split. Skipped when the table file exists (`--retrain` trains it again).
2. The controllers on that table, each repetition one real `run_search` with the table evaluator
   (a search seed per repetition): `ppo-ak` (their controller: LSTM with 100 hidden units, PPO,
   batches of 20, no probability floor), `ppo` and `reinforce` as edgenas ships them (batches of
   20), the default `predictor` and `random`. Setting (a) validation-accuracy reward; setting (b)
   the same under the hard parameter limit (`--budget`): the largest limit under which no cell has
   two expensive convolutions (5x5 or 7x7), i.e. one parameter below the smallest such cell.
   Per repetition: the episodes (batches of 20) until the batch's mean reward is within 0.5
   points of the best cell's (within the limit in (b)); the children trained until the best cell
   was first trained; and which cell the controller settled on (the most frequent in its last
   batch; for the predictor and random, which never settle, the best one trained), as its rank
   among the cells within the limit.

    python benchmarks/paper_arora_krone.py --reps 100 --results benchmarks/results/paper_arora_krone.json

It prints the tables and writes the results file (header + one line per repetition).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import shutil
import statistics
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from datetime import date
from pathlib import Path

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import papers_page  # noqa: E402  (benchmarks/: renders the docs page's tables)
import torch  # noqa: E402
from _search_export import machine  # noqa: E402
from _table_search import UNTIMED, scratch, table_pipeline  # noqa: E402

from edgenas.evaluators import TableEvaluator  # noqa: E402
from edgenas.loop.run import prepare, run_search  # noqa: E402
from edgenas.reward import RewardConfig  # noqa: E402
from edgenas.run.rundir import DB_NAME  # noqa: E402
from edgenas.run.store import Store  # noqa: E402
from edgenas.settings.pipeline import (  # noqa: E402
    ControllerSettings,
    Pipeline,
    SearchSettings,
    SpaceSettings,
    TrainRecipe,
)
from edgenas.table import Table  # noqa: E402
from edgenas.training.trainer import accuracy  # noqa: E402

TABLE = ROOT / "benchmarks" / "results" / "cell_small_digits.csv"
EXPENSIVE = ("conv5x5", "conv7x7")
BATCH = 20
# name -> (controller, options): their controller, and edgenas's as shipped
STRATEGIES = {
    "ppo-ak": ("ppo", {"hidden_size": 100, "probability_floor": 0.0}),
    "ppo": ("ppo", {}),
    "reinforce": ("reinforce", {}),
    "predictor": ("predictor", {}),
    "random": ("random", {}),
}
DEFAULT_STRATEGIES = ("ppo-ak", "predictor", "random")
SETTLING = ("ppo-ak", "ppo", "reinforce")  # policies that can settle on one cell
_STATE: dict = {}


def build_table(path: Path, seed: int) -> None:
    """Train each of the 64 cells once, their way, through a real search; write the table."""
    torch.set_num_threads(max(1, (os.cpu_count() or 1)))
    work = scratch("edgenas-ak-")
    recipe = TrainRecipe(epochs=10, optimizer="adam", learning_rate=0.001, weight_decay=0.0)
    pipe = Pipeline(
        search=SearchSettings(
            profile=str(work / UNTIMED),
            device="cpu",
            runs_dir=str(work / "runs"),
            seed=seed,
            children=5000,
            max_evaluated=64,
            templates=False,
        ),
        space=SpaceSettings(name="cell-small"),
        controller=ControllerSettings(name="random"),
        training=recipe,
        reward=RewardConfig(budget_params=None),
    )
    prepared = prepare(pipe)
    t0 = time.perf_counter()
    result = run_search(pipe, run_name="table", prepared=prepared)
    with Store(result.run_dir / DB_NAME) as store:
        trials = store.trials("ok")
    data, space = prepared.data, prepared.space
    rows = []
    for t in trials:
        arch = space.arch_from_json(t.arch)
        model = space.build(arch)
        model.load_state_dict(torch.load(result.run_dir / t.weights_path, map_location="cpu"))
        test = accuracy(model.eval(), data.x_test, data.y_test)
        rows.append((str(arch), 100 * t.val_accuracy, 100 * test, t.params, round(t.train_seconds or 0.0, 2)))
    if len(rows) != 64:
        raise SystemExit(f"the search trained {len(rows)} of the 64 cells; raise children")
    rows.sort()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["arch", "digits-val", "digits-test", "params", "train_seconds"])
        w.writerows(rows)
    tmp.replace(path)
    print(f"table: 64 cells trained in {time.perf_counter() - t0:.0f} s -> {path}", file=sys.stderr)


def the_limit(table: dict[str, dict[str, float]]) -> int:
    """One parameter below the smallest cell with two expensive convolutions."""
    two = [int(r["params"]) for a, r in table.items() if sum(op in EXPENSIVE for op in a.split(">")) == 2]
    return min(two) - 1


def _setup(table_path: str) -> None:
    torch.set_num_threads(1)
    rows = papers_page.read_cells(Path(table_path))
    limit = the_limit(rows)
    base = table_pipeline(
        "edgenas-ak-", table_path, "cell-small", "digits-val", "digits-test", table_input="1x8x8", templates=False
    )
    # the pipeline and its prepared search, without and with the limit
    bases = {None: base, limit: dataclasses.replace(base, reward=RewardConfig(budget_params=limit))}
    prepared = {key: prepare(pipe) for key, pipe in bases.items()}
    _STATE.update(bases=bases, prepared=prepared, rows=rows, limit=limit)


def run_one(job: tuple[str, bool, int, int]) -> dict:
    """One repetition: one search on the table; what it did, episode by episode."""
    strategy, limited, seed, episodes = job
    rows, limit = _STATE["rows"], _STATE["limit"] if limited else None
    prepared = _STATE["prepared"][limit]
    name, options = STRATEGIES[strategy]
    base = _STATE["bases"][limit]
    settles = strategy in SETTLING
    allowed = {a: r for a, r in rows.items() if limit is None or r["params"] <= limit}
    pipe = dataclasses.replace(
        base,
        search=dataclasses.replace(
            base.search,
            seed=seed,
            architectures_per_update=BATCH,
            children=BATCH * episodes,
            max_evaluated=None if settles else len(allowed),  # every cell within the limit, then stop
        ),
        controller=ControllerSettings(name=name, options=options),
    )
    t0 = time.perf_counter()
    table: Table = prepared.table
    result = run_search(
        pipe, run_name=f"{strategy}-{seed}", prepared=prepared, evaluator=TableEvaluator(table, prepared.space)
    )
    with Store(result.run_dir / DB_NAME) as store:
        trials = {t.id: t for t in store.trials()}
        samples = [(r["update_index"], trials[r["trial_id"]]) for r in store.samples()]
    shutil.rmtree(result.run_dir)
    ranked = sorted(allowed, key=lambda a: -allowed[a]["digits-val"])
    best = ranked[0]
    by_update: dict[int, list[float]] = {}
    for u, t in samples:
        by_update.setdefault(u, []).append(rows[str(_arch(t))]["digits-val"] if t.status == "ok" else 0.0)
    means = [statistics.fmean(by_update[u]) for u in sorted(by_update)]
    within = next((i + 1 for i, m in enumerate(means) if m >= allowed[best]["digits-val"] - 0.5), None)
    trained: list[str] = []
    for t in sorted(trials.values(), key=lambda t: t.id):
        if t.status == "ok":
            trained.append(str(_arch(t)))
    top = allowed[best]["digits-val"]  # cells that tie with the best count as the best
    first_best = next((i + 1 for i, a in enumerate(trained) if a in allowed and allowed[a]["digits-val"] == top), None)
    if settles:
        last = max(by_update)
        last_cells = Counter(str(_arch(t)) for u, t in samples if u == last)
        settled = last_cells.most_common(1)[0][0]
    else:
        settled = max(trained, key=lambda a: rows[a]["digits-val"])
    return {
        "strategy": strategy,
        "limited": limited,
        "seed": seed,
        "episodes": len(means),
        "batch_means": [round(m, 3) for m in means],
        "episodes_to_within_0.5": within,
        "trained_until_best": first_best,
        "settled": settled,
        "settled_rank": rank(allowed, settled),
        "seconds": round(time.perf_counter() - t0, 2),
    }


def rank(allowed: dict[str, dict[str, float]], cell: str) -> int | None:
    """1 + how many distinct validation accuracies within the limit beat the cell's (cells that
    tie share a rank; the validation split of digits has 270 images, so ties happen); None: the
    cell is over the limit."""
    if cell not in allowed:
        return None
    return 1 + len({r["digits-val"] for r in allowed.values() if r["digits-val"] > allowed[cell]["digits-val"]})


def _arch(trial) -> str:
    space = _STATE["prepared"][None].space
    return str(space.arch_from_json(trial.arch))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--table-out", default=str(TABLE))
    ap.add_argument("--retrain", action="store_true", help="train the 64 cells again even if the table exists")
    ap.add_argument("--table-seed", type=int, default=0)
    ap.add_argument("--reps", type=int, default=100, help="repetitions of predictor and random")
    ap.add_argument("--policy-reps", type=int, default=100, help="repetitions of ppo-ak, ppo and reinforce")
    ap.add_argument("--episodes", type=int, default=300, help="batches of 20 per PPO / REINFORCE repetition")
    ap.add_argument("--strategies", default=",".join(DEFAULT_STRATEGIES), help=f"of {', '.join(STRATEGIES)}")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--results", help="write the results file here (header + one repetition per line)")
    ap.add_argument(
        "--log",
        help="append each repetition to this JSON-lines file as it finishes, and skip the ones it already holds "
        "(a run stopped half-way goes on where it stopped)",
    )
    args = ap.parse_args()
    table = Path(args.table_out)
    t0 = time.perf_counter()
    if args.retrain or not table.exists():
        build_table(table, args.table_seed)
    strategies = args.strategies.split(",")
    jobs = [
        (s, lim, seed, args.episodes)
        for s in strategies
        for lim in (False, True)
        for seed in range(args.policy_reps if s in SETTLING else args.reps)
    ]
    records = []
    if args.log and Path(args.log).exists():
        wanted = {(s, lim, seed) for s, lim, seed, _ in jobs}
        for line in Path(args.log).read_text().splitlines():
            rec = json.loads(line)
            if (rec["strategy"], rec["limited"], rec["seed"]) in wanted and rec["episodes"] <= args.episodes:
                wanted.discard((rec["strategy"], rec["limited"], rec["seed"]))
                records.append(rec)
        jobs = [j for j in jobs if (j[0], j[1], j[2]) in wanted]
        print(f"  {len(records)} repetitions read from {args.log}", file=sys.stderr, flush=True)
    with ProcessPoolExecutor(args.workers, initializer=_setup, initargs=(str(table),)) as pool:
        for i, rec in enumerate(pool.map(run_one, jobs, chunksize=1), 1):
            records.append(rec)
            if args.log:
                with open(args.log, "a") as f:
                    f.write(json.dumps(rec) + "\n")
            if i % 50 == 0 or i == len(jobs):
                print(f"  {i}/{len(jobs)} repetitions, {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    rows = papers_page.read_cells(table)
    limit = the_limit(rows)
    head = {"limit_params": limit, "strategies": strategies}
    lines = [papers_page.arora_krone(lim, head, records, rows) for lim in (False, True)]
    print("\n\n".join(lines))
    print(f"wall {time.perf_counter() - t0:.0f} s")
    if args.results:
        header = {
            "command": "python " + " ".join(sys.argv),
            "date": date.today().isoformat(),
            "machine": machine(),
            "table": str(table.relative_to(ROOT)) if table.is_relative_to(ROOT) else str(table),
            "limit_params": limit,
            "strategies": strategies,
            "batch": BATCH,
            "episodes": args.episodes,
            "summary": "\n\n".join(lines),
        }
        out = Path(args.results)
        tmp = out.with_suffix(".tmp")
        tmp.write_text("\n".join([json.dumps(header)] + [json.dumps(r) for r in records]) + "\n")
        tmp.replace(out)


if __name__ == "__main__":
    main()
