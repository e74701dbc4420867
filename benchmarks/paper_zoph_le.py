"""Zoph & Le's recurrent-cell search at our scale, on a real text that ships with Python.

Their claim (Zoph & Le, ICLR 2017, Penn Treebank): the REINFORCE controller composes a recurrent
cell that outperforms the LSTM (test perplexity 62.4, "3.6 perplexity better than the previous
state-of-the-art model"), and it improves on random search over time (their comparison of the
top models found by policy gradient and by random search).

Penn Treebank cannot be downloaded here. The stand-in: character-level language modelling of
Python's own documentation text (`pydoc_data.topics`, about 465,000 characters of English prose
and code examples, shipped with every CPython), split into train / validation / test.

The space (defined here, not shipped in edgenas: edgenas searches image and sensor networks):
the recurrent cell as ENAS simplified Zoph & Le's (Pham et al. 2018): node 0 reads the input
character's embedding and the previous hidden state, `act0(W x_t + U h_{t-1})`; each further node
reads one earlier node, `act_i(W_i h_j)`; the new hidden state is the mean of the nodes no other
node reads. Activations tanh / ReLU / sigmoid / identity. With three nodes: 4 x (1 x 4) x (2 x 4)
= 128 cells. The searches register it as an edgenas space (`rnn-cell`), so edgenas's own
controllers, loop, dedup and store search it.

What this script does:
1. The table (`--table-out`, kept in benchmarks/results/): every one of the 128 cells trained once
   the same way (Adam 0.002, 2 epochs of truncated back-propagation over 35 characters, batch 32,
   gradient norm clipped at 1; hidden 64, embedding 32), scored by validation and test
   perplexity. The reward is 1 / validation perplexity (Zoph & Le used c / perplexity^2: the same
   order). Skipped when the table exists (`--retrain` trains it again).
2. Search quality over time: `reinforce` (Zoph & Le's REINFORCE with a moving-average baseline,
   edgenas's), `random`, and the default `predictor`, each repetition one real `run_search` with
   the table evaluator, 100 seeds, 64 children in batches of 8: the test perplexity of the best
   validation pick and the mean validation perplexity of the best five found, after 8 / 16 / 32 / 64
   distinct cells.
3. The cell against the LSTM: the cell the searches find most often trained again with three seeds,
   next to an LSTM of about the same number of parameters and the plain tanh RNN (Elman), each
   trained for 6 epochs with the same recipe: test perplexity, mean and spread.

    python benchmarks/paper_zoph_le.py --results benchmarks/results/paper_zoph_le.json
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
import os
import platform
import shutil
import statistics
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Iterator, Sequence

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
from _search_export import machine  # noqa: E402
from _table_search import table_pipeline  # noqa: E402

from edgenas.evaluators import TableEvaluator  # noqa: E402
from edgenas.hardware.cost import count_params as count  # noqa: E402
from edgenas.loop.run import prepare, run_search  # noqa: E402
from edgenas.run.rundir import DB_NAME  # noqa: E402
from edgenas.run.store import Store  # noqa: E402
from edgenas.settings.pipeline import ControllerSettings  # noqa: E402
from edgenas.spaces.base import SPACES, Decision, DecisionKind, SearchSpace  # noqa: E402

TABLE = ROOT / "benchmarks" / "results" / "rnn_cell_pydoc.csv"
ACTS = ("tanh", "relu", "sigmoid", "identity")
NODES = 3
HIDDEN, EMBED = 64, 32
BPTT, BATCH, EPOCHS, LR, CLIP = 35, 32, 2, 0.002, 1.0
FINAL_EPOCHS = 6  # the final comparison's training (the table's is EPOCHS)
TRAIN_CHARS = 200_000
CHILDREN, PER_UPDATE = 64, 8
CHECKPOINTS = (8, 16, 32, 64)
STRATEGIES = ("reinforce", "random", "predictor")


# ---------------------------------------------------------------- the text


def corpus() -> tuple[str, list[str]]:
    """Python's documentation topics (pydoc_data.topics, which differ between Python versions:
    the results file records the version), joined in key order; the characters used."""
    import pydoc_data.topics as topics

    text = "\n".join(topics.topics[k] for k in sorted(topics.topics))
    return text, sorted(set(text))


def splits() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """Train / validation / test by position (80 / 10 / 10), the training part cut at TRAIN_CHARS."""
    text, chars = corpus()
    index = {c: i for i, c in enumerate(chars)}
    ids = torch.tensor([index[c] for c in text], dtype=torch.long)
    n = len(ids)
    train, val, test = ids[: int(0.8 * n)], ids[int(0.8 * n) : int(0.9 * n)], ids[int(0.9 * n) :]
    return train[:TRAIN_CHARS], val, test, len(chars)


# ---------------------------------------------------------------- the space


@dataclass(frozen=True)
class RnnCellArch:
    acts: tuple[str, ...]  # one per node
    inputs: tuple[int, ...]  # nodes 1..: the earlier node each reads

    def key(self) -> str:
        return "rnn-cell|" + str(self)

    def to_json(self) -> dict[str, Any]:
        return {"acts": list(self.acts), "inputs": list(self.inputs)}

    def __str__(self) -> str:
        return "/".join([self.acts[0]] + [f"{a}({j})" for a, j in zip(self.acts[1:], self.inputs)])

    @property
    def loose_ends(self) -> tuple[int, ...]:
        return tuple(i for i in range(len(self.acts)) if i not in self.inputs)


_ACT = {"tanh": torch.tanh, "relu": torch.relu, "sigmoid": torch.sigmoid, "identity": lambda x: x}


class RecurrentCell(nn.Module):
    def __init__(self, arch: RnnCellArch, n_in: int, hidden: int) -> None:
        super().__init__()
        self.arch = arch
        self.x2h = nn.Linear(n_in, hidden)
        self.h2h = nn.Linear(hidden, hidden, bias=False)
        self.nodes = nn.ModuleList(nn.Linear(hidden, hidden) for _ in arch.inputs)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        a = self.arch
        s = [_ACT[a.acts[0]](self.x2h(x) + self.h2h(h))]
        for layer, j, act in zip(self.nodes, a.inputs, a.acts[1:]):
            s.append(_ACT[act](layer(s[j])))
        ends = a.loose_ends
        return s[ends[0]] if len(ends) == 1 else torch.stack([s[i] for i in ends]).mean(0)


class CharModel(nn.Module):
    """Embedding -> recurrent cell (or an LSTM / tanh RNN baseline) -> linear decoder.

    `forward(ids, h)` is the language model (ids B x T, logits B x T x V); called with one float
    tensor B x 1 x T x V (one-hot characters, the shape edgenas's loop counts parameters and
    FLOPs on), it returns the next character's logits after the window."""

    def __init__(self, vocab: int, cell: RnnCellArch | str) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, EMBED)
        self.kind = cell if isinstance(cell, str) else "cell"
        if self.kind == "lstm":
            self.rnn: nn.Module = nn.LSTM(EMBED, lstm_hidden(vocab), batch_first=True)
        elif self.kind == "elman":
            self.rnn = nn.RNN(EMBED, HIDDEN, batch_first=True)
        else:
            self.rnn = RecurrentCell(cell, EMBED, HIDDEN)  # type: ignore[arg-type]
        self.decoder = nn.Linear(self.hidden_size, vocab)

    @property
    def hidden_size(self) -> int:
        return self.rnn.hidden_size if self.kind in ("lstm", "elman") else HIDDEN  # type: ignore[return-value]

    def init_state(self, batch: int) -> Any:
        z = torch.zeros(batch, self.hidden_size)
        return (z[None], z[None].clone()) if self.kind == "lstm" else (z[None] if self.kind == "elman" else z)

    def forward(self, ids: torch.Tensor, state: Any = None) -> Any:
        window = ids.dim() == 4
        if window:
            ids = ids.argmax(-1).squeeze(1)
        e = self.embed(ids)
        if state is None:
            state = self.init_state(ids.shape[0])
        if self.kind == "cell":
            outs = []
            h = state
            for t in range(e.shape[1]):
                h = self.rnn(e[:, t], h)
                outs.append(h)
            out, state = torch.stack(outs, 1), h
        else:
            out, state = self.rnn(e, state)
        logits = self.decoder(out)
        return logits[:, -1] if window else (logits, state)


