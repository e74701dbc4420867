"""The tables of docs/benchmarks/papers.md, rendered from the results files that own their numbers.

Each table sits in the page between `<!-- results:NAME -->` and `<!-- /results -->`; everything
else on the page is prose. `python benchmarks/papers_page.py` rewrites the tables from
benchmarks/results/; tests/test_papers_page.py renders them again and fails if the page differs
(a re-run benchmark whose numbers did not reach the page, or a number edited by hand).
"""

from __future__ import annotations

import json
import re
import statistics
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PAGE = ROOT / "docs" / "benchmarks" / "papers.md"
BUDGETS = (25, 50, 100, 200, 400)
REPLAY = 'reinforce:{"replay_size":8,"replay_count":2}'
BLOCK = re.compile(r"(<!-- results:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /results -->)", re.S)


def _results(name: str) -> dict:
    """benchmarks/results/NAME, read as JSON."""
    return json.loads((RESULTS / name).read_text())


def _pm(pair: list[float]) -> str:
    """A [mean, standard deviation] pair as the tables print it."""
    return f"{pair[0]:.3f} ± {pair[1]:.3f}"


def _lines(path: Path) -> tuple[dict, list[dict]]:
    head, *rest = path.read_text().splitlines()
    return json.loads(head), [json.loads(line) for line in rest if line.strip()]


def arora_krone(
    limited: bool, head: dict | None = None, records: list[dict] | None = None, rows: dict | None = None
) -> str:
    if head is None:
        head, records = _lines(RESULTS / "paper_arora_krone.json")
    rows = rows or read_cells()
    limit = head["limit_params"]
    allowed = {a: r for a, r in rows.items() if not limited or r["params"] <= limit}
    values = sorted({r["digits-val"] for r in allowed.values()}, reverse=True)

    def cells(v: float) -> str:
        return ", ".join(f"`{a}`" for a in sorted(allowed) if allowed[a]["digits-val"] == v) + f" ({v:.2f} %)"

    out = [
        f"Best cell{' within the limit' if limited else ''} by validation accuracy: {cells(values[0])}; "
        f"second: {cells(values[1])}"
        + (f"; limit {limit:,} parameters, {len(allowed)} of the 64 cells within it." if limited else "."),
        "",
        "| controller | repetitions | episodes until the batch mean is within 0.5 points (median; runs that got there) "
        "| children trained until the best cell was (median) | settled on the best / second / another cell |",
        "|---|---|---|---|---|",
    ]
    for strategy in head["strategies"]:
        recs = [r for r in records if r["strategy"] == strategy and r["limited"] == limited]
        if not recs:
            continue
        reached = [r["episodes_to_within_0.5"] for r in recs if r["episodes_to_within_0.5"] is not None]
        episodes = (
            f"{statistics.median(reached):.0f} ({len(reached)}/{len(recs)})" if reached else f"never (0/{len(recs)})"
        )
        found = [r["trained_until_best"] for r in recs if r["trained_until_best"] is not None]
        trained = f"{statistics.median(found):.0f} ({len(found)}/{len(recs)})" if found else "never"
        ranks = Counter(min(r["settled_rank"] or 3, 3) for r in recs)
        out.append(f"| `{strategy}` | {len(recs)} | {episodes} | {trained} | {ranks[1]} / {ranks[2]} / {ranks[3]} |")
    return "\n".join(out)


def read_cells(path: Path = RESULTS / "cell_small_digits.csv") -> dict[str, dict[str, float]]:
    """The Arora & Krone cell table: cell string -> its numeric columns."""
    import csv

    with path.open(newline="") as f:
        return {r["arch"]: {k: float(v) for k, v in r.items() if k != "arch"} for r in csv.DictReader(f)}


