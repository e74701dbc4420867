"""Multi-objective search: fronts, hypervolume and picks checked against brute force, and the
whole path on digits through the CLI: --objectives, the front in the database, --pick, a
resumed search making the same decisions as an uninterrupted one after kill -9."""

import itertools
import json
import signal
import sqlite3

import numpy as np
import pytest
from test_faults import cli

import edgenas
from edgenas import pareto
from edgenas.errors import ConfigError


def test_non_dominated_matches_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(50):
        pts = [tuple(p) for p in rng.integers(0, 6, size=(int(rng.integers(1, 25)), int(rng.integers(2, 4))))]
        front = pareto.non_dominated(pts)
        for i, p in enumerate(pts):
            dominated = any(all(a >= b for a, b in zip(q, p)) and q != p for q in pts)
            assert (i in front) == (not dominated and pts.index(p) == i)


def test_ranks_peel_fronts_in_order():
    pts = [(3, 1), (1, 3), (2, 2), (1, 1), (0, 0), None, (2, 1)]
    assert pareto.ranks(pts) == [0, 0, 0, 2, 3, 4, 1]


def test_hypervolume_is_exact_in_two_and_three_dimensions():
    assert pareto.hypervolume([(3, 1), (1, 3), (2, 2)], (0, 0)) == 3 + 1 + 2  # three unit-wide steps
    assert pareto.hypervolume([(1, 1)], (2, 0)) == 0.0  # below the reference: nothing
    rng = np.random.default_rng(1)
    for _ in range(20):  # integer points: count the unit cells dominated
        pts = [tuple(p) for p in rng.integers(1, 6, size=(int(rng.integers(1, 9)), 3))]
        cells = sum(
            1 for c in itertools.product(range(6), repeat=3) if any(all(c[i] < p[i] for i in range(3)) for p in pts)
        )
        assert pareto.hypervolume(pts, (0, 0, 0)) == pytest.approx(cells)


def test_pick_expressions_parse_accept_and_refuse():
    p = pareto.parse_pick("params<=50_000, accuracy>=95%")
    assert p.conditions == (("params", "<=", 50000.0), ("accuracy", ">=", 0.95)) and not p.knee
    assert p.accepts({"params": 40000, "accuracy": 0.96}) and not p.accepts({"params": 60000, "accuracy": 0.99})
    assert pareto.parse_pick("knee and latency_ms<2").knee
    for bad in ("latency_ms=<2", "speed<=3", "", "params<=lots"):
        with pytest.raises(ConfigError):
            pareto.parse_pick(bad)
    with pytest.raises(ConfigError, match="unknown objective"):
        pareto.parse_objectives("accuracy,speed")
    with pytest.raises(ConfigError, match="at least one of"):
        pareto.parse_objectives("accuracy")


def test_scalarised_scores_rank_the_weighted_objective():
    vecs = [(0.9, -5.0), (0.5, -1.0), None]
    acc_first = pareto.scalarise(vecs, [1.0, 0.0])
    cost_first = pareto.scalarise(vecs, [0.0, 1.0])
    assert acc_first[0] > acc_first[1] and cost_first[1] > cost_first[0] and acc_first[2] is None


MO = """
[search]
children = 12
architectures_per_update = 4
device = "cpu"
runs_dir = "{runs}"
[space]
max_layers = 2
filters = [4, 8, 16]
kernels = [1, 3]
[training]
epochs = 1
[final_training]
epochs = 1
[reward]
objectives = ["accuracy", "params", "flops"]
"""


def _values(run_dir):
    return {t.id: pareto.trial_values(t) for t in edgenas.load_run(run_dir).trials("ok")}


