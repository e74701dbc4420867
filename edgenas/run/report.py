"""The run report: one self-contained HTML file (plots embedded as PNG) and the numbers behind it.

`report_data` reads a run directory's database into plain numbers (used by the terminal summary
too); `write_report` renders report.html next to it. matplotlib is imported only here.
"""

from __future__ import annotations

import base64
import bisect
import html
import io
import re
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

from edgenas.errors import RunDirError
from edgenas.hardware.latency import outside_fit_note
from edgenas.run.rundir import DB_NAME
from edgenas.run.store import Store

REPORT_NAME = "report.html"


def pareto_front(points: Sequence[tuple[float, float, int]]) -> list[int]:
    """Ids of the points no other point beats: lower x (cost) and higher y (accuracy).

    Ties in both coordinates keep the first id; the ids come in order of cost."""
    from edgenas.pareto import non_dominated

    ordered = sorted(points, key=lambda p: (p[0], -p[1], p[2]))
    return [ordered[i][2] for i in non_dominated([(-x, y) for x, y, _ in ordered])]


def _reason_kind(text: str | None) -> str:
    if not text:
        return "unknown"
    head = text.split(":", 1)[0] if ":" in text[:40] else text
    return re.split(r"\s[\d<>]", head, maxsplit=1)[0].strip()


def report_data(run_dir: Path) -> dict[str, Any]:
    run_dir = Path(run_dir)
    db = run_dir / DB_NAME
    if not db.is_file():
        raise RunDirError(f"'{run_dir}' is not an edgenas run directory (no {DB_NAME} in it)")
    with Store(db, readonly=True) as store:
        trials = {t.id: t for t in store.trials()}
        samples = [dict(r) for r in store.samples()]
        updates = [dict(r) for r in store.updates()]
        meta = {k: store.get_meta(k) for k in ("pipeline", "profile", "command", "started_at", "finished_at")}
        meta["templates"] = store.get_meta("templates") or []
        top = store.top(10)
        rung_results = store.rung_results()
    ok = [t for t in trials.values() if t.status == "ok"]
    rungs = rung_summary(rung_results)
    front_rung = None
    if rungs:  # multi-fidelity: accuracies of different rungs are not compared, fronts are the top rung's
        front_rung = max((t.rung or 0 for t in ok), default=0)
        ok = [t for t in ok if (t.rung or 0) == front_rung]
    lat_front = pareto_front(
        [(t.latency_median_ms, t.val_accuracy, t.id) for t in ok if t.latency_median_ms is not None]
    )
    par_front = pareto_front([(float(t.params), t.val_accuracy, t.id) for t in ok])
    series = _sample_series(samples, trials, rung_results)
    objectives = ((meta["pipeline"] or {}).get("reward") or {}).get("objectives")
    multi = None
    if objectives:
        from edgenas import pareto

        multi = pareto.summary(ok, objectives)
        multi["picked"] = _picked(run_dir)
    return {
        "run_dir": str(run_dir),
        "multi_objective": multi,
        "trials": trials,
        "samples": series,
        "updates": updates,
        "meta": meta,
        "top": top,
        "winner": top[0] if top else None,
        "pareto_latency": lat_front,
        "pareto_params": par_front,
        "counts": Counter(t.status for t in trials.values()),
        "reused": sum(1 for s in samples if s["reused"]),
        "rejected_reasons": Counter(_reason_kind(t.reason) for t in trials.values() if t.status == "rejected"),
        "failed_reasons": Counter(_reason_kind(t.error) for t in trials.values() if t.status == "failed"),
        "stopped_reasons": Counter("median rule" for t in trials.values() if t.status == "stopped"),
        "rungs": rungs,
        "front_rung": front_rung,  # multi-fidelity: the rung the fronts are drawn at (the highest reached)
        "rung_best": _rung_best(samples, rung_results),
    }


