"""Sample efficiency of every controller on the NAS-Bench-201 table (CIFAR-10, 12 epochs).

Each repetition is one real `edgenas search --space nb201 --table ...` (`run_search` with the
table evaluator, an untimed profile, a run directory and its SQLite store): the controller
proposes batches of m, the product's gate rejects what is over a hard budget before evaluation,
its dedup cache answers duplicates (by the space's isomorphism-aware key) from what was already
evaluated, and the search stops once B distinct networks were evaluated (`max_evaluated`) or
after 30 x B proposals. The best-validation network among the first B evaluated trials is picked
and its test accuracy reported. Optuna's TPE sampler (a benchmark-only dependency) runs through
the same loop as a controller that asks and tells one trial at a time (m = 1).

A second table gives the same picks scored by the picked network's test accuracy averaged over
its isomorphic strings: NB201 trained every string on its own, and a search that counts a
network once sees the numbers of whichever string it proposed first (under --constrained the
best network has 65 strings, test 87.10-87.93).

With --constrained, networks with more parameters than the space's median are rejected before
evaluation (`--budget`: reward = reject value, never counted as an evaluation), for every
strategy alike. The controllers are told the limit as `edgenas search --budget` tells them; the
predictor then proposes only networks within it, the others learn from the rejections
(`--no-feasibility`: nobody is told). Optuna's TPE cannot be told before it asks.

    python benchmarks/sample_efficiency.py --reps 100
    python benchmarks/sample_efficiency.py --reps 100 --constrained --log /tmp/se-constrained.jsonl

--results FILE (with --log) puts the log's repetitions of this setting into the kept results file
(benchmarks/results/sample_efficiency.json: a header, then one repetition per line), replacing
that file's repetitions of the same strategies and setting and keeping every other one; the file
is replaced in one step, so an interrupted write leaves the old one. Its "measured" text (which
seeds ran where) is edited by hand.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import shutil
import statistics
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

# One core per repetition: each worker process runs one search, and BLAS threads of two workers
# on two cores only spin against each other (the surrogate's Cholesky factorisations).
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _table_search import table_pipeline  # noqa: E402

from edgenas.controllers.base import CONTROLLERS, Controller  # noqa: E402
from edgenas.evaluators import TableEvaluator  # noqa: E402
from edgenas.loop.run import prepare, run_search  # noqa: E402
from edgenas.reward import RewardConfig  # noqa: E402
from edgenas.run.rundir import DB_NAME  # noqa: E402
from edgenas.run.store import Store  # noqa: E402
from edgenas.settings.pipeline import ControllerSettings  # noqa: E402
from edgenas.spaces.nb201 import OPS, NB201Arch  # noqa: E402

TABLE = ROOT.parent / "shared" / "data" / "nb201-cifar-12epoch.csv"
BUDGETS = (25, 50, 100, 200, 400)
_STATE: dict = {}


class TPEController(Controller):
    """Optuna's TPE sampler behind the controller interface: each proposal is one `ask`, each
    result one `tell` (the search runs it with m = 1, one trial at a time)."""

    name = "optuna-tpe"

    def __init__(self, space, seed: int = 0) -> None:
        import optuna

        super().__init__(space, seed)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
        self.asked: list = []

    def propose(self, n: int, history) -> list[list[int]]:
        self.asked = [self.study.ask() for _ in range(n)]
        return [[OPS.index(t.suggest_categorical(f"edge{i}", OPS)) for i in range(6)] for t in self.asked]

    def learn(self, history):
        for trial, reward in zip(self.asked, history.last()[1]):
            self.study.tell(trial, reward)
        return {}


def _untold(name: str) -> str:
    """A registered twin of controller `name` that is never told the search's limit."""
    twin = f"{name}-untold"
    if twin not in CONTROLLERS:
        base = CONTROLLERS.get(name)
        CONTROLLERS.register(
            type(f"Untold{base.__name__}", (base,), {"name": twin, "set_feasibility": lambda self, check: None})
        )
    return twin


def _count_costs(texts: list[str], space_args: tuple) -> dict[str, tuple[int, int]]:
    """(params, MACs) of each cell string's network, as the product's gate counts them."""
    import torch

    from edgenas.hardware.cost import static_cost
    from edgenas.spaces.nb201 import NB201Space

    torch.set_num_threads(1)
    space = NB201Space(*space_args)
    out = {}
    for text in texts:
        arch = NB201Arch.parse(text)
        cost = static_cost(space.build(arch), space.input_shape)
        out[arch.key()] = (cost.params, cost.macs)
    return out