def lstm_hidden(vocab: int) -> int:
    """The LSTM hidden size whose model has about as many parameters as the cells' median."""
    target = statistics.median(count(CharModel(vocab, a)) for a in all_cells())
    return min(range(8, HIDDEN + 1), key=lambda h: abs(_lstm_params(vocab, h) - target))


def _lstm_params(vocab: int, h: int) -> int:
    return vocab * EMBED + 4 * (EMBED * h + h * h + 2 * h) + h * vocab + vocab


class RnnCellSpace(SearchSpace):
    """Zoph & Le's recurrent cell as ENAS simplified it, three nodes: 128 cells."""

    name = "rnn-cell"

    def __init__(self, input_shape: tuple[int, int, int], num_classes: int) -> None:
        self.input_shape = tuple(input_shape)
        self.vocab = num_classes
        self.kinds = (DecisionKind("activation", ACTS), DecisionKind("input", tuple(range(NODES - 1))))

    def next_decision(self, prefix: Sequence[int]) -> Decision | None:
        n = len(prefix)
        if n == 0:
            return Decision(0, (True,) * len(ACTS))
        if n >= 1 + 2 * (NODES - 1):
            return None
        node = 1 + (n - 1) // 2
        if (n - 1) % 2 == 0:
            return Decision(1, tuple(j < node for j in range(NODES - 1)))
        return Decision(0, (True,) * len(ACTS))

    def decode(self, actions: Sequence[int]) -> RnnCellArch:
        self.validate(actions)
        return RnnCellArch(
            (ACTS[actions[0]],) + tuple(ACTS[a] for a in actions[2::2]), tuple(int(j) for j in actions[1::2])
        )

    def encode(self, arch: RnnCellArch) -> list[int]:
        out = [ACTS.index(arch.acts[0])]
        for j, act in zip(arch.inputs, arch.acts[1:]):
            out += [j, ACTS.index(act)]
        return out

    def build(self, arch: RnnCellArch) -> nn.Module:
        return CharModel(self.vocab, arch)

    def smallest(self) -> RnnCellArch:
        return self.decode([0] + [0, 0] * (NODES - 1))

    def arch_from_json(self, data: dict[str, Any]) -> RnnCellArch:
        return RnnCellArch(tuple(data["acts"]), tuple(data["inputs"]))

    def parse(self, text: str) -> RnnCellArch:
        """`act0/act1(j1)/act2(j2)`, as the cells print."""
        parts = text.strip().split("/")
        try:
            acts, inputs = [parts[0]], []
            for p in parts[1:]:
                act, j = p.rstrip(")").split("(")
                acts.append(act)
                inputs.append(int(j))
            actions = [ACTS.index(acts[0])]
            for a, j in zip(acts[1:], inputs):
                actions += [j, ACTS.index(a)]
        except ValueError:
            raise ValueError(f"'{text}' is not an rnn-cell string such as tanh/relu(0)/sigmoid(1)") from None
        return self.decode(actions)