def _sample_series(samples: list[dict[str, Any]], trials: dict[int, Any], rung_results: Sequence[Any]) -> list:
    """Per sample, in order: the reward the controller was told, the validation accuracy at the
    same fidelity (the first rung's, in a multi-fidelity search; the trial's otherwise), and the
    best such reward so far (of trained children)."""
    first = {r.trial_id: r for r in rung_results if r.rung == 0}
    series = []
    best = None
    for i, s in enumerate(samples, 1):
        t = trials[s["trial_id"]]
        if t.status == "ok" and (best is None or s["reward"] > best):
            best = s["reward"]
        r0 = first.get(t.id)
        series.append(
            {
                "index": i,
                "reward": s["reward"],
                "status": "reused" if s["reused"] else t.status,
                "val_accuracy": r0.val_accuracy if r0 is not None else t.val_accuracy,
                "best_reward": best,
            }
        )
    return series


def _rung_best(samples: list[dict[str, Any]], rung_results: Sequence[Any]) -> dict[int, list[tuple[int, float]]]:
    """Multi-fidelity: per rung above the first, the best reward reached at that rung so far, as
    (children sampled by the end of the update that reached it, best reward) steps. Each rung's
    line is of its own results only."""
    sampled_by: dict[int, int] = {}  # update -> children sampled by its end
    for s in samples:
        sampled_by[s["update_index"]] = sampled_by.get(s["update_index"], 0) + 1
    total = 0
    for u in sorted(sampled_by):
        total = sampled_by[u] = total + sampled_by[u]
    updates = sorted(sampled_by)
    out: dict[int, list[tuple[int, float]]] = {}
    for rung in sorted({r.rung for r in rung_results if r.rung > 0}):
        best, steps = None, []
        for r in sorted((r for r in rung_results if r.rung == rung), key=lambda r: (r.update_index, r.trial_id)):
            if r.val_accuracy is None:  # a promotion that failed
                continue
            best = r.reward if best is None else max(best, r.reward)
            i = bisect.bisect_right(updates, r.update_index)
            x = sampled_by[updates[i - 1]] if i else 0
            steps.append((x, best))
        out[rung] = steps
    return out


def _picked(run_dir: Path) -> dict[int, str]:
    """Trial id -> the --pick expression, for the bundles `edgenas export --pick` wrote here."""
    import json

    out: dict[int, str] = {}
    for path in sorted([run_dir / "bundle" / "manifest.json", *(run_dir / "bundle").glob("rank-*/manifest.json")]):
        try:
            m = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        trial_id = (m.get("source") or {}).get("trial_id")
        if m.get("pick") and trial_id is not None:
            out[int(trial_id)] = m["pick"]["expression"]
    return out


OBJECTIVE_LABELS = {
    "accuracy": "validation accuracy",
    "latency": "latency, median ms",
    "params": "parameters",
    "flops": "FLOPs",
    "ram": "peak RAM, bytes",
    "flash": "flash, bytes",
    "energy": "energy per inference, mJ",
}


def _plot_objective_pair(d: dict[str, Any], x_obj: str, y_obj: str) -> str:
    """All trained children in one pair of objectives, the run's front (over every objective)
    highlighted, picked members starred."""
    import matplotlib.pyplot as plt

    from edgenas.pareto import trial_values

    mo = d["multi_objective"]
    ok = [t for t in d["trials"].values() if t.status == "ok"]
    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    pts = [(trial_values(t)[x_obj], trial_values(t)[y_obj]) for t in ok]
    pts = [p for p in pts if None not in p]
    if pts:
        ax.scatter(*zip(*pts), s=14, color="#9ecae1", label="trained children")
    front = [(trial_values(d["trials"][i])[x_obj], trial_values(d["trials"][i])[y_obj]) for i in mo["trial_ids"]]
    front = [p for p in front if None not in p]
    if front:
        ax.scatter(*zip(*front), s=30, color="#1f77b4", label="front (all objectives)", zorder=3)
    picks = [(trial_values(d["trials"][i])[x_obj], trial_values(d["trials"][i])[y_obj]) for i in mo["picked"]]
    picks = [p for p in picks if None not in p]
    if picks:
        ax.scatter(*zip(*picks), marker="*", s=220, color="gold", edgecolors="black", zorder=4, label="picked")
    if x_obj != "accuracy" and pts:
        ax.set_xscale("log")
    ax.set_xlabel(OBJECTIVE_LABELS[x_obj])
    ax.set_ylabel(OBJECTIVE_LABELS[y_obj])
    ax.set_title(f"{y_obj} vs {x_obj}")
    ax.grid(alpha=0.3)
    _legend(ax)
    return _png(fig)