@pytest.mark.slow
def test_front_pick_and_resume_through_the_cli(tmp_path):
    path = tmp_path / "mo.toml"
    path.write_text(MO.format(runs=tmp_path / "runs"))
    ref = cli(["search", "--pipeline", str(path), "--name", "ref"], tmp_path)
    assert ref.returncode == 0, ref.stderr
    assert "Pareto front (accuracy, params, flops)" in " ".join(ref.stdout.split())
    run_dir = tmp_path / "runs" / "ref"
    values = _values(run_dir)
    objs = ("accuracy", "params", "flops")
    vec = {i: pareto.goodness(objs, v) for i, v in values.items()}
    stored = json.loads(sqlite3.connect(run_dir / "search.db").execute(
        "SELECT value FROM meta WHERE key = 'pareto'").fetchone()[0])  # fmt: skip
    members = set(stored["trial_ids"])
    assert members and members == {t.id for t in edgenas.load_run(run_dir).front}
    for i in values:  # members are not dominated; everyone else is dominated by a member
        dominated = any(pareto.dominates(vec[j], vec[i]) for j in members)
        assert (i in members) == (not dominated) or vec[i] in [vec[j] for j in members]
    assert stored["hypervolume_per_update"][-1][1] == stored["hypervolume"] > 0
    hv = [v for _, v in stored["hypervolume_per_update"]]
    assert hv == sorted(hv)  # a front only grows

    # --pick: the most accurate member under a parameter limit between the smallest and largest
    sizes = sorted(values[i]["params"] for i in members)
    limit = sizes[len(sizes) // 2]
    want = max((i for i in members if values[i]["params"] <= limit), key=lambda i: (values[i]["accuracy"], -i))
    res = cli(["export", str(run_dir), "--pick", f"params<={limit}"], tmp_path)
    assert res.returncode == 0, res.stderr
    bundle = json.loads((run_dir / "bundle" / "manifest.json").read_text())
    assert bundle["source"]["trial_id"] == want and bundle["pick"]["expression"] == f"params <= {limit:g}"
    res = cli(["export", str(run_dir), "--pick", "knee", "--top", "2", "--out", str(tmp_path / "knee")], tmp_path)
    assert res.returncode == 0, res.stderr
    knee = [
        json.loads((tmp_path / "knee" / f"rank-{r}" / "manifest.json").read_text())["source"]["trial_id"]
        for r in (1, 2)
    ]
    order = pareto.knee_order([vec[i] for i in sorted(members, key=lambda i: (-values[i]["accuracy"], i))])
    ranked = sorted(members, key=lambda i: (-values[i]["accuracy"], i))
    assert knee == [ranked[k] for k in order[:2]]
    res = cli(["export", str(run_dir), "--pick", "params<=1"], tmp_path)
    assert res.returncode == 2 and "no member of the front satisfies --pick 'params <= 1'" in res.stderr
    assert f"trial {want}:" in res.stderr  # the front is listed
    rep = cli(["report", str(run_dir)], tmp_path)
    assert rep.returncode == 0 and "hypervolume per update" in rep.stdout
    html = (run_dir / "report.html").read_text()
    assert "Pareto front (" in html and f"params &lt;= {limit:g}" in html  # the picked member is marked

    # kill -9 during training and during a database write; the resumed run decides the same
    crash = tmp_path / "runs" / "crash"
    first = cli(["search", "--pipeline", str(path), "--name", "crash"], tmp_path, fault="train:6")
    assert first.returncode == -signal.SIGKILL, first.stderr
    second = cli(["search", "--resume", str(crash)], tmp_path, fault="db-write:3")
    assert second.returncode == -signal.SIGKILL, second.stderr
    done = cli(["search", "--resume", str(crash)], tmp_path)
    assert done.returncode == 0, done.stderr

    def snapshot(d):
        db = sqlite3.connect(d / "search.db")
        trials = db.execute("SELECT id, arch_key, status, val_accuracy FROM trials ORDER BY id").fetchall()
        samples = db.execute("SELECT update_index, position, arch_key FROM samples ORDER BY 1, 2").fetchall()
        front = json.loads(db.execute("SELECT value FROM meta WHERE key = 'pareto'").fetchone()[0])
        return trials, samples, front["trial_ids"], front["hypervolume"]

    assert snapshot(crash) == snapshot(run_dir)


@pytest.mark.slow
def test_an_energy_front_on_the_pi5_under_litert(tmp_path):
    """`--objectives accuracy,energy --profile pi5-litert`: every trained child has a predicted
    energy, the front trades accuracy for energy, `--pick energy_mj<=X` exports the most accurate
    member under X, the report shows energies; a profile without energy data is refused."""
    path = tmp_path / "mo.toml"
    path.write_text(MO.format(runs=tmp_path / "runs").replace('"params", "flops"', '"energy"'))
    ref = cli(["search", "--pipeline", str(path), "--name", "e", "--profile", "pi5-litert"], tmp_path)
    assert ref.returncode == 0, ref.stderr
    run_dir = tmp_path / "runs" / "e"
    values = _values(run_dir)
    assert values and all(v["energy"] is not None and v["energy"] > 0 for v in values.values())
    members = {t.id for t in edgenas.load_run(run_dir).front}
    vec = {i: pareto.goodness(("accuracy", "energy"), v) for i, v in values.items()}
    assert members and all(not any(pareto.dominates(vec[j], vec[i]) for j in values) for i in members)
    energies = sorted(values[i]["energy"] for i in members)
    limit = energies[len(energies) // 2]
    want = max((i for i in members if values[i]["energy"] <= limit), key=lambda i: (values[i]["accuracy"], -i))
    res = cli(["export", str(run_dir), "--pick", f"energy_mj<={limit}"], tmp_path)
    assert res.returncode == 0, res.stderr
    bundle = json.loads((run_dir / "bundle" / "manifest.json").read_text())
    assert bundle["source"]["trial_id"] == want
    assert bundle["models"]["fp32"]["energy_mj"] == pytest.approx(values[want]["energy"], rel=1e-6)
    assert cli(["report", str(run_dir)], tmp_path).returncode == 0
    html = (run_dir / "report.html").read_text()
    assert "energy vs accuracy" in html and "energy mJ" in html  # the objective plot and the front table
    refused = cli(["search", "--objectives", "accuracy,energy", "--profile", "cpu-x86", "-n", "2"], tmp_path)
    assert refused.returncode == 2 and "has no energy data" in refused.stderr
