"""Predictor-assisted controller (after Neural Architect's performance prediction).

The LSTM policy (trained by REINFORCE on every real result, as in Zoph & Le) is the cheap
proposal generator; a surrogate fitted to the results so far decides which proposals are worth
a training run. Each `propose(n, history)` (the history read from the search's store):

1. candidates: `candidates` sequences sampled from the policy in one batched pass, plus every
   one-decision neighbour of the `local_top` best results so far (local search around the
   incumbents, which is where a small budget is won) and, with `swaps` (default), every
   exchange of two decisions of the same kind (e.g. the operations of two cell edges): without
   it, a search could settle in a basin whose best cell differs from the optimum only by which
   edge holds which operation, a place no one-decision step leaves;
2. duplicates are dropped by the space's canonical key (isomorphic cells count once), and so is
   everything already evaluated or already proposed;
3. the surrogate — a Gaussian process with an exponential Hamming kernel on the action
   sequences, fitted to rank-normalised rewards (robust to the low reward of rejected
   children), its length scale and noise chosen by marginal likelihood — scores them by expected
   improvement over the best result; the `n` best go to training.

An incumbent that has stopped improving is left (its region abandoned: `radius` decisions around
it, by default only itself) once every one of its neighbours has been evaluated (`exhaust`), so a
surrogate that ranks the one better neighbour low cannot get the region closed on it. On NB201
this took the share of searches that find the best-validation network within 200 evaluations
from about 90 % (region of radius 3 closed after `patience` quiet updates) to 100/100.

Until `initial` results are in, proposals come from the policy alone (deduplicated).

When the search says which architectures it will accept (`set_feasibility`: a hard parameter
budget is known before anything is trained), only those are proposed: the ranked candidates are
checked lazily, best first, so a check runs for about as many candidates as a batch needs, and
a neighbour that is not feasible counts as done for `exhaust`. On NB201 under a median
parameter budget, this found the best feasible network within 50 evaluations far more often than
proposing everything and learning from the rejections.

Multi-objective (the history carries objective vectors, `History.vectors`): the history is ranked
by Pareto rank, this batch's random Tchebycheff scalarisation within a rank (ParEGO); every front
member is an incumbent in turn, and once `late_after` results are in, `late_local_share` of each
batch (instead of `local_share`) refines the front around its members. On the NAS-Bench-201
accuracy / FLOPs benchmark (benchmarks/pareto_nb201.py, 50 repetitions) the late shift from 0.5
to 0.875 took the mean hypervolume at 200 networks from 0.3626 to 0.3631 (Optuna's
multi-objective TPE: 0.3630), leaving 50 and 100, decided before it, unchanged.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
from scipy.linalg import solve_triangular
from scipy.spatial.distance import cdist
from scipy.special import ndtr

from edgenas.controllers.base import CONTROLLERS, History, complete_uniformly, neighbours, rng_from_state, rng_state
from edgenas.controllers.reinforce import ReinforceController
from edgenas.spaces.base import SearchSpace


def _normal_quantiles(values: np.ndarray) -> np.ndarray:
    """Rank-normalise: the i-th smallest of n values -> the (i + 0.5) / n normal quantile (ties share a rank)."""
    from statistics import NormalDist

    order = np.argsort(np.argsort(values, kind="stable"), kind="stable").astype(float)
    # equal values get the mean of their ranks
    for v in np.unique(values):
        tie = values == v
        if tie.sum() > 1:
            order[tie] = order[tie].mean()
    nd = NormalDist()
    return np.array([nd.inv_cdf((r + 0.5) / len(values)) for r in order])


class DistanceGP:
    """Gaussian process on feature vectors with
        k(a, b) = (1 - w) * exp(-|a - b|_1 / l) + w * cos(a, b)
    the first term local (on one-hot encodings of action sequences |a - b|_1 is twice the
    Hamming distance), the second additive in the features (main effects of each choice, which
    carry over to regions with no data yet). l, w and the noise are chosen by marginal likelihood."""

    LENGTHS = (0.25, 0.5, 1.0, 2.0)  # times the median distance between the training points
    WEIGHTS = (0.0, 0.3, 0.6)
    NOISES = (1e-3, 1e-2, 0.05, 0.2)

    def __init__(self, x: np.ndarray, y: np.ndarray, weights: Sequence[float] | None = None) -> None:
        self.x = x
        self.y = y
        d = self._distances(x, x)
        cos = self._cosines(x, x)
        scale = float(np.median(d[np.triu_indices(len(y), 1)])) if len(y) > 1 else 1.0
        scale = scale if scale > 0 else 1.0
        best = None
        for lf in self.LENGTHS:
            local = np.exp(-d / (lf * scale))
            for w in self.WEIGHTS if weights is None else weights:
                k = (1 - w) * local + w * cos
                for noise in self.NOISES:
                    try:
                        chol = np.linalg.cholesky(k + noise * np.eye(len(y)))
                    except np.linalg.LinAlgError:
                        continue
                    # triangular solves: O(n^2), where a general solve would factorise again
                    half = solve_triangular(chol, y, lower=True)
                    alpha = solve_triangular(chol.T, half, lower=False)
                    evidence = -0.5 * half @ half - np.log(np.diag(chol)).sum()
                    if best is None or evidence > best[0]:
                        best = (evidence, lf * scale, w, chol, alpha)
        assert best is not None
        _, self.length, self.weight, self.chol, self.alpha = best

    @staticmethod
    def _distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return cdist(a, b, "cityblock")

    @staticmethod
    def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        na = np.linalg.norm(a, axis=1, keepdims=True)
        nb = np.linalg.norm(b, axis=1, keepdims=True)
        return (a @ b.T) / np.clip(na * nb.T, 1e-12, None)

    def kernel(self, x: np.ndarray) -> np.ndarray:
        return (1 - self.weight) * np.exp(-self._distances(x, self.x) / self.length) + self.weight * self._cosines(
            x, self.x
        )

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ks = self.kernel(x)
        mean = ks @ self.alpha
        v = solve_triangular(self.chol, ks.T, lower=True)
        var = np.clip(1.0 - (v * v).sum(0), 1e-12, None)
        return mean, np.sqrt(var)


def expected_improvement(mean: np.ndarray, std: np.ndarray, best: float) -> np.ndarray:
    z = (mean - best) / std
    cdf = ndtr(z)
    pdf = np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    return (mean - best) * cdf + std * pdf


def _distance(a: Sequence[int], b: Sequence[int]) -> int:
    """Decisions that differ (Hamming, with a length difference counted as differences)."""
    return sum(1 for x, y in zip(a, b) if x != y) + abs(len(a) - len(b))


@CONTROLLERS.register
class PredictorController(ReinforceController):
    name = "predictor"

    def __init__(
        self,
        space: SearchSpace,
        seed: int = 0,
        candidates: int = 1000,
        local_top: int = 3,
        local_share: float = 0.5,
        initial: int = 8,
        uniform_candidates: int = 1000,
        explore_kappa: float = 2.5,
        spread: int = 3,
        explore: str = "tpe",
        gamma: float = 0.2,
        patience: int = 3,
        radius: int = 0,
        use_space_features: bool = True,
        swaps: bool = True,
        exhaust: bool = True,
        late_local_share: float = 0.875,
        late_after: int = 100,
        **options: Any,
    ) -> None:
        super().__init__(space, seed, **options)
        if candidates < 1 or local_top < 0 or initial < 1:
            raise ValueError("candidates and initial must be >= 1, local_top >= 0")
        if not 0.0 <= local_share <= 1.0 or not 0.0 <= late_local_share <= 1.0:
            raise ValueError("local_share and late_local_share must be in [0, 1]")
        if late_after < 0:
            raise ValueError("late_after must be >= 0")
        self.late_local_share = late_local_share
        self.late_after = late_after
        self.candidates = candidates
        self.local_top = local_top
        self.local_share = local_share
        self.initial = initial
        self.use_space_features = use_space_features
        self.swaps = bool(swaps)
        self.exhaust = bool(exhaust)
        if uniform_candidates < 0:
            raise ValueError("uniform_candidates must be >= 0")
        self.uniform_candidates = uniform_candidates
        if explore_kappa < 0:
            raise ValueError("explore_kappa must be >= 0")
        self.explore_kappa = explore_kappa
        if patience < 1 or radius < 0:
            raise ValueError("patience must be >= 1 and radius >= 0")
        self.patience = patience
        if spread < 1:
            raise ValueError("spread must be >= 1")
        self.spread = spread
        if explore not in ("tpe", "ucb"):
            raise ValueError("explore must be tpe or ucb")
        if not 0 < gamma < 1:
            raise ValueError("gamma must be in (0, 1)")
        self.explore = explore
        self.gamma = gamma
        self.radius = radius
        self.banned: list[list[int]] = []  # centres of abandoned regions
        self.stale = 0  # updates since the best reward last improved
        self.rng = np.random.default_rng(seed)
        # views of the history `propose` / `learn` were given (`_read`), not state:
        self.history: list[tuple[list[int], float]] = []  # (actions, reward at the first rung)
        self.promoted: dict[str, tuple[int, float]] = {}  # multi-fidelity: key -> (highest rung, reward there)
        self.vectors: dict[str, tuple[float, ...]] = {}  # multi-objective: key -> objective vector (maximised)
        self._lam: list[float] | None = None  # multi-objective: this batch's scalarisation weights
        self._mo_scored: list[tuple[list[int], float]] | None = None  # scored() for this batch's weights
        self._keys: dict[tuple[int, ...], str] = {}  # canonical keys already computed (a cache)
        self._feasible: dict[str, bool] = {}  # feasibility by canonical key (a cache)
        self.last_stats: dict[str, float] = {}
        # the surrogate's prediction for each network it chose for the batch in flight (key -> mean),
        # set by `propose`, scored against the results in `learn`; a diagnostic, not state
        self._predicted: dict[str, float] = {}
        self._last_mean: np.ndarray | None = None

    def _key(self, actions: Sequence[int]) -> str:
        seq = tuple(actions)
        key = self._keys.get(seq)
        if key is None:
            try:
                key = self.space.decode(actions).key()
            except Exception:
                key = repr(list(actions))
            if len(self._keys) > 200_000:
                self._keys.clear()
            self._keys[seq] = key
        return key

    def set_feasibility(self, check) -> None:  # type: ignore[no-untyped-def]
        super().set_feasibility(check)
        self._feasible = {}

    def _ok(self, actions: Sequence[int]) -> bool:
        """Would the search accept it (always, without a feasibility check)?"""
        if self.feasible is None:
            return True
        key = self._key(actions)
        ok = self._feasible.get(key)
        if ok is None:
            try:
                ok = bool(self.feasible(actions))
            except Exception:  # the search's own gate records what is wrong with it
                ok = True
            self._feasible[key] = ok
        return ok

    def _fill(self, n: int) -> list[list[int]]:
        """`n` policy samples; with a feasibility check, feasible ones where the policy gives them."""
        if self.feasible is None:
            return self.sample_batch(n)
        good = [s for s in self.sample_batch(4 * n) if self._ok(s)][:n]
        return good + self.sample_batch(n - len(good)) if len(good) < n else good

    def _read(self, history: History) -> None:
        """The history as this controller ranks it: results by network key (two sequences that
        build one network share its rung and objective vector)."""
        self.history = history.told()
        self.promoted = {self._key(a): (int(rung), float(r)) for a, (rung, r) in history.rungs.items()}
        self.vectors = {self._key(a): tuple(v) for a, v in history.vectors.items()}
        self._mo_scored = None

    def _front_keys(self) -> set[str]:
        from edgenas.pareto import non_dominated

        keys = list(self.vectors)
        return {keys[i] for i in non_dominated([self.vectors[k] for k in keys])}

    def scored(self) -> list[tuple[list[int], float]]:
        """The history with one comparable score each: the reward without multi-fidelity; with
        it, an order-preserving score of (highest rung, reward at that rung), so rewards of
        different rungs are never compared (a child at a higher rung ranks above every child
        below it: it got there by beating them at the lower one). Multi-objective: every
        result's objective vector scalarised with this batch's weights (ParEGO), a child without
        a vector (rejected, failed) below every one with."""
        if self._lam is not None:
            if self._mo_scored is None:  # once per batch: propose asks three times
                from edgenas.pareto import ranks, scalarise

                vecs = [self.vectors.get(self._key(a)) for a, _ in self.history]
                scores = scalarise(vecs, self._lam)
                # the Pareto rank first (the front above everything it dominates), this batch's
                # trade-off within a rank (scalarised scores lie in [-0.05, 1], half a rank at most)
                self._mo_scored = [
                    (a, -float(rank) + 0.5 * (0.0 if x is None else x))
                    for (a, _), rank, x in zip(self.history, ranks(vecs), scores)
                ]
            return self._mo_scored
        if not self.promoted:
            return self.history
        rewards = [r for _, r in self.history] + [r for _, r in self.promoted.values()]
        low, span = min(rewards), max(rewards) - min(rewards) + 1.0
        out = []
        for a, r in self.history:
            rung, reward = self.promoted.get(self._key(a), (0, r))
            out.append((a, rung * span + (reward - low)))
        return out

    def propose(self, n: int, history: History) -> list[list[int]]:
        self._read(history)
        if self.vectors:  # multi-objective: a new trade-off for this batch (ParEGO)
            from edgenas.pareto import weights

            self._lam = weights(self.rng, len(next(iter(self.vectors.values()))))
            self._mo_scored = None
        ranked = [a for a, _ in sorted(self.scored(), key=lambda item: -item[1])]
        taken = {self._key(a) for a, _ in self.history}
        if self.stale >= self.patience and ranked:
            self._restart(ranked, taken)
        pool, local = self._pool(ranked, taken)
        if not pool:  # everything the policy proposes is known: let the search reuse results
            return self.sample_batch(n)
        keys = list(pool)
        if len(self.history) < self.initial:
            if self.feasible is None:
                return ([pool[k] for k in keys] + self.sample_batch(n))[:n]
            first: list[list[int]] = []
            for k in keys:
                if len(first) == n:
                    break
                if self._ok(pool[k]):
                    first.append(pool[k])
            return first + self._fill(n - len(first)) if len(first) < n else first
        out = [pool[k] for k in self._choose(pool, local, n)]
        if len(out) < n:
            out += self._fill(n - len(out))
        return out

    def _restart(self, ranked: list[list[int]], taken: set[str]) -> None:
        """A local optimum: nothing better for `patience` updates. Restart (TuRBO-style): the
        region within `radius` decisions of this incumbent is left for good, local search and
        exploration continue elsewhere. With `exhaust`, only once every neighbour of the incumbent
        has been evaluated (or after `4 * patience` updates): a surrogate that ranks the one
        better neighbour low must not get the region closed on it."""
        centre = next((a for a in ranked if self._eligible(a)), None)
        if centre is None:
            self.stale = 0
        elif (
            not self.exhaust
            or self.stale >= 4 * self.patience
            or all(self._key(s) in taken or not self._ok(s) for s in neighbours(self.space, centre, swaps=self.swaps))
        ):
            self.banned.append(list(centre))
            self.stale = 0

    def _pool(self, ranked: list[list[int]], taken: set[str]) -> tuple[dict[str, list[int]], list[list[str]]]:
        """The candidates (key -> actions; not yet evaluated) and, per incumbent, best first, the
        keys of its unevaluated neighbours. Lists, not sets: the order breaks ties and must not
        depend on Python's per-process string hashing, or a resumed search would propose
        differently."""
        pool: dict[str, list[int]] = {}
        local: list[list[str]] = []

        def offer(seqs: list[list[int]]) -> list[str]:
            keys: list[str] = []
            for s in seqs:
                k = self._key(s)
                if k not in taken:
                    pool.setdefault(k, s)
                    if k not in keys:
                        keys.append(k)
            return keys

        multi = self._lam is not None
        if self.local_top and len(self.history) >= self.initial:
            incumbents: list[list[int]] = []  # the best results, at least `spread` decisions apart
            if multi:  # multi-objective: every front member is an incumbent (this batch's favourites first)
                front_keys = self._front_keys()
                incumbents = [a for a in ranked if self._key(a) in front_keys and self._eligible(a)][
                    : 4 * self.local_top
                ]
            for seq in [] if multi else ranked:
                if len(incumbents) == self.local_top:
                    break
                if self._eligible(seq) and all(_distance(seq, other) >= self.spread for other in incumbents):
                    incumbents.append(seq)
            for seq in incumbents:
                local.append(offer(neighbours(self.space, seq, swaps=self.swaps)))
        offer(self.sample_batch(self.candidates))
        # uniform samples keep the pool diverse when the policy has collapsed onto one region
        offer([complete_uniformly(self.space, [], self.rng) for _ in range(self.uniform_candidates)])
        return pool, local

    def _choose(self, pool: dict[str, list[int]], local: list[list[str]], n: int) -> list[str]:
        """Up to `n` keys of the pool: part of the batch to the incumbents' most promising
        neighbours (expected improvement), the rest by optimism over the whole pool."""
        keys = list(pool)
        multi = self._lam is not None
        cand_seqs = [pool[k] for k in keys]
        ei, ucb = self._acquisition(cand_seqs)
        scores = dict(zip(keys, ei))
        optimism = dict(zip(keys, ucb if self.explore == "ucb" else self._density_ratio(cand_seqs)))
        chosen: list[str] = []
        # multi-objective: once `late_after` results are in, more of each batch refines the front
        share = self.late_local_share if multi and len(self.history) >= self.late_after else self.local_share
        n_local = int(math.ceil(n * share))
        if multi:  # round robin over the front members: the best neighbour of each in turn
            queues = [sorted(group, key=lambda k: -scores[k]) for group in local]
            while len(chosen) < n_local and any(queues):
                for q in queues:
                    while q and (q[0] in chosen or not self._ok(pool[q[0]])):
                        q.pop(0)
                    if q and len(chosen) < n_local:
                        chosen.append(q.pop(0))
        for group in [] if multi else local:
            for k in sorted((k for k in group if k not in chosen), key=lambda k: -scores[k]):
                if len(chosen) >= n_local:
                    break
                if self._ok(pool[k]):
                    chosen.append(k)
        # the rest explores: upper confidence bound over the whole pool
        for k in sorted(keys, key=lambda k: -optimism[k]):
            if len(chosen) >= n:
                break
            if k not in chosen and self._eligible(pool[k]) and self._ok(pool[k]):
                chosen.append(k)
        if self._last_mean is not None:
            index = {k: i for i, k in enumerate(keys)}
            self._predicted = {k: float(self._last_mean[index[k]]) for k in chosen}
        return chosen

    def _features(self, seqs: Sequence[Sequence[int]], width: int) -> np.ndarray:
        """A one-hot encoding of the action at each position (sequences padded to `width`),
        followed by the space's own surrogate features (`space.features(arch)`) where it has them."""
        size = max(k.size for k in self.space.kinds) + 1
        x = np.zeros((len(seqs), width * size))
        for i, s in enumerate(seqs):
            padded = list(s) + [size - 1] * (width - len(s))
            x[i, np.arange(width) * size + np.array(padded, dtype=int)] = 1.0
        if self.use_space_features and hasattr(self.space, "features"):
            extra = np.array([self.space.features(self.space.decode(s)) for s in seqs], dtype=float)  # type: ignore[attr-defined]
            x = np.hstack([x, extra])
        return x

    def _acquisition(self, cands: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
        """Expected improvement and upper confidence bound (mean + explore_kappa * std) per candidate."""
        scored = self.scored()
        seqs = [a for a, _ in scored]
        width = max(max(len(s) for s in seqs), max(len(s) for s in cands))
        y = _normal_quantiles(np.array([r for _, r in scored]))
        gp = DistanceGP(self._features(seqs, width), y - y.mean())
        mean, std = gp.predict(self._features(cands, width))
        self.last_stats = {"surrogate_length": gp.length, "candidates": float(len(cands))}
        self._last_mean = mean
        return expected_improvement(mean, std, float((y - y.mean()).max())), mean + self.explore_kappa * std

    def _density_ratio(self, cands: list[list[int]]) -> np.ndarray:
        """TPE's criterion l(x) / g(x) (Bergstra et al. 2011): per position, categorical densities
        of the choices among the best `gamma` of the results (l) and the rest (g), smoothed by one
        pseudo-count per option; sequences score the product over positions (log-sum here)."""
        ranked = sorted(self.scored(), key=lambda item: -item[1])
        n_good = max(1, int(math.ceil(self.gamma * len(ranked))))
        width = max(max(len(a) for a, _ in ranked), max(len(c) for c in cands))
        size = max(k.size for k in self.space.kinds) + 1
        pad = size - 1

        def counts(seqs: list[list[int]]) -> np.ndarray:
            c = np.ones((width, size))
            for s in seqs:
                padded = list(s) + [pad] * (width - len(s))
                c[np.arange(width), padded] += 1
            return np.log(c / c.sum(1, keepdims=True))

        good = counts([a for a, _ in ranked[:n_good]])
        bad = counts([a for a, _ in ranked[n_good:]])
        x = np.array([list(c) + [pad] * (width - len(c)) for c in cands])
        rows = np.arange(width)
        return (good[rows, x] - bad[rows, x]).sum(1)

    def _eligible(self, seq: Sequence[int]) -> bool:
        """Outside every abandoned region (more than `radius` decisions from its centre)."""
        return all(_distance(seq, c) > self.radius for c in self.banned)

    def learn(self, history: History) -> dict[str, float]:
        actions, rewards = history.last()
        self._read(history.before_last())
        best = max((r for _, r in self.history), default=None)
        if self.vectors:  # multi-objective: stale while no new child joins the front
            from edgenas.pareto import dominates

            new = [self.vectors.get(self._key(a)) for a in actions]
            old = [v for k, v in self.vectors.items() if k not in {self._key(a) for a in actions}]
            joined = any(v is not None and not any(dominates(o, v) or o == v for o in old) for v in new)
            self.stale = 0 if joined or best is None else self.stale + 1
        else:
            self.stale = 0 if best is None or max(rewards) > best else self.stale + 1
        stats = super().learn(history)
        self._mo_scored = None
        return {**stats, **self.last_stats, **self._surrogate_record(actions, rewards)}

    def _surrogate_record(self, actions: Sequence[Sequence[int]], rewards: Sequence[float]) -> dict[str, float]:
        """How well the surrogate's predictions for this batch's chosen networks ranked the results
        they then got (Spearman's rho; absent before the surrogate chooses, with fewer than three
        scored networks, or where predictions or results are all equal), and how many it predicted."""
        predicted = [(self._predicted[k], float(r)) for a, r in zip(actions, rewards)
                     if (k := self._key(a)) in self._predicted]  # fmt: skip
        self._predicted, self.last_stats = {}, {}
        if len(predicted) < 3:
            return {}
        from scipy.stats import spearmanr

        out = {"surrogate_predicted": float(len(predicted))}
        if len({p for p, _ in predicted}) > 1 and len({r for _, r in predicted}) > 1:  # else no ranking to compare
            out["surrogate_spearman"] = float(spearmanr([p for p, _ in predicted], [r for _, r in predicted]).statistic)
        return out

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "rng": rng_state(self.rng),
            "banned": [list(c) for c in self.banned],
            "stale": self.stale,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.rng = rng_from_state(state["rng"])
        self.banned = [list(c) for c in state["banned"]]
        self.stale = int(state["stale"])