def _plot_hypervolume(d: dict[str, Any]) -> str:
    import matplotlib.pyplot as plt

    hv = d["multi_objective"]["hypervolume_per_update"]
    fig, ax = plt.subplots(figsize=(7.5, 3.0))
    if hv:
        ax.step([u + 1 for u, _ in hv], [v for _, v in hv], where="post", color="#1f77b4")
    ax.set_xlabel("controller update")
    _integer_ticks(ax)
    ax.set_ylabel("hypervolume")
    ax.set_title("Hypervolume of the front after each update")
    ax.grid(alpha=0.3)
    return _png(fig)


def rung_summary(results: Sequence[Any]) -> list[dict[str, Any]]:
    """Per rung of a multi-fidelity search: epochs, children that reached it, how many went on,
    the best and median validation accuracy there (empty without multi-fidelity)."""
    by_rung: dict[int, list[Any]] = {}
    for r in results:
        by_rung.setdefault(r.rung, []).append(r)
    out = []
    for rung in sorted(by_rung):
        rows = by_rung[rung]
        accs = sorted(r.val_accuracy for r in rows if r.val_accuracy is not None)
        out.append(
            {
                "rung": rung,
                "epochs": rows[0].epochs,
                "children": len(rows),
                "promoted": len(by_rung.get(rung + 1, [])),
                "best_val_accuracy": accs[-1] if accs else None,
                "median_val_accuracy": accs[len(accs) // 2] if accs else None,
            }
        )
    return out


# -- plots ------------------------------------------------------------------------------------

_COLORS = {"ok": "#1f77b4", "reused": "#9ecae1", "rejected": "#d62728", "failed": "#ff7f0e", "stopped": "#8c564b"}


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _integer_ticks(ax) -> None:
    """Updates are counted: whole numbers on the x axis (no 1.25, 1.75)."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _legend(ax) -> None:
    """A legend, or a note when there is nothing to plot (every child rejected or failed)."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="lower right")
    else:
        ax.text(0.5, 0.5, "no trained children", transform=ax.transAxes, ha="center", color="grey")


def _n_epochs(n: int | None) -> str:
    """None: rung 0 of a weight-sharing search, scored with inherited weights (no rung row)."""
    if n is None:
        return "inherited weights"
    return f"{n} epoch" if n == 1 else f"{n} epochs"


def _epochs_of(d: dict[str, Any]) -> dict[int, int]:
    """Rung -> epochs, of a multi-fidelity run (empty otherwise)."""
    return {r["rung"]: r["epochs"] for r in d["rungs"]}


def _plot_progress(d: dict[str, Any]) -> str:
    """Rewards as the controller saw them (the first rung's, in a multi-fidelity search), the
    validation accuracy at that same fidelity, and the best so far of each rung on its own line."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    s = d["samples"]
    epochs = _epochs_of(d)
    at = (f" at {_n_epochs(epochs[0])} (first rung)" if 0 in epochs else " (inherited weights)") if epochs else ""
    for status, color in _COLORS.items():
        pts = [(p["index"], p["reward"]) for p in s if p["status"] == status]
        if pts:
            ax.scatter(*zip(*pts), s=14, color=color, label=f"reward{at} ({status})", zorder=3)
    acc = [(p["index"], p["val_accuracy"]) for p in s if p["status"] == "ok" and p["val_accuracy"] is not None]
    if acc:
        ax.scatter(*zip(*acc), s=30, facecolors="none", edgecolors="#2ca02c", label=f"val accuracy{at}", zorder=2)
    best = [(p["index"], p["best_reward"]) for p in s if p["best_reward"] is not None]
    if best:
        ax.step(*zip(*best), where="post", color="black", lw=1.5, label=f"best reward so far{at}")
    shades = ["#7f7f7f", "#bcbd22", "#17becf", "#e377c2"]
    for i, (rung, steps) in enumerate(sorted(d.get("rung_best", {}).items())):
        if steps:
            xs, ys = zip(*steps)
            ax.step(xs, ys, where="post", color=shades[i % len(shades)], lw=1.5,
                    label=f"best reward at rung {rung} ({_n_epochs(epochs.get(rung))})")  # fmt: skip
    ax.set_xlabel("children sampled")
    ax.set_ylabel("reward / accuracy")
    ax.set_title("Reward and validation accuracy over the search" + (" (rewards of one rung per line)" if at else ""))
    ax.grid(alpha=0.3)
    _legend(ax)
    return _png(fig)


def _plot_pareto(d: dict[str, Any], axis: str) -> str:
    """Trained children (coloured by the epochs they were trained to, in a multi-fidelity search),
    the front among the children of one fidelity (the highest rung reached), limits, the winner."""
    import matplotlib.pyplot as plt

    ok = [t for t in d["trials"].values() if t.status == "ok"]
    pipeline = d["meta"]["pipeline"] or {}
    reward = pipeline.get("reward", {})
    label = (d["meta"]["profile"] or {}).get("name", "")
    if axis == "latency":
        xs = lambda t: t.latency_median_ms  # noqa: E731
        front_ids = d["pareto_latency"]
        xlabel = f"latency, median ms (profile {label}, {ok[0].latency_label if ok else ''})"
        limit, limit_label = reward.get("max_latency_ms"), "latency limit"
    else:
        xs = lambda t: t.params  # noqa: E731
        front_ids = d["pareto_params"]
        xlabel = "parameters"
        limit, limit_label = reward.get("budget_params"), "parameter budget"
    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    epochs = _epochs_of(d)
    groups = sorted({t.rung or 0 for t in ok}) if epochs else [None]
    shades = ["#c6dbef", "#9ecae1", "#6baed6", "#4292c6", "#2171b5"]
    any_points = False
    for i, rung in enumerate(groups):
        pts = [(xs(t), t.val_accuracy) for t in ok if xs(t) is not None and (rung is None or (t.rung or 0) == rung)]
        if pts:
            any_points = True
            what = "trained children" if rung is None else f"trained to {_n_epochs(epochs.get(rung))} (rung {rung})"
            ax.scatter(*zip(*pts), s=14, color=shades[min(i, len(shades) - 1)] if rung is not None else "#9ecae1",
                       label=what)  # fmt: skip
    front = sorted(
        (xs(d["trials"][i]), d["trials"][i].val_accuracy) for i in front_ids if xs(d["trials"][i]) is not None
    )
    if front:
        ax.step(*zip(*front), where="post", color="#1f77b4", lw=1.5)
        top = d.get("front_rung")
        where = (
            f" among the {_n_epochs(epochs.get(top))} children (the highest rung reached)" if top is not None else ""
        )
        ax.scatter(*zip(*front), s=28, facecolors="none", edgecolors="#08306b", linewidths=1.2,
                   label=f"Pareto front{where}", zorder=3)  # fmt: skip
    if axis == "params":
        rejected = [t.params for t in d["trials"].values() if t.status == "rejected"]
        if rejected:
            ax.scatter(
                rejected, [0.0] * len(rejected), marker="x", color="#d62728", s=20, label="rejected before training"
            )
    if limit:
        ax.axvline(limit, color="#d62728", ls="--", lw=1.2, label=limit_label)
    w = d["winner"]
    if w is not None and xs(w) is not None:
        ax.scatter([xs(w)], [w.val_accuracy], marker="*", s=220, color="gold", edgecolors="black", zorder=4,
                   label=f"winner (trial {w.id})")  # fmt: skip
    if axis == "params" and any_points:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("validation accuracy")
    ax.set_title(f"Accuracy vs {axis}")
    ax.grid(alpha=0.3)
    _legend(ax)
    return _png(fig)


def _plot_controller(d: dict[str, Any]) -> str:
    """What the controller reports per update: a policy's entropy (REINFORCE, PPO, the
    predictor's policy) or a population's spread (evolution), with the batch's mean reward and
    the policy's baseline."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 3.2))
    u = d["updates"]
    spread = [r["stats"].get("population_spread") for r in u]
    left_label = "entropy"
    if u:
        idx = [r["update_index"] + 1 for r in u]
        if any(v is not None for v in spread) and all(r["entropy"] is None for r in u):
            ax.plot(idx, spread, marker="o", ms=3, color="#9467bd",
                    label="population spread (decisions two members differ in, mean)")  # fmt: skip
            left_label = "decisions"
        else:
            ax.plot(idx, [r["entropy"] for r in u], marker="o", ms=3, color="#9467bd",
                    label="policy entropy per architecture (nats)")  # fmt: skip
        ax2 = ax.twinx()
        ax2.plot(idx, [r["mean_reward"] for r in u], color="#2ca02c", lw=1, label="mean reward of the batch")
        if any(r["baseline"] is not None for r in u):
            ax2.plot(idx, [r["baseline"] for r in u], color="grey", lw=1, ls="--", label="baseline")
        ax2.set_ylabel("reward")
        h1, l1 = ax.get_legend_handles_labels()
        h2, l2 = ax2.get_legend_handles_labels()
        ax.legend(h1 + h2, l1 + l2, fontsize=7, loc="upper right")
    ax.set_xlabel("controller update")
    _integer_ticks(ax)
    ax.set_ylabel(left_label)
    ax.set_title("Controller over time")
    ax.grid(alpha=0.3)
    return _png(fig)


def _plot_surrogate(d: dict[str, Any]) -> str:
    """The predictor's record per update: how well its surrogate ranked the networks it chose
    (Spearman's rho between prediction and reward) and how many candidates it chose them from."""
    import matplotlib.pyplot as plt

    rows = [(u["update_index"] + 1, u["stats"]) for u in d["updates"] if "surrogate_spearman" in u["stats"]]
    fig, ax = plt.subplots(figsize=(7.5, 3.2))
    ax.plot([i for i, _ in rows], [st["surrogate_spearman"] for _, st in rows], marker="o", ms=4, color="#d62728",
            label="rank correlation, predicted vs reward (Spearman)")  # fmt: skip
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_ylim(-1.05, 1.05)
    ax2 = ax.twinx()
    ax2.bar([i for i, _ in rows], [st.get("candidates", 0) for _, st in rows], color="#c7c7c7", alpha=0.5,
            label="candidates it chose from")  # fmt: skip
    ax2.set_ylabel("candidates")
    ax.set_zorder(ax2.get_zorder() + 1)
    ax.patch.set_visible(False)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=7, loc="lower right")
    ax.set_xlabel("controller update")
    _integer_ticks(ax)
    ax.set_ylabel("Spearman's rho")
    ax.set_title("The predictor's surrogate: did it rank the networks it chose as they turned out?")
    ax.grid(alpha=0.3)
    return _png(fig)