def register() -> None:
    """Make `rnn-cell` an edgenas space in this process (the searches' workers call it; importing
    this module leaves edgenas's registry as it was)."""
    if RnnCellSpace.name not in SPACES:
        SPACES.register(RnnCellSpace)


def all_cells() -> list[RnnCellArch]:
    space = RnnCellSpace((1, BPTT, 2), 2)
    out: list[list[int]] = [[]]
    done = []
    while out:
        prefix = out.pop()
        d = space.next_decision(prefix)
        if d is None:
            done.append(space.decode(prefix))
            continue
        out += [prefix + [a] for a, ok in enumerate(d.mask) if ok]
    return sorted(done, key=str)


# ---------------------------------------------------------------- training


def batches(ids: torch.Tensor, batch: int) -> torch.Tensor:
    n = len(ids) // batch
    return ids[: n * batch].view(batch, n)


def windows(data: torch.Tensor) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Truncated back-propagation's windows of `data` (batch x length): inputs and the next
    characters, BPTT long (the last one shorter)."""
    for i in range(0, data.shape[1] - 1, BPTT):
        y = data[:, i + 1 : i + 1 + BPTT]
        yield data[:, i : i + y.shape[1]], y


def perplexity(model: CharModel, ids: torch.Tensor) -> float:
    model.eval()
    state, total, tokens = None, 0.0, 0
    with torch.no_grad():
        for x, y in windows(batches(ids, 16)):
            logits, state = model(x, state)
            total += nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="sum"
            ).item()
            tokens += y.numel()
    loss = total / tokens
    return math.exp(loss) if loss < 50 else float("inf")


def train(cell: RnnCellArch | str, seed: int, epochs: int = EPOCHS) -> dict[str, float]:
    """One model trained the table's way; its validation and test perplexity."""
    train_ids, val_ids, test_ids, vocab = _STATE["data"]
    torch.manual_seed(seed)
    model = CharModel(vocab, cell)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    data = batches(train_ids, BATCH)
    t0 = time.process_time()
    for _ in range(epochs):
        model.train()
        state = None
        for x, y in windows(data):
            logits, state = model(x, state)
            state = tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()
            loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
            opt.zero_grad()
            if not torch.isfinite(loss):
                break
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), CLIP)
            opt.step()
    seconds = time.process_time() - t0
    return {
        "val_ppl": perplexity(model, val_ids),
        "test_ppl": perplexity(model, test_ids),
        "params": count(model),
        "cpu_seconds": round(seconds, 2),
    }


