"""Many objectives at once: objective vectors, the non-dominated set, hypervolume, random
scalarisations (ParEGO) and the `--pick` expressions that choose a member of a front.

Objectives (`--objectives accuracy,latency`): accuracy is maximised (validation accuracy, the
test split never enters), the others are costs and minimised: latency (ms, the profile's
statistic), params, flops, ram (peak activation bytes), flash (bytes) and energy (mJ per
inference, predicted by profiles with energy data). Internally every
objective is turned into a "goodness" to maximise: accuracy as it is, a cost c as -log(c)
(costs span orders of magnitude, and a 2x saving should weigh the same at any size).

Hypervolume is computed in a normalised space where 1 is best: accuracy a -> a, a cost c ->
1 - c / ref (ref: the reference cost, at or above every cost on the front; a member at or past a
reference point contributes nothing). It is exact (the slicing algorithm, fine for the fronts of
a search: tens to hundreds of points).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Sequence

from edgenas.errors import ConfigError

OBJECTIVES = ("accuracy", "latency", "params", "flops", "ram", "flash", "energy")
COSTS = OBJECTIVES[1:]
AUGMENT = 0.05  # augmented Tchebycheff: rho, the weight of the sum term (ParEGO uses 0.05)


def parse_objectives(text: str | Sequence[str]) -> tuple[str, ...]:
    """'accuracy,latency' -> ('accuracy', 'latency'); checks names, duplicates, and that
    accuracy and at least one cost are there."""
    names = [t.strip() for t in (text.split(",") if isinstance(text, str) else text) if t.strip()]
    unknown = [n for n in names if n not in OBJECTIVES]
    if unknown:
        raise ConfigError(
            f"unknown objective(s) {', '.join(repr(u) for u in unknown)}; choose from {', '.join(OBJECTIVES)}"
        )
    if len(set(names)) != len(names):
        raise ConfigError(f"objectives {','.join(names)} name one twice; give each once")
    if "accuracy" not in names or len(names) < 2:
        raise ConfigError(
            f"objectives must be accuracy and at least one of {', '.join(COSTS)} (got {','.join(names) or 'none'}); "
            "for accuracy alone, leave --objectives out"
        )
    return ("accuracy", *[n for n in names if n != "accuracy"])


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """a is at least as good everywhere and better somewhere (all objectives maximised)."""
    return all(x >= y for x, y in zip(a, b)) and any(x > y for x, y in zip(a, b))


def non_dominated(points: Sequence[Sequence[float]]) -> list[int]:
    """Indices of the points no other point dominates (maximisation); of equal points, the first."""
    out: list[int] = []
    for i, p in enumerate(points):
        if any(dominates(q, p) for j, q in enumerate(points) if j != i):
            continue
        if any(tuple(points[j]) == tuple(p) for j in out):
            continue
        out.append(i)
    return out


def hypervolume(points: Sequence[Sequence[float]], ref: Sequence[float]) -> float:
    """Volume dominated by `points` and bounded below by `ref` (maximisation: only the parts of
    points above ref count). Exact."""
    pts = [tuple(p) for p in points if all(x > r for x, r in zip(p, ref))]
    if not pts:
        return 0.0
    return _hv([pts[i] for i in non_dominated(pts)], tuple(ref))


def _hv(pts: list[tuple[float, ...]], ref: tuple[float, ...]) -> float:
    if len(ref) == 1:
        return max(p[0] for p in pts) - ref[0]
    if len(ref) == 2:
        total, prev = 0.0, ref[1]
        for x, y in sorted(pts, key=lambda p: -p[0]):  # best first on axis 0
            if y > prev:
                total += (x - ref[0]) * (y - prev)
                prev = y
        return total
    # slice along the last axis: between consecutive levels, the front of the points above
    levels = sorted({p[-1] for p in pts})
    total, lower = 0.0, ref[-1]
    for level in levels:
        above = [p[:-1] for p in pts if p[-1] >= level]
        total += _hv([above[i] for i in non_dominated(above)], ref[:-1]) * (level - lower)
        lower = level
    return total


def trial_values(trial: Any) -> dict[str, float | None]:
    """What the objectives and --pick read from a trial (a `Store` row): accuracy (validation),
    latency (ms), params, flops, ram and flash (bytes), energy (mJ), and for --pick macs, ram_kb,
    flash_kb."""
    mem = getattr(trial, "memory", None) or {}
    lat = getattr(trial, "latency", None) or {}
    macs = getattr(trial, "macs", None)
    flops = getattr(trial, "flops", None) or (2 * macs if macs is not None else None)
    ram, flash = mem.get("peak_ram_bytes"), mem.get("flash_bytes")
    return {
        "accuracy": trial.val_accuracy,
        "latency": trial.latency_median_ms,
        "params": trial.params,
        "flops": flops,
        "macs": macs,
        "ram": ram,
        "flash": flash,
        "ram_kb": ram / 1024 if ram is not None else None,
        "flash_kb": flash / 1024 if flash is not None else None,
        "energy": lat.get("energy_mj"),
    }


def front(trials: Sequence[Any], objectives: Sequence[str]) -> list[Any]:
    """The non-dominated trials (by validation accuracy and the costs), best accuracy first."""
    scored = [(t, goodness(objectives, trial_values(t))) for t in trials]
    scored = [(t, v) for t, v in scored if v is not None]
    members = [scored[i] for i in non_dominated([v for _, v in scored])]
    return [t for t, v in sorted(members, key=lambda tv: (-tv[1][0], tv[0].id))]


def goodness(objectives: Sequence[str], values: dict[str, float | None]) -> tuple[float, ...] | None:
    """The vector to maximise: accuracy, then -log(cost) per cost (None if any is missing)."""
    out = []
    for name in objectives:
        v = values.get(name)
        if v is None or not math.isfinite(v):
            return None
        out.append(float(v) if name == "accuracy" else -math.log(max(float(v), 1e-12)))
    return tuple(out)


def normalised(objectives: Sequence[str], values: dict[str, float], refs: dict[str, float]) -> tuple[float, ...]:
    """The hypervolume space: accuracy as it is, a cost c -> 1 - c / refs[cost] (1 is best)."""
    return tuple(values[n] if n == "accuracy" else 1.0 - values[n] / refs[n] for n in objectives)


def weights(rng: Any, k: int) -> list[float]:
    """A weight vector drawn uniformly from the simplex (Dirichlet(1, ..., 1))."""
    w = [-math.log(max(rng.random(), 1e-300)) for _ in range(k)]
    s = sum(w)
    return [x / s for x in w]


def scalarise(vectors: Sequence[tuple[float, ...] | None], lam: Sequence[float]) -> list[float | None]:
    """ParEGO's augmented Tchebycheff scalarisation, as a score to maximise in [-rho, 1]:
    each objective is scaled to [0, 1] over `vectors` (1 = the best seen), then
    score = 1 - (max_i lam_i (1 - u_i) + rho * sum_i lam_i (1 - u_i)). None stays None."""
    real = [v for v in vectors if v is not None]
    if not real:
        return [None] * len(vectors)
    k = len(real[0])
    lows = [min(v[i] for v in real) for i in range(k)]
    spans = [max(v[i] for v in real) - lows[i] or 1.0 for i in range(k)]
    out: list[float | None] = []
    for v in vectors:
        if v is None:
            out.append(None)
            continue
        gaps = [lam[i] * (1.0 - (v[i] - lows[i]) / spans[i]) for i in range(k)]
        out.append(1.0 - (max(gaps) + AUGMENT * sum(gaps)))
    return out


# --pick: "knee", or conditions joined by "," / "and": METRIC OP NUMBER
PICK_METRICS = {
    "latency_ms": "latency",
    "latency": "latency",
    "params": "params",
    "flops": "flops",
    "macs": "macs",
    "ram_kb": "ram_kb",
    "flash_kb": "flash_kb",
    "accuracy": "accuracy",
    "val_accuracy": "accuracy",
    "energy_mj": "energy",
    "energy": "energy",
}
_COND = re.compile(r"^\s*([a-z_]+)\s*(<=|>=|<|>|==)\s*([-+0-9.eE_,]+)\s*(%?)\s*$")


@dataclass(frozen=True)
class Pick:
    knee: bool
    conditions: tuple[tuple[str, str, float], ...]  # (metric, op, value)

    def accepts(self, values: dict[str, float | None]) -> bool:
        for metric, op, bound in self.conditions:
            v = values.get(metric)
            if v is None:
                return False
            if not {"<=": v <= bound, ">=": v >= bound, "<": v < bound, ">": v > bound, "==": v == bound}[op]:
                return False
        return True

    def __str__(self) -> str:
        parts = ["knee"] if self.knee else []
        shown = {"latency": "latency_ms"}
        return ", ".join(parts + [f"{shown.get(m, m)} {op} {v:g}" for m, op, v in self.conditions])


def parse_pick(text: str) -> Pick:
    """'knee', 'latency_ms<=2', 'params<=50000, accuracy>=0.95' (or 'and' between conditions;
    accuracy as a fraction or with %)."""
    parts = [p for p in re.split(r",(?=\s*[a-z])|\band\b", text.strip()) if p.strip()]
    knee, conds = False, []
    for part in parts:
        if part.strip() == "knee":
            knee = True
            continue
        m = _COND.match(part)
        if not m or m.group(1) not in PICK_METRICS:
            raise ConfigError(
                f"--pick '{text}' does not parse at '{part.strip()}'; write knee or METRIC OP NUMBER with METRIC one of "
                f"{', '.join(sorted(PICK_METRICS))} and OP one of <= < >= > ==, e.g. --pick 'latency_ms<=2' "
                "or --pick 'params<=50000, knee'"
            )
        try:
            value = float(m.group(3).replace("_", "").replace(",", ""))
        except ValueError:
            raise ConfigError(f"--pick '{text}': '{m.group(3)}' is not a number") from None
        metric = PICK_METRICS[m.group(1)]
        if metric == "accuracy" and (m.group(4) == "%" or value > 1):
            value /= 100.0
        conds.append((metric, m.group(2), value))
    if not knee and not conds:
        raise ConfigError("--pick is empty; write knee or a condition such as 'latency_ms<=2'")
    return Pick(knee, tuple(conds))


def knee_order(points: Sequence[Sequence[float]]) -> list[int]:
    """Front members by distance to the ideal point in the front's own [0, 1] box (closest
    first): the knee is the member that gives up least, relative to the best of each objective."""
    if not points:
        return []
    k = len(points[0])
    lows = [min(p[i] for p in points) for i in range(k)]
    spans = [max(p[i] for p in points) - lows[i] or 1.0 for i in range(k)]
    dist = [math.sqrt(sum((1.0 - (p[i] - lows[i]) / spans[i]) ** 2 for i in range(k))) for p in points]
    return sorted(range(len(points)), key=lambda i: (dist[i], i))


REF_MARGIN = 1.1  # a run's hypervolume reference: 1.1 x its largest cost, accuracy 0


def summary(trials: Sequence[Any], objectives: Sequence[str]) -> dict[str, Any]:
    """A multi-objective run's result: its front (trial ids, best accuracy first), the
    reference point (accuracy 0, each cost at REF_MARGIN x the largest any finished child had)
    and the hypervolume of the front after each controller update, in the normalised space."""
    usable = [(t, trial_values(t)) for t in trials]
    usable = [(t, v) for t, v in usable if goodness(objectives, v) is not None]
    refs = {o: REF_MARGIN * max(v[o] for _, v in usable) for o in objectives if o != "accuracy"} if usable else {}
    members = front([t for t, _ in usable], objectives)
    per_update: list[list[float]] = []
    current: list[Any] = []
    by_update: dict[int, list[Any]] = {}
    for t, _ in usable:
        by_update.setdefault(int(t.origin_update), []).append(t)
    for u in sorted(by_update):
        current = front(current + by_update[u], objectives)
        points = [normalised(objectives, trial_values(t), refs) for t in current]  # type: ignore[arg-type]
        per_update.append([u, hypervolume(points, [0.0] * len(objectives))])
    return {
        "objectives": list(objectives),
        "trial_ids": [t.id for t in members],
        "reference": {"accuracy": 0.0, **refs},
        "hypervolume": per_update[-1][1] if per_update else 0.0,
        "hypervolume_per_update": per_update,
    }


def ranks(vectors: Sequence[tuple[float, ...] | None]) -> list[int]:
    """Non-dominated sorting (NSGA-II's): 0 for the front, 1 for the front of the rest, ...;
    a missing vector ranks below every real one."""
    out = [-1] * len(vectors)
    left = [i for i, v in enumerate(vectors) if v is not None]
    rank = 0
    while left:
        pts = [vectors[i] for i in left]
        layer = {left[j] for j, p in enumerate(pts) if not any(dominates(q, p) for q in pts)}
        for i in layer:
            out[i] = rank
        left = [i for i in left if i not in layer]
        rank += 1
    return [rank if r < 0 else r for r in out]