# -- HTML -------------------------------------------------------------------------------------


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.2f} %"


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.4f}"


def _mj(trial: Any) -> float | None:
    """A trial's predicted energy per inference (mJ), where its profile has energy data."""
    return (trial.latency or {}).get("energy_mj")


def write_report(run_dir: Path, out: Path | None = None) -> Path:
    """report.html of a run directory (finished or not): counts, winner, fronts, plots, rungs, top
    candidates, rejections, how to reproduce. RunDirError when it cannot be written."""
    import matplotlib

    matplotlib.use("Agg")
    run_dir = Path(run_dir)
    d = report_data(run_dir)
    out = Path(out) if out else run_dir / REPORT_NAME
    figures = [
        ("Reward and accuracy vs children", _plot_progress(d)),
        ("Pareto front: accuracy vs latency", _plot_pareto(d, "latency")),
        ("Pareto front: accuracy vs parameters", _plot_pareto(d, "params")),
        ("Controller entropy over time", _plot_controller(d)),
    ]
    if any("surrogate_spearman" in u["stats"] for u in d["updates"]):
        figures.append(("The predictor's surrogate: predicted against what it got", _plot_surrogate(d)))
    parts = _head(run_dir, d)
    if d["multi_objective"]:
        parts += _front_section(d)
        objs = d["multi_objective"]["objectives"]
        figures = figures[:1] + [("Hypervolume per controller update", _plot_hypervolume(d))] + [
            (f"Front: {b} vs {a}", _plot_objective_pair(d, a, b))
            for n, a in enumerate(objs)
            for b in objs[n + 1 :]
        ] + figures[1:]  # fmt: skip
    for title, png in figures:
        parts.append(f"<h2>{html.escape(title)}</h2><img alt='{html.escape(title)}' src='data:image/png;base64,{png}'>")
    parts += _rungs_section(d) + _candidates_section(d) + _reproduce_section(run_dir, d)
    parts.append("</body></html>")
    try:
        out.write_text("\n".join(parts), encoding="utf-8")
    except OSError as exc:
        raise RunDirError(
            f"cannot write the report to {out}: {exc.strerror or exc}; give another place with --out"
        ) from exc
    return out