_STATE: dict = {}


def _setup_data() -> None:
    torch.set_num_threads(1)
    _STATE["data"] = splits()


def _train_job(job: tuple[str, int, int]) -> dict:
    text, seed, epochs = job
    cell: RnnCellArch | str = text if text in ("lstm", "elman") else RnnCellSpace((1, 1, 1), 2).parse(text)
    return {"arch": text, "seed": seed, "epochs": epochs, **train(cell, seed, epochs)}


def build_table(path: Path, workers: int) -> None:
    cells = [str(a) for a in all_cells()]
    t0 = time.perf_counter()
    with ProcessPoolExecutor(workers, initializer=_setup_data) as pool:
        rows = list(pool.map(_train_job, [(c, 0, EPOCHS) for c in cells], chunksize=1))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["arch", "text-val", "text-test", "val_ppl", "test_ppl", "params", "cpu_seconds"])
        for r in sorted(rows, key=lambda r: r["arch"]):
            inv = [1 / r[k] if math.isfinite(r[k]) else 0.0 for k in ("val_ppl", "test_ppl")]
            w.writerow([r["arch"], f"{inv[0]:.6f}", f"{inv[1]:.6f}", f"{r['val_ppl']:.4f}", f"{r['test_ppl']:.4f}",
                        r["params"], r["cpu_seconds"]])  # fmt: skip
    tmp.replace(path)
    print(f"table: {len(rows)} cells trained in {time.perf_counter() - t0:.0f} s -> {path}", file=sys.stderr)


def read_table(path: Path) -> dict[str, dict[str, float]]:
    with path.open(newline="") as f:
        return {r["arch"]: {k: float(v) for k, v in r.items() if k != "arch"} for r in csv.DictReader(f)}


# ---------------------------------------------------------------- searches on the table


def _setup_search(table_path: str) -> None:
    torch.set_num_threads(1)
    register()
    _, chars = corpus()
    base = table_pipeline(
        "edgenas-zl-",
        table_path,
        "rnn-cell",
        "text-val",
        "text-test",
        table_input=f"1x{BPTT}x{len(chars)}",
        table_classes=len(chars),
        templates=False,
        architectures_per_update=PER_UPDATE,
        children=CHILDREN * 50,  # samples, repeats included: the stop is the distinct cells
        max_evaluated=CHILDREN,
    )
    _STATE.update(base=base, prepared=prepare(base), rows=read_table(Path(table_path)))


def _search_job(job: tuple[str, int]) -> dict:
    strategy, seed = job
    base, prepared, rows = _STATE["base"], _STATE["prepared"], _STATE["rows"]
    pipe = dataclasses.replace(
        base, search=dataclasses.replace(base.search, seed=seed), controller=ControllerSettings(name=strategy)
    )
    result = run_search(pipe, run_name=f"{strategy}-{seed}", prepared=prepared,
                        evaluator=TableEvaluator(prepared.table, prepared.space))  # fmt: skip
    with Store(result.run_dir / DB_NAME) as store:
        trials = sorted(store.trials("ok"), key=lambda t: t.id)
    shutil.rmtree(result.run_dir)
    found = [str(prepared.space.arch_from_json(t.arch)) for t in trials][:CHILDREN]
    pick = min(found, key=lambda a: rows[a]["val_ppl"])
    out: dict[str, Any] = {"strategy": strategy, "seed": seed, "distinct": len(found), "pick": pick}
    for n in CHECKPOINTS:
        seen = found[:n]
        pick = min(seen, key=lambda a: rows[a]["val_ppl"])
        top5 = sorted(rows[a]["val_ppl"] for a in seen)[:5]
        out[f"test_ppl_of_pick@{n}"] = rows[pick]["test_ppl"]
        out[f"top5_val_ppl@{n}"] = statistics.fmean(top5)
    return out


