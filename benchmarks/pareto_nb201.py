"""Multi-objective search on the NAS-Bench-201 table (CIFAR-10, 12 epochs): validation accuracy
(maximised) and FLOPs from the product's builder (minimised).

Each repetition is one real `edgenas search --space nb201 --table ... --objectives
accuracy,flops` (`run_search` with the table evaluator, an untimed profile, a run directory and
its SQLite store), stopped after B distinct networks were evaluated. Strategies, all through
that loop: the default controller (predictor: ParEGO, a random Tchebycheff scalarisation of the
whole history per batch), random search, and Optuna's NSGA-II and multi-objective TPE (a
benchmark-only dependency) as controllers that ask and tell one trial at a time with both
objective values.

For B in 50 / 100 / 200: the front chosen by validation accuracy and FLOPs among the first B
evaluated networks is scored by its hypervolume in (test accuracy, FLOPs), normalised as
(accuracy - 0.5, 1 - FLOPs / max FLOPs of the table), reference point (0, 0): a member below 50 %
test accuracy adds nothing. Also the share of the true front (the non-dominated networks by
validation accuracy and FLOPs over the whole table, as canonical networks) that each
strategy's front at 200 holds. The FLOPs of the whole table come from an additive model per
live edge fitted on five builds and checked against the FLOPs the search recorded for every
evaluated child.

    python benchmarks/pareto_nb201.py --reps 50
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import re
import shutil
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _table_search import table_pipeline  # noqa: E402

from edgenas import pareto  # noqa: E402
from edgenas.controllers.base import CONTROLLERS, Controller  # noqa: E402
from edgenas.evaluators import TableEvaluator  # noqa: E402
from edgenas.loop.run import prepare, run_search  # noqa: E402
from edgenas.reward import RewardConfig  # noqa: E402
from edgenas.run.rundir import DB_NAME  # noqa: E402
from edgenas.run.store import Store  # noqa: E402
from edgenas.settings.pipeline import ControllerSettings  # noqa: E402
from edgenas.spaces.nb201 import OPS, NB201Arch, live_edges  # noqa: E402

TABLE = ROOT.parent / "shared" / "data" / "nb201-cifar-12epoch.csv"
BUDGETS = (50, 100, 200)
ACC_REF = 0.5  # hypervolume reference accuracy (fraction)
_STATE: dict = {}


class OptunaMO(Controller):
    """An Optuna multi-objective sampler behind the controller interface: each proposal is one
    `ask`, each result one `tell` with (validation accuracy, -log FLOPs), both maximised (the
    vectors the search keeps in the history)."""

    sampler = "nsga2"

    def __init__(self, space, seed: int = 0) -> None:
        import optuna

        super().__init__(space, seed)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        sampler = (
            optuna.samplers.NSGAIISampler(seed=seed)
            if self.sampler == "nsga2"
            else optuna.samplers.TPESampler(seed=seed, multivariate=True)
        )
        self.study = optuna.create_study(directions=["maximize", "maximize"], sampler=sampler)
        self.asked: list = []

    def propose(self, n: int, history) -> list[list[int]]:
        self.asked = [self.study.ask() for _ in range(n)]
        return [[OPS.index(t.suggest_categorical(f"edge{i}", OPS)) for i in range(6)] for t in self.asked]

    def learn(self, history):
        actions, _ = history.last()
        for trial, vec in zip(self.asked, [history.vectors.get(tuple(a)) for a in actions]):
            if vec is None:
                self.study.tell(trial, state=__import__("optuna").trial.TrialState.FAIL)
            else:
                self.study.tell(trial, list(vec))
        return {}


class NSGA2Controller(OptunaMO):
    name = "optuna-nsga2"
    sampler = "nsga2"


class MOTPEController(OptunaMO):
    name = "optuna-motpe"
    sampler = "motpe"


def _setup(table_path: str) -> None:

    import torch

    torch.set_num_threads(1)
    for cls in (NSGA2Controller, MOTPEController):
        if cls.name not in CONTROLLERS:
            CONTROLLERS.register(cls)
    base = table_pipeline(
        "edgenas-pareto-", table_path, "nb201", "cifar10-val", "cifar10-test",
        reward=RewardConfig(budget_params=None, objectives=("accuracy", "flops")),
    )  # fmt: skip
    prepared = prepare(base)
    _STATE.update(base=base, prepared=prepared, table=prepared.table)


def flops_model(space) -> tuple[float, dict[str, float]]:
    """FLOPs = base + per live edge the cost of its op, fitted on builds of the product's own
    builder (exact: every edge of a cell works at the same width and resolution)."""
    from edgenas.hardware.cost import static_cost

    def flops(ops):
        return 2 * static_cost(space.build(NB201Arch(tuple(ops))), space.input_shape).macs

    def direct(op):  # one live edge, cell input straight to its output
        return ["none", "none", "none", op, "none", "none"]

    base = flops(direct("skip_connect"))  # a skip costs nothing: the skeleton alone
    per = {"skip_connect": 0.0, "none": 0.0}
    for op in ("nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"):
        per[op] = flops(direct(op)) - base
    return base, per


def table_flops(text: str, base: float, per: dict[str, float]) -> float:
    ops = NB201Arch.parse(text).ops
    return base + sum(per[o] for o, alive in zip(ops, live_edges(ops)) if alive)


def variant_options(strategy: str) -> dict:
    """Controller options of a variant written `name+key=value+key=value` (values as JSON), e.g.
    `predictor+local_share=0.75`: the same controller with other settings, side by side."""
    options = {}
    for part in strategy.split("+")[1:]:
        key, _, value = part.partition("=")
        options[key] = json.loads(value)
    return options


def run_one(args: tuple[str, int, int, int]) -> tuple[str, int, list, float]:
    """One repetition: (arch string, canonical key, val, test, FLOPs as recorded) per evaluated
    network, in evaluation order."""
    strategy, seed, m, max_distinct = args
    base, prepared, table = _STATE["base"], _STATE["prepared"], _STATE["table"]
    pipe = dataclasses.replace(
        base,
        search=dataclasses.replace(
            base.search,
            seed=seed,
            architectures_per_update=1 if strategy.startswith("optuna") else m,
            children=30 * max_distinct,
            max_evaluated=max_distinct,
        ),
        controller=ControllerSettings(name=strategy.split("+")[0], options=variant_options(strategy)),
    )
    t0 = time.perf_counter()
    result = run_search(
        pipe,
        run_name=re.sub(r"[^A-Za-z0-9._-]", "_", f"{strategy}-{seed}"),
        prepared=prepared,
        evaluator=TableEvaluator(table, prepared.space),
    )
    with Store(result.run_dir / DB_NAME) as store:
        evaluated = store.trials("ok")
    shutil.rmtree(result.run_dir)
    rows = [
        (
            t.arch["cell"],
            t.arch_key,
            t.val_accuracy,
            table.lookup(prepared.space, NB201Arch.parse(t.arch["cell"]))[1],  # as a fraction
            t.flops,
        )
        for t in evaluated
    ]
    return strategy, seed, rows, time.perf_counter() - t0


def front_of(rows, n: int) -> list:
    pts = [(r[2], -float(r[4])) for r in rows[:n]]
    return [rows[i] for i in pareto.non_dominated(pts)]


def hv(members, max_flops: float) -> float:
    return pareto.hypervolume([(r[3] - ACC_REF, 1.0 - r[4] / max_flops) for r in members], (0.0, 0.0))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--table", default=str(TABLE))
    ap.add_argument("--reps", type=int, default=50)
    ap.add_argument(
        "--share-reps", type=int, default=None, help="repetitions for the true-front share (default --reps)"
    )
    ap.add_argument(
        "--strategies",
        default="predictor,optuna-nsga2,optuna-motpe,random",
        help="comma-separated; a variant of a controller as name+option=value, e.g. predictor+local_share=0.75",
    )
    ap.add_argument("--m", type=int, default=8, help="architectures per controller update")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--log", help="append each repetition to this JSON-lines file and skip the ones it holds")
    args = ap.parse_args()
    strategies = args.strategies.split(",")
    reps = max(args.reps, args.share_reps or 0)
    jobs = [(s, seed, args.m, max(BUDGETS)) for seed, s in itertools.product(range(reps), strategies)]
    runs: dict[str, dict[int, list]] = {s: {} for s in strategies}
    seconds: dict[str, float] = {s: 0.0 for s in strategies}
    if args.log and Path(args.log).exists():
        for line in Path(args.log).read_text().splitlines():
            rec = json.loads(line)
            if rec["strategy"] in runs and rec["m"] == args.m and rec["seed"] < reps:
                runs[rec["strategy"]][rec["seed"]] = rec["rows"]
                seconds[rec["strategy"]] += rec["seconds"]
        jobs = [j for j in jobs if j[1] not in runs[j[0]]]
    t0 = time.perf_counter()
    with ProcessPoolExecutor(args.workers, initializer=_setup, initargs=(args.table,)) as pool:
        for i, (strategy, seed, rows, secs) in enumerate(pool.map(run_one, jobs, chunksize=1), 1):
            runs[strategy][seed] = rows
            seconds[strategy] += secs
            if args.log:
                with open(args.log, "a") as f:
                    f.write(
                        json.dumps({"strategy": strategy, "seed": seed, "m": args.m, "rows": rows, "seconds": secs})
                    )
                    f.write("\n")
            if i % 20 == 0 or i == len(jobs):
                print(f"  {i}/{len(jobs)} repetitions, {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)

    _setup(args.table)
    space, table = _STATE["prepared"].space, _STATE["table"]
    base, per = flops_model(space)
    recorded = {r[0]: r[4] for rs in runs.values() for rows in rs.values() for r in rows}
    wrong = [t for t, f in recorded.items() if table_flops(t, base, per) != f]
    assert not wrong, f"the additive FLOPs model disagrees with the search's FLOPs for {wrong[:3]}"
    scale = 100.0 if table.percent["cifar10-val"] else 1.0
    everything = [
        (text, NB201Arch.parse(text).key(), row["cifar10-val"] / scale, row["cifar10-test"] / scale,
         table_flops(text, base, per))
        for text, row in table.rows.items()
    ]  # fmt: skip
    max_flops = max(r[4] for r in everything)
    true_front = front_of(everything, len(everything))
    true_keys = {r[1] for r in true_front}
    best_hv = hv(true_front, max_flops)
    print(
        f"NB201 CIFAR-10 (12 epochs), objectives validation accuracy and FLOPs; {args.reps} repetitions, m={args.m} "
        f"({len(recorded)} distinct networks checked: search FLOPs == additive model: {base:,.0f} + per live edge "
        + ", ".join(f"{k} {v:,.0f}" for k, v in per.items() if v)
        + ")"
    )
    print(
        f"hypervolume in (test accuracy - {ACC_REF}, 1 - FLOPs / {max_flops:,.0f}); the whole table's front by "
        f"validation: {len(true_front)} networks, {len(true_keys)} distinct, hypervolume {best_hv:.4f}"
    )
    print(
        f"{'strategy':<14}" + "".join(f"{f'HV at {b}':>18}" for b in BUDGETS) + f"{'true front at 200':>20}{'s/rep':>8}"
    )
    means = {}
    for s in strategies:
        seeds = sorted(runs[s])
        cells = []
        for b in BUDGETS:
            vals = [hv(front_of(runs[s][k], b), max_flops) for k in seeds[: args.reps] if len(runs[s][k]) >= b]
            means[(s, b)] = statistics.fmean(vals)
            cells.append(f"{statistics.fmean(vals):.4f} +- {statistics.pstdev(vals):.4f}")
        share_seeds = seeds[: args.share_reps or args.reps]
        shares = [len({r[1] for r in front_of(runs[s][k], 200)} & true_keys) / len(true_keys) for k in share_seeds]
        cells.append(f"{100 * statistics.fmean(shares):.1f} % ({len(share_seeds)} reps)")
        print(f"{s:<14}" + "".join(f"{c:>18}" for c in cells[:-1]) + f"{cells[-1]:>20}{seconds[s] / len(seeds):8.1f}")
    others = [s for s in strategies if s.startswith("optuna")]
    if "predictor" in strategies and others:
        for b in BUDGETS:
            best = max(others, key=lambda o: means[(o, b)])
            ratio = means[("predictor", b)] / means[(best, b)]
            print(f"  at {b}: predictor / best Optuna ({best}) mean hypervolume = {ratio:.4f}")
    print(f"wall {time.perf_counter() - t0:.0f} s")
    np.seterr(all="ignore")


if __name__ == "__main__":
    main()