def _head(run_dir: Path, d: dict[str, Any]) -> list[str]:
    """The page's head, the run's counts and the winner."""
    meta, counts = d["meta"], d["counts"]
    profile = meta["profile"] or {}
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>edgenas report</title><style>",
        "body{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;font-size:13px;margin:.5em 0;display:block;max-width:100%;overflow-x:auto}"
        "td,th{border:1px solid #ccc;padding:3px 7px}"
        "th{background:#f3f3f3}td:last-child{word-break:break-all;font-family:monospace;font-size:12px}code,pre{background:#f6f6f6;padding:2px 5px}pre{white-space:pre-wrap;word-break:break-all}img{max-width:100%}"
        ".kpi{display:inline-block;margin-right:2em}.kpi b{font-size:1.3em;display:block}",
        "</style></head><body>",
        f"<h1>edgenas search report</h1><p>run directory <code>{html.escape(str(run_dir))}</code>; "
        f"profile <b>{html.escape(str(profile.get('name')))}</b> ({html.escape(str(profile.get('target') or ''))}); "
        f"started {html.escape(str(meta['started_at']))}, finished {html.escape(str(meta['finished_at'] or 'not yet (interrupted or running)'))}</p>",
        "<div>",
        f"<span class='kpi'>sampled<b>{len(d['samples'])}</b></span>",
        f"<span class='kpi'>trained<b>{counts.get('ok', 0)}</b></span>",
        f"<span class='kpi'>rejected<b>{counts.get('rejected', 0)}</b></span>",
        f"<span class='kpi'>failed<b>{counts.get('failed', 0)}</b></span>",
        f"<span class='kpi'>stopped early<b>{counts.get('stopped', 0)}</b></span>",
        f"<span class='kpi'>reused<b>{d['reused']}</b></span>",
        "</div>",
    ]
    w = d["winner"]
    if w is not None:
        lat_where = w.latency_label or ""
        note = outside_fit_note(w.latency)
        lat_where += f"; {note}" if note else ""
        energy = f", energy {_mj(w):.4g} mJ per inference (predicted)" if _mj(w) is not None else ""
        parts.append(
            f"<h2>Winner: trial {w.id}</h2><p>{w.params:,} parameters, validation accuracy {_pct(w.val_accuracy)}, "
            f"latency {_ms(w.latency_median_ms)} ms median / {_ms(w.latency_p90_ms)} ms p90 "
            f"(<b>{html.escape(lat_where)}</b>){energy}, reward {w.reward:.4f}</p>"
            f"<p><code>{html.escape(w.arch_key)}</code></p>"
        )
    return parts + _templates_section(d)