def summarise(records: list[dict]) -> dict[str, dict[str, list[float]]]:
    """Per strategy and checkpoint: mean and standard deviation over seeds."""
    out: dict[str, dict[str, list[float]]] = {}
    for s in STRATEGIES:
        recs = [r for r in records if r["strategy"] == s]
        if not recs:
            continue
        out[s] = {}
        for n in CHECKPOINTS:
            for m in ("test_ppl_of_pick", "top5_val_ppl"):
                vals = [r[f"{m}@{n}"] for r in recs]
                out[s][f"{m}@{n}"] = [statistics.fmean(vals), statistics.stdev(vals) if len(vals) > 1 else 0.0]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--table-out", default=str(TABLE))
    ap.add_argument("--retrain", action="store_true", help="train the 128 cells again even if the table exists")
    ap.add_argument("--reps", type=int, default=100, help="search seeds per controller")
    ap.add_argument("--seeds", type=int, default=3, help="training seeds of the final comparison")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--results", help="write the results file here")
    args = ap.parse_args()
    table = Path(args.table_out)
    t0 = time.perf_counter()
    if args.retrain or not table.exists():
        build_table(table, args.workers)
    rows = read_table(table)
    ranked = sorted(rows, key=lambda a: rows[a]["val_ppl"])
    jobs = [(s, seed) for s in STRATEGIES for seed in range(args.reps)]
    with ProcessPoolExecutor(args.workers, initializer=_setup_search, initargs=(str(table),)) as pool:
        records = list(pool.map(_search_job, jobs, chunksize=4))
    summary = summarise(records)
    # the cell REINFORCE's searches pick most often at the end, against the LSTM and the tanh RNN
    picks = Counter(r["pick"] for r in records if r["strategy"] == "reinforce")
    cell = picks.most_common(1)[0][0]
    final_jobs = [(m, seed, FINAL_EPOCHS) for m in (cell, "lstm", "elman") for seed in range(1, args.seeds + 1)]
    with ProcessPoolExecutor(args.workers, initializer=_setup_data) as pool:
        finals = list(pool.map(_train_job, final_jobs, chunksize=1))
    versus = {}
    for m in (cell, "lstm", "elman"):
        rs = [r for r in finals if r["arch"] == m]
        ppl = [r["test_ppl"] for r in rs]
        versus[m] = {"params": rs[0]["params"], "test_ppl": [statistics.fmean(ppl), statistics.stdev(ppl) if len(ppl) > 1 else 0.0],
                     "runs": rs}  # fmt: skip

    print(f"table: {len(rows)} cells; best by validation {ranked[0]} (val ppl {rows[ranked[0]]['val_ppl']:.3f}, "
          f"test {rows[ranked[0]]['test_ppl']:.3f}); median val ppl {statistics.median(r['val_ppl'] for r in rows.values()):.3f}")  # fmt: skip
    print(f"{'controller':10} " + " ".join(f"{'pick test ppl @' + str(n):>20}" for n in CHECKPOINTS))
    for s, m in summary.items():
        print(f"{s:10} " + " ".join(f"{m[f'test_ppl_of_pick@{n}'][0]:14.3f} ± {m[f'test_ppl_of_pick@{n}'][1]:4.3f}" for n in CHECKPOINTS))  # fmt: skip
    print(f"{'controller':10} " + " ".join(f"{'top-5 val ppl @' + str(n):>20}" for n in CHECKPOINTS))
    for s, m in summary.items():
        print(f"{s:10} " + " ".join(f"{m[f'top5_val_ppl@{n}'][0]:14.3f} ± {m[f'top5_val_ppl@{n}'][1]:4.3f}" for n in CHECKPOINTS))  # fmt: skip
    for m, v in versus.items():
        print(
            f"{m:32} {v['params']:7d} params  test ppl {v['test_ppl'][0]:.3f} ± {v['test_ppl'][1]:.3f} ({args.seeds} seeds)"
        )
    if args.results:
        text, chars = corpus()
        out = {
            "command": "python " + " ".join(sys.argv),
            "date": date.today().isoformat(),
            "machine": machine(),
            "data": {
                "source": "pydoc_data.topics (CPython's documentation text)",
                "python": platform.python_version(),
                "characters": len(text),
                "vocabulary": len(chars),
                "train_characters": TRAIN_CHARS,
                "split": "80/10/10 by position",
            },  # fmt: skip
            "recipe": {
                "hidden": HIDDEN,
                "embedding": EMBED,
                "bptt": BPTT,
                "batch": BATCH,
                "epochs": EPOCHS,
                "optimizer": f"adam {LR}",
                "clip": CLIP,
                "final_epochs": FINAL_EPOCHS,
            },  # fmt: skip
            "table": {
                "cells": len(rows),
                "best": ranked[0],
                "best_val_ppl": rows[ranked[0]]["val_ppl"],
                "best_test_ppl": rows[ranked[0]]["test_ppl"],
                "median_val_ppl": statistics.median(r["val_ppl"] for r in rows.values()),
            },  # fmt: skip
            "search": {"children": CHILDREN, "per_update": PER_UPDATE, "reps": args.reps, "summary": summary},
            "reinforce_pick": cell,
            "reinforce_pick_share": picks[cell] / sum(picks.values()),
            "versus": versus,
            "seconds": round(time.perf_counter() - t0, 1),
            "records": records,
        }
        Path(args.results).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