def cell_table_summary() -> str:
    head, _ = _lines(RESULTS / "paper_arora_krone.json")
    rows = read_cells()
    vals = sorted((r["digits-val"] for r in rows.values()), reverse=True)
    tests = [r["digits-test"] for r in rows.values()]
    secs = sum(r["train_seconds"] for r in rows.values())
    return (
        f"64 cells trained, {secs / 60:.1f} minutes of training in all; validation accuracy "
        f"{vals[-1]:.2f}-{vals[0]:.2f} % (median {statistics.median(vals):.2f} %), test "
        f"{min(tests):.2f}-{max(tests):.2f} %. Controllers on the table: {head['date']}, {head['machine']}; "
        f"`{head['command']}`."
    )


def replay_nb201() -> str:
    data = _results("sample_efficiency.json")
    out = [
        "| controller | repetitions | " + " | ".join(f"after {b}" for b in BUDGETS) + " |",
        "|---|---|" + "---|" * len(BUDGETS),
    ]
    for strategy, label in (
        ("reinforce", "`reinforce`"),
        (REPLAY, "`reinforce` + replay (8 kept, 2 per batch)"),
        ("random", "`random`"),
    ):
        reps = [r for r in data["repetitions"] if r["strategy"] == strategy and not r["constrained"] and r["m"] == 8]
        cells = []
        for j in range(len(BUDGETS)):
            col = [r["accs"][j] for r in reps if r["accs"][j] == r["accs"][j]]  # NaN: stopped short
            cells.append(f"{statistics.fmean(col):.2f} ± {statistics.pstdev(col):.2f}" if col else "-")
        out.append(f"| {label} | {len(reps)} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def _search_rows(rows: list[dict], label_key: str, labels: dict, seeds: bool = False) -> list[str]:
    first = "| seed " if seeds else ""
    out = [
        first + "| reward | test accuracy | parameters | MFLOPs | `cpu-arm` latency (ms, predicted) | children trained "
        "| winner |",
        "|---" * (8 if seeds else 7) + "|",
    ]
    for r in rows:
        out.append(
            (f"| {r['seed']} " if seeds else "")
            + f"| {labels[r[label_key]]} | {100 * r['test_accuracy']:.2f} % | {r['params']:,} | {r['flops'] / 1e6:.2f} | "
            f"{r['latency_ms_cpu_arm']:.3f} | {r['trained']} | `{r['architecture']}` |"
        )
    return out


def md_changes(data: dict) -> dict[str, list[float]]:
    """Mohandoss & Dwivedi: the multi-objective winner against accuracy alone's, per seed (params
    and FLOPs as fractions, test points)."""
    return {k: [r[k] for r in data["runs"]] for k in ("params_change", "flops_change", "test_points")}


def _mean_sd(values: list[float], scale: float = 1.0, fmt: str = "+.0f") -> str:
    m = statistics.fmean(values) * scale
    sd = statistics.stdev(values) * scale if len(values) > 1 else 0.0
    return f"{m:{fmt}} ± {sd:{fmt[1:]}}"


def mohandoss_dwivedi() -> str:
    data = _results("paper_mohandoss_dwivedi.json")
    s = data["scale"]
    rows = [r for run in data["runs"] for r in run["rows"]]
    out = _search_rows(
        rows,
        "reward",
        {"accuracy": "accuracy alone", "multi": f"accuracy − {s['l1']} × Mparams − {s['l2']} × MFLOPs"},
        seeds=True,
    )
    ch = md_changes(data)
    per_seed = "; ".join(
        f"seed {run['seed']}: {100 * run['params_change']:+.0f} % parameters, {100 * run['flops_change']:+.0f} % FLOPs, "
        f"{run['test_points']:+.2f} points"
        for run in data["runs"]
    )
    out += [
        "",
        f"The multi-objective winner against accuracy alone's, per seed: {per_seed}. Mean ± sd over the "
        f"{len(data['runs'])} seeds: parameters {_mean_sd(ch['params_change'], 100)} %, FLOPs "
        f"{_mean_sd(ch['flops_change'], 100)} %, test accuracy {_mean_sd(ch['test_points'], fmt='+.2f')} points. "
        f"Scale: {s['max_images']:,} images, {s['children']} children of {s['epochs']} epochs per search, batches of "
        f"{s['per_update']}, winners trained {s['final_epochs']} epochs; {data['date']}, {data['machine']}.",
    ]
    return "\n".join(out)


def xu_blocks() -> str:
    data = _results("paper_xu.json")
    s = data["scale"]
    out = _search_rows(data["blocks"], "replay", {False: "no replay", True: "replay (8 kept, 2 per batch)"})
    out[0] = out[0].replace("| reward |", "| controller |")
    out += [
        "",
        f"Scale: {s['max_images']:,} images, {s['children']} children of {s['epochs']} epochs, batches of "
        f"{s['per_update']}, winners trained {s['final_epochs']} epochs; one run each; {data['date']}, {data['machine']}.",
    ]
    return "\n".join(out)


def zoph_le_search() -> str:
    """The recurrent-cell searches: the best validation pick's test perplexity and the top five's
    validation perplexity after N distinct cells, per controller."""
    data = _results("paper_zoph_le.json")
    t, sr = data["table"], data["search"]
    checkpoints = sorted({int(k.split("@")[1]) for m in sr["summary"].values() for k in m})
    out = [
        f"The table: {t['cells']} cells; best by validation `{t['best']}` (validation perplexity "
        f"{t['best_val_ppl']:.3f}, test {t['best_test_ppl']:.3f}); median validation perplexity "
        f"{t['median_val_ppl']:.3f}.",
        "",
        "| controller | "
        + " | ".join(f"test ppl of the pick after {n}" for n in checkpoints)
        + " | "
        + " | ".join(f"top-5 val ppl after {n}" for n in checkpoints)
        + " |",
        "|---|" + "---|" * (2 * len(checkpoints)),
    ]
    for strategy, m in sr["summary"].items():
        cells = [_pm(m[f"{metric}@{n}"]) for metric in ("test_ppl_of_pick", "top5_val_ppl") for n in checkpoints]
        out.append(f"| `{strategy}` | " + " | ".join(cells) + " |")
    out += [
        "",
        f"Mean ± standard deviation over {sr['reps']} search seeds, batches of {sr['per_update']}; "
        f"{data['date']}, {data['machine']}.",
    ]
    return "\n".join(out)


def zoph_le_versus() -> str:
    """The cell REINFORCE picks most often against an LSTM of about its size and the tanh RNN."""
    data = _results("paper_zoph_le.json")
    names = {"lstm": "LSTM", "elman": "tanh RNN (Elman)"}
    out = ["| recurrent cell | parameters | test perplexity (mean ± sd) | seeds |", "|---|---|---|---|"]
    for name, v in data["versus"].items():
        label = names.get(
            name, f"`{name}` (REINFORCE's pick in {100 * data['reinforce_pick_share']:.0f} % of its searches)"
        )
        out.append(f"| {label} | {v['params']:,} | {_pm(v['test_ppl'])} | {len(v['runs'])} |")
    r = data["recipe"]
    out += [
        "",
        f"Each trained {r['final_epochs']} epochs ({r['optimizer']}, truncated back-propagation over {r['bptt']} "
        f"characters, batch {r['batch']}, hidden {r['hidden']} for the cells); {data['date']}, {data['machine']}.",
    ]
    return "\n".join(out)


def summary() -> str:
    """One row per paper: their claim, ours, the command, the date and the machine."""
    head, records = _lines(RESULTS / "paper_arora_krone.json")
    lim = [r for r in records if r["strategy"] == "ppo-ak" and r["limited"]]
    reached = [r["episodes_to_within_0.5"] for r in lim if r["episodes_to_within_0.5"] is not None]
    ranks = Counter(min(r["settled_rank"] or 3, 3) for r in lim)
    md = _results("paper_mohandoss_dwivedi.json")
    ch = md_changes(md)
    se = _results("sample_efficiency.json")["repetitions"]

    def at25(strategy: str, budget: int = 0) -> float:
        return statistics.fmean(r["accs"][budget] for r in se if r["strategy"] == strategy and not r["constrained"])

    xu = _results("paper_xu.json")
    zl = _results("paper_zoph_le.json")
    zs = zl["search"]["summary"]
    cell, lstm = zl["versus"][zl["reinforce_pick"]], zl["versus"]["lstm"]
    early = 16
    rows = [
        ("Arora & Krone (a, b)", "batch mean within 0.5 points of the best after about 200 episodes; the second-best "
         "cell under the limit",
         f"under the limit: {statistics.median(reached):.0f} episodes (median, {len(reached)}/{len(lim)} runs); settled "
         f"on the best / second / another cell in {ranks[1]} / {ranks[2]} / {ranks[3]} runs",
         "`benchmarks/paper_arora_krone.py`", f"{head['date']}, {head['machine']}"),
        ("Mohandoss & Dwivedi", "multi-objective winner 33 % smaller at 0.75 points less accuracy",
         f"{_mean_sd(ch['params_change'], 100)} % parameters, {_mean_sd(ch['flops_change'], 100)} % FLOPs, "
         f"{_mean_sd(ch['test_points'], fmt='+.2f')} points (mean ± sd, {len(md['runs'])} seeds)",
         "`benchmarks/paper_mohandoss_dwivedi.py`", f"{md['date']}, {md['machine']}"),
        ("Xu (replay)", "86.13 % on CIFAR-10 after 437 children (GPU)",
         f"NB201, after 25 networks: {at25('reinforce'):.2f} without replay, {at25(REPLAY):.2f} with (100 seeds)",
         "`benchmarks/paper_xu.py`", f"{xu['date']}, {xu['machine']}"),
        ("Zoph & Le (CNN)", "REINFORCE beats random search",
         f"NB201, after 25 / 400 networks: {at25('reinforce'):.2f} / {at25('reinforce', 4):.2f} against random's "
         f"{at25('random'):.2f} / {at25('random', 4):.2f} (100 seeds)", "`benchmarks/sample_efficiency.py`", "2026-12-03, AMD EPYC, 2 cores"),
        ("Zoph & Le (recurrent cell)", "a searched cell outperforms the LSTM (Penn Treebank, 62.4 test perplexity); "
         "better than random search over time",
         f"characters of Python's documentation: the cell REINFORCE picks most often {cell['test_ppl'][0]:.2f} test "
         f"perplexity against the LSTM's {lstm['test_ppl'][0]:.2f} at about the same size ({len(cell['runs'])} seeds); "
         f"pick after {early} cells: REINFORCE {zs['reinforce'][f'test_ppl_of_pick@{early}'][0]:.3f}, random "
         f"{zs['random'][f'test_ppl_of_pick@{early}'][0]:.3f} ({zl['search']['reps']} seeds)",
         "`benchmarks/paper_zoph_le.py`", f"{zl['date']}, {zl['machine']}"),
    ]  # fmt: skip
    out = ["| paper | their claim | ours | command | measured |", "|---|---|---|---|---|"]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(out)


TABLES = {
    "summary": summary,
    "ak-cells": cell_table_summary,
    "ak-a": lambda: arora_krone(False),
    "ak-b": lambda: arora_krone(True),
    "xu-nb201": replay_nb201,
    "xu-blocks": xu_blocks,
    "md": mohandoss_dwivedi,
    "zl-search": zoph_le_search,
    "zl-versus": zoph_le_versus,
}


def blocks(text: str) -> dict[str, str]:
    return {m["name"]: m["body"].rstrip("\n") for m in BLOCK.finditer(text)}


def render(text: str) -> str:
    def one(m: re.Match) -> str:
        return m.group(1) + TABLES[m["name"]]() + "\n" + m.group(4)

    return BLOCK.sub(one, text)


def main() -> None:
    text = PAGE.read_text()
    missing = [name for name in blocks(text) if name not in TABLES]
    if missing:
        sys.exit(f"{PAGE} names tables this script does not render: {', '.join(missing)}")
    PAGE.write_text(render(text))
    print(f"{PAGE}: {len(blocks(text))} tables rendered from {RESULTS}")


if __name__ == "__main__":
    main()