def _templates_section(d: dict[str, Any]) -> list[str]:
    """The known-good networks the search evaluated first, next to the winner."""
    by_key = {t.arch_key: t for t in d["trials"].values()}
    w = d["winner"]
    rows = []
    for tmpl in d["meta"].get("templates") or []:
        t = by_key.get(tmpl["key"])
        if t is None:
            continue
        rows.append((tmpl["name"], t.id, t.status, _pct(t.val_accuracy), f"{t.params:,}",
                     _ms(t.latency_median_ms), f"{t.reward:.4f}", "winner" if w is not None and w.id == t.id else ""))  # fmt: skip
    if not rows:
        return []
    if w is not None:
        rows.append(("the search's winner", w.id, w.status, _pct(w.val_accuracy), f"{w.params:,}",
                     _ms(w.latency_median_ms), f"{w.reward:.4f}", ""))  # fmt: skip
    header = ("template (scaled to the limits)", "trial", "status", "val acc", "params", "latency ms", "reward", "")
    return ["<h2>Templates, evaluated first</h2>", _table(header, rows)]


def _front_section(d: dict[str, Any]) -> list[str]:
    """A multi-objective search's Pareto front: what it optimised, its hypervolume, its members."""
    from edgenas.pareto import trial_values

    mo = d["multi_objective"]
    objs = mo["objectives"]
    refs = ", ".join(f"{k} {v:.4g}" for k, v in mo["reference"].items())
    parts = [
        f"<h2>Pareto front ({len(mo['trial_ids'])} members)</h2><p>objectives: {html.escape(', '.join(objs))} "
        "(accuracy maximised, the rest minimised; validation accuracy, the test split never enters). "
        f"Hypervolume {mo['hypervolume']:.4f} in the normalised space (accuracy, 1 - cost / reference; "
        f"reference: {html.escape(refs)}).</p>"
    ]
    rows = []
    for i in mo["trial_ids"]:
        t, v = d["trials"][i], trial_values(d["trials"][i])
        rows.append(
            (
                t.id,
                _pct(v["accuracy"]),
                f"{t.params:,}",
                f"{v['flops']:,}" if v["flops"] is not None else "-",
                _ms(v["latency"]),
                f"{v['ram']:,}" if v["ram"] is not None else "-",
                f"{v['flash']:,}" if v["flash"] is not None else "-",
                f"{v['energy']:.4g}" if v["energy"] is not None else "-",
                mo["picked"].get(i, ""),
                t.arch_text,
            )
        )
    header = ("trial", "val acc", "params", "FLOPs", "latency ms", "peak RAM B", "flash B", "energy mJ", "picked",
              "arch")  # fmt: skip
    return parts + [_table(header, rows)]