def table_costs(texts: list[str], workers: int, space) -> dict[str, tuple[int, int]]:
    """Static cost of every distinct network among the table's cell strings `texts`, counted once
    for all repetitions
    (each worker would otherwise build and count all ~6,300 on its own, ~7 minutes per worker
    per table). Kept in the temp directory under a name that hashes the networks and the code and
    versions the counts depend on, so a change to the space or the counter counts again."""
    import hashlib
    import tempfile

    import thop
    import torch

    h = hashlib.sha256()
    for rel in ("edgenas/spaces/nb201.py", "edgenas/hardware/cost.py"):
        h.update((ROOT / rel).read_bytes())
    space_args = (space.input_shape, space.num_classes, space.channels, space.cells_per_stage)
    first: dict[str, str] = {}
    for text in texts:
        first.setdefault(NB201Arch.parse(text).key(), text)
    texts = list(first.values())
    h.update(f"{torch.__version__} {getattr(thop, '__version__', '')} {space_args} {texts}".encode())
    path = Path(tempfile.gettempdir()) / f"edgenas-se-nb201-costs-{h.hexdigest()[:16]}.json"
    if path.exists():
        return {k: tuple(v) for k, v in json.loads(path.read_text()).items()}
    t0 = time.perf_counter()
    chunks = [texts[i::workers] for i in range(workers)]
    costs: dict[str, tuple[int, int]] = {}
    with ProcessPoolExecutor(workers) as pool:
        for part in pool.map(_count_costs, chunks, [space_args] * workers):
            costs.update(part)
    print(f"  static costs of {len(costs)} networks counted in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(costs))
    tmp.replace(path)
    return costs


def _setup(table_path: str, constrained: bool, tell: bool = True, costs: dict | None = None) -> None:

    import torch

    from edgenas.evaluate import prime_cost_cache
    from edgenas.hardware.cost import StaticCost

    torch.set_num_threads(1)
    if "optuna-tpe" not in CONTROLLERS:
        CONTROLLERS.register(TPEController)
    base = table_pipeline("edgenas-se-", table_path, "nb201", "cifar10-val", "cifar10-test")
    prepared = prepare(base)
    table = prepared.table
    limit = None
    if constrained:
        params = {k: nb201_params(NB201Arch.parse(k)) for k in table.rows}
        limit = statistics.median(params.values())
        # the product's gate counts built networks; params are integers, so "> median" == "> floor(median)"
        base = dataclasses.replace(base, reward=RewardConfig(budget_params=int(limit)))
        prepared = prepare(base)
    # NB201 trained every string on its own, so isomorphic strings (one network) have different
    # numbers; a search that counts a network once gets those of whichever string it proposed
    # first. The network's test accuracy averaged over its strings does not depend on that luck.
    by_key: dict[str, list[float]] = {}
    for text, row in table.rows.items():
        by_key.setdefault(NB201Arch.parse(text).key(), []).append(row["cifar10-test"])
    network_test = {k: statistics.fmean(v) for k, v in by_key.items()}
    if costs:
        prime_cost_cache(prepared.space, {k: StaticCost(params=p, macs=m) for k, (p, m) in costs.items()})
    _STATE.update(base=base, prepared=prepared, table=table, limit=limit, network_test=network_test, tell=tell)


def nb201_params(arch: NB201Arch, c: int = 16, n: int = 5, classes: int = 10) -> int:
    """Exact parameter count of the (pruned) C=16 N=5 network: the skeleton plus each live conv
    (conv weights, no bias, and BatchNorm's weight and bias) in every cell of every stage."""
    from edgenas.spaces.nb201 import live_edges

    stem = 3 * c * 9 + 2 * c
    blocks = 0
    for a, b in ((c, 2 * c), (2 * c, 4 * c)):
        blocks += a * b * 9 + 2 * b + b * b * 9 + 2 * b + a * b  # conv_a, conv_b, 1x1 shortcut
    head = 2 * 4 * c + 4 * c * classes + classes
    cells = 0
    for op, alive in zip(arch.ops, live_edges(arch.ops)):
        if alive and op in ("nor_conv_1x1", "nor_conv_3x3"):
            k = 1 if op == "nor_conv_1x1" else 9
            cells += sum(n * (w * w * k + 2 * w) for w in (c, 2 * c, 4 * c))
    return stem + blocks + head + cells


def run_one(args: tuple[str, int, int, int]) -> tuple[str, int, list[float], list[float], float]:
    """One repetition, one real search: test accuracy of the best-validation network after each
    budget, as the string evaluated first, and averaged over the network's isomorphic strings."""
    strategy, seed, m, max_distinct = args
    name, _, options = strategy.partition(":")
    base, prepared, table = _STATE["base"], _STATE["prepared"], _STATE["table"]
    if _STATE["limit"] is not None and not _STATE["tell"]:
        name = _untold(name)
    pipe = dataclasses.replace(
        base,
        search=dataclasses.replace(
            base.search,
            seed=seed,
            architectures_per_update=1 if name == "optuna-tpe" else m,
            children=30 * max_distinct,
            max_evaluated=max_distinct,
        ),
        controller=ControllerSettings(name=name, options=json.loads(options) if options else {}),
    )
    t0 = time.perf_counter()
    result = run_search(
        pipe, run_name=f"{name}-{seed}", prepared=prepared, evaluator=TableEvaluator(table, prepared.space)
    )
    with Store(result.run_dir / DB_NAME) as store:
        evaluated = store.trials("ok")  # in the order they were evaluated
    shutil.rmtree(result.run_dir)
    picked = [
        (t.val_accuracy, table.lookup(prepared.space, NB201Arch.parse(t.arch["cell"]))[1], t.arch_key)
        for t in evaluated
    ]
    out, network = [], []
    for b in BUDGETS:
        if len(picked) >= b:
            best = max(picked[:b], key=lambda vt: vt[0])
            out.append(100 * best[1])
            network.append(100 * _STATE["network_test"][best[2]] / (100.0 if table.percent["cifar10-test"] else 1.0))
        else:
            out.append(float("nan"))
            network.append(float("nan"))
    return args[0], seed, out, network, time.perf_counter() - t0


def _table(strategies: list[str], results: dict[str, list[list[float]]], seconds: dict[str, float], reps: int) -> None:
    """Mean +- std over the repetitions that reached each budget. A repetition that stops short
    of a budget (its proposals, at most 30 x --max-distinct, kept repeating evaluated networks)
    has no value there; such cells are marked * and their counts printed below the table."""
    print(f"{'strategy':<12}" + "".join(f"{b:>17}" for b in BUDGETS) + f"{'s/rep':>8}")
    short = []
    for s in strategies:
        arr = np.array(results[s])
        cells = []
        for j in range(len(BUDGETS)):
            col = arr[:, j][~np.isnan(arr[:, j])]
            partial = len(col) < len(arr)
            cells.append(f"{col.mean():7.2f} +-{col.std():5.2f}{'*' if partial else ' '}" if len(col) else "-")
            if partial:
                short.append(f"{s} at {BUDGETS[j]}: {len(col)}/{len(arr)}")
        print(f"{s:<12}" + "".join(f"{c:>17}" for c in cells) + f"{seconds[s] / reps:8.1f}")
    if short:
        print("  * mean over the repetitions that reached that many distinct networks: " + ", ".join(short))


def _setting(rec: dict) -> tuple:
    return (rec["m"], rec["max_distinct"], rec["constrained"], rec.get("told", True))


def _row_key(rec: dict) -> tuple:
    """(strategy, m, max_distinct, constrained, told): which row of which table a repetition is of."""
    return (rec["strategy"],) + _setting(rec)


def write_results(path: Path, records: list[dict]) -> Counter:
    """Put `records` (repetitions as --log writes them) into the results file at `path`, replacing
    its repetitions of the same rows; returns the file's repetition counts by row (`_row_key`)."""
    res = json.loads(path.read_text()) if path.exists() else {}
    replaced = {_row_key(r) for r in records}
    kept = [r for r in res.pop("repetitions", []) if _row_key(r) not in replaced]
    reps = kept + sorted(records, key=lambda r: (r["strategy"], r["seed"]))
    head = json.dumps(res)[:-1] + (", " if res else "") + '"repetitions": ['
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(head + ",\n".join(json.dumps(r) for r in reps) + "]}\n")
    os.replace(tmp, path)
    return Counter(map(_row_key, reps))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--table", default=str(TABLE))
    ap.add_argument("--reps", type=int, default=100)
    ap.add_argument("--strategies", default="predictor,optuna-tpe,reinforce,ppo,evolution,random")
    ap.add_argument("--m", type=int, default=8, help="architectures per controller update")
    ap.add_argument("--max-distinct", type=int, default=max(BUDGETS))
    ap.add_argument("--constrained", action="store_true")
    ap.add_argument(
        "--no-feasibility",
        action="store_true",
        help="with --constrained: do not tell the controllers the limit (they learn from rejections only)",
    )
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument(
        "--log",
        help="append each repetition's result to this JSON-lines file, and skip "
        "the repetitions it already holds (a long run killed half-way goes on where it stopped)",
    )
    ap.add_argument(
        "--results",
        help="with --log: afterwards put the log's repetitions of this setting into this results file "
        "(benchmarks/results/sample_efficiency.json), replacing its repetitions of the same strategies and setting",
    )
    args = ap.parse_args()
    if args.results and not args.log:
        ap.error("--results needs --log (the repetitions it writes are the log's)")
    # ';' separates strategies whose options hold commas: 'reinforce:{"replay_size":8,"replay_count":2};'
    strategies = [
        s for s in (args.strategies.split(";") if ";" in args.strategies else args.strategies.split(",")) if s
    ]
    jobs = [(s, seed, args.m, args.max_distinct) for s, seed in itertools.product(strategies, range(args.reps))]
    results: dict[str, list[list[float]]] = {s: [] for s in strategies}
    networks: dict[str, list[list[float]]] = {s: [] for s in strategies}
    seconds: dict[str, float] = {s: 0.0 for s in strategies}
    done: set[tuple[str, int]] = set()
    records: list[dict] = []  # every repetition of this setting, read from the log or run now
    if args.log and Path(args.log).exists():
        for line in Path(args.log).read_text().splitlines():
            rec = json.loads(line)
            same = _setting(rec) == (args.m, args.max_distinct, args.constrained, not args.no_feasibility)
            if (
                same
                and rec["strategy"] in results
                and rec["seed"] < args.reps
                and (rec["strategy"], rec["seed"]) not in done
            ):
                done.add((rec["strategy"], rec["seed"]))
                records.append(rec)
                results[rec["strategy"]].append(rec["accs"])
                networks[rec["strategy"]].append(rec.get("network_accs", [float("nan")] * len(BUDGETS)))
                seconds[rec["strategy"]] += rec["seconds"]
        jobs = [j for j in jobs if (j[0], j[1]) not in done]
        print(f"  {len(done)} repetitions read from {args.log}", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    _setup(args.table, args.constrained)
    costs = table_costs(list(_STATE["table"].rows), args.workers, _STATE["prepared"].space) if jobs else None
    with ProcessPoolExecutor(
        args.workers, initializer=_setup, initargs=(args.table, args.constrained, not args.no_feasibility, costs)
    ) as pool:
        for i, (strategy, seed, accs, network, secs) in enumerate(pool.map(run_one, jobs, chunksize=1), 1):
            results[strategy].append(accs)
            networks[strategy].append(network)
            seconds[strategy] += secs
            rec = {
                "strategy": strategy,
                "seed": seed,
                "m": args.m,
                "max_distinct": args.max_distinct,
                "constrained": args.constrained,
                "told": not args.no_feasibility,
                "accs": accs,
                "network_accs": network,
                "seconds": secs,
            }
            records.append(rec)
            if args.log:
                with open(args.log, "a") as f:
                    f.write(json.dumps(rec) + "\n")
            if i % 25 == 0 or i == len(jobs):
                print(
                    f"  {i}/{len(jobs)} repetitions done, {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True
                )
    best_val = max(
        _STATE["table"].rows.items(),
        key=lambda kv: (
            kv[1]["cifar10-val"]
            if (_STATE["limit"] is None or nb201_params(NB201Arch.parse(kv[0])) <= _STATE["limit"])
            else -1
        ),
    )
    print(
        f"NB201 CIFAR-10 (12 epochs), {args.reps} repetitions, m={args.m}, "
        f"{'params <= median ' + format(_STATE['limit'], ',.0f') if args.constrained else 'unconstrained'}; "
        f"best reachable (test of best-val network): {best_val[1]['cifar10-test']:.2f}"
    )
    twins = [
        row["cifar10-test"]
        for text, row in _STATE["table"].rows.items()
        if NB201Arch.parse(text).key() == NB201Arch.parse(best_val[0]).key()
    ]
    if len(twins) > 1:
        # The table trained every string on its own; a search that counts isomorphic cells once
        # sees the value of whichever of them it proposed first.
        print(
            f"  that network has {len(twins)} isomorphic strings in the table, trained separately: test "
            f"{min(twins):.2f}-{max(twins):.2f}, mean {statistics.fmean(twins):.2f}"
        )
    _table(strategies, results, seconds, args.reps)
    print("the same picks, each network's test accuracy averaged over its isomorphic strings in the table:")
    _table(strategies, networks, seconds, args.reps)
    print(f"wall {time.perf_counter() - t0:.0f} s")
    if args.results:
        counts = write_results(Path(args.results), records)
        print(f"{args.results} now holds: " + ", ".join(f"{k[0]} {k[1:]} x{n}" for k, n in sorted(counts.items())))


if __name__ == "__main__":
    main()