def _rungs_section(d: dict[str, Any]) -> list[str]:
    if not d["rungs"]:
        return []
    rows = [
        (
            r["rung"],
            r["epochs"],
            r["children"],
            r["promoted"],
            _pct(r["best_val_accuracy"]),
            _pct(r["median_val_accuracy"]),
        )
        for r in d["rungs"]
    ]
    if all(r["rung"] > 0 for r in d["rungs"]):  # trained again after the search: no rung 0 to compare with
        search = ((d["meta"]["pipeline"] or {}).get("search")) or {}
        table = _table(("epochs", "children", "best val acc", "median val acc"), [row[1:3] + row[4:] for row in rows])
        if search.get("executor") == "supernet":  # rung 0 is the inherited-weight score
            return [
                "<h2>Trained stand-alone</h2><p>The best candidates by their inherited-weight score (the "
                "supernet's), trained stand-alone with the children's recipe; the winner, the top candidates and "
                "the Pareto fronts come from them.</p>",
                table,
            ]
        return [  # --finalists: trained again for longer
            f"<h2>Finalists</h2><p>The {search.get('finalists')} best children that are not templates "
            "(--finalists) and the best template, trained again for longer; the winner, the top candidates "
            "and the Pareto fronts come from them.</p>",
            table,
        ]
    return [
        "<h2>Multi-fidelity rungs</h2><p>Every child trains the first rung's epochs; the best of each rung "
        "continue from where they stopped. Accuracies are compared only within a rung; the winner and the "
        "Pareto fronts come from the highest rung.</p>",
        _table(("rung", "epochs", "children", "went on", "best val acc", "median val acc"), rows),
    ]


def _candidates_section(d: dict[str, Any]) -> list[str]:
    """The top candidates (in a multi-fidelity search with the epochs each was trained to: their
    accuracies are of different fidelities), and why children were rejected, failed or stopped."""
    epochs = _epochs_of(d)
    energy = any(_mj(t) is not None for t in d["top"])
    top_rows = [
        (
            i,
            t.id,
            *([_n_epochs(epochs.get(t.rung or 0))] if epochs else []),
            f"{t.params:,}",
            f"{t.macs:,}" if t.macs is not None else "-",
            _pct(t.val_accuracy),
            _ms(t.latency_median_ms) + ("~" if outside_fit_note(t.latency) else ""),
            _ms(t.latency_p90_ms),
            *([f"{_mj(t):.4g}" if _mj(t) is not None else "-"] if energy else []),
            f"{t.reward:.4f}",
            "yes" if t.id in d["pareto_latency"] else "",
            t.arch_text,
        )
        for i, t in enumerate(d["top"], 1)
    ]
    reasons = (
        [("rejected", k, n) for k, n in d["rejected_reasons"].most_common()]
        + [("failed", k, n) for k, n in d["failed_reasons"].most_common()]
        + [("stopped early", k, n) for k, n in d["stopped_reasons"].most_common()]
    )
    parts = ["<h2>Top candidates</h2>"]
    if any(outside_fit_note(t.latency) for t in d["top"]):
        parts.append("<p>'~': latency predicted outside what the calibration saw (a rough number).</p>")
    header = ("#", "trial", *(["trained"] if epochs else []), "params", "MACs", "val acc", "latency median ms",
              "p90 ms", *(["energy mJ"] if energy else []), "reward", "Pareto (latency)", "architecture")  # fmt: skip
    parts.append(_table(header, top_rows))
    parts.append("<h2>Rejected and failed children</h2>")
    parts.append(_table(("status", "reason", "count"), reasons) if reasons else "<p>none</p>")
    return parts


def _reproduce_section(run_dir: Path, d: dict[str, Any]) -> list[str]:
    pipeline_toml = run_dir / "pipeline.toml"
    parts = ["<h2>Reproduce</h2>"]
    if pipeline_toml.exists():
        reproduce = f"edgenas search --pipeline {pipeline_toml}"
        parts.append(f"<p>Same settings and seed (the same search on CPU):</p><pre>{html.escape(reproduce)}</pre>")
    command = d["meta"]["command"] or "(library call)"
    parts.append(f"<p>Command that started this run:</p><pre>{html.escape(str(command))}</pre>")
    return parts
