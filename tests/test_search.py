import dataclasses
import json
import sqlite3
from pathlib import Path

import onnx
import onnxruntime as ort
import pytest

import edgenas
from edgenas.errors import BudgetError, ConfigError
from edgenas.loop.run import Progress, run_search
from edgenas.settings.pipeline import load_pipeline


def test_tiny_search_end_to_end(tiny_pipeline, digits):
    pipe = load_pipeline(tiny_pipeline(children=9, budget=800))
    seen: list[Progress] = []
    result = run_search(pipe, run_name="t", on_progress=seen.append)
    run = result.run_dir
    assert (run / "search.db").is_file() and (run / "winner.onnx").is_file() and (run / "manifest.json").is_file()
    assert seen[-1].sampled == 9 and seen[-1].phase == "winner"
    assert result.manifest["search"]["stopped_by"] == "children"

    conn = sqlite3.connect(run / "search.db")
    rows = conn.execute("SELECT status, params, train_seconds, onnx_path, reward, reward_terms FROM trials").fetchall()
    assert conn.execute("SELECT COUNT(*) FROM samples").fetchone()[0] == 9
    assert len(rows) + result.manifest["search"]["reused"] == 9
    assert any(r[0] == "rejected" for r in rows), "budget 800 should reject some of this space"
    for status, params, train_s, onnx_path, reward, terms in rows:
        if status == "ok":
            assert params <= 800 and train_s > 0 and onnx_path
            assert json.loads(terms)["total"] == pytest.approx(reward)
        if status == "rejected":
            assert params > 800 and train_s is None and onnx_path is None and reward == 0.0

    manifest = json.loads((run / "manifest.json").read_text())
    w = manifest["winner"]
    assert w["params"] <= 800
    assert w["latency"]["label"] == "predicted" and w["latency"]["host_median_ms"] > 0  # cpu-arm: board ms
    assert manifest["profile"]["name"] == "cpu-arm" and manifest["profile"]["fingerprint"]
    assert manifest["reward"]["budget_params"] == 800
    assert set(manifest["versions"]) >= {"torch", "onnx", "onnxruntime", "thop", "edgenas"}
    assert w["onnx"]["parity_max_abs_diff"] < 1e-4

    # winner.onnx in a plain session, on the real test split, gives the recorded test accuracy
    sess = ort.InferenceSession(str(run / "winner.onnx"), providers=["CPUExecutionProvider"])
    logits = sess.run(None, {"input": digits.x_test.numpy()})[0]
    acc = float((logits.argmax(1) == digits.y_test.numpy()).mean())
    assert acc == pytest.approx(w["test_accuracy"], abs=1 / len(digits.y_test))
    meta = {p.key: p.value for p in onnx.load(str(run / "winner.onnx")).metadata_props}
    assert json.loads(meta["classes"]) == [str(i) for i in range(10)]
    assert meta["profile"] == "cpu-arm"


def test_the_default_controller_is_told_the_budget_and_proposes_nothing_over_it(tiny_pipeline):
    """The same space and budget that make REINFORCE propose over-budget children (test above):
    the predictor asks the search's own parameter count first, so no sample is spent on a rejection."""
    path = tiny_pipeline(children=9, budget=800)
    with open(path) as fh:
        text = fh.read().replace('name = "reinforce"', 'name = "predictor"')
    with open(path, "w") as fh:
        fh.write(text)
    result = run_search(load_pipeline(path), run_name="p")
    conn = sqlite3.connect(result.run_dir / "search.db")
    rows = conn.execute("SELECT status, params FROM trials").fetchall()
    assert conn.execute("SELECT COUNT(*) FROM samples").fetchone()[0] == 9
    assert rows and all(status == "ok" and params <= 800 for status, params in rows), rows
    assert result.manifest["search"]["rejected"] == 0


def test_repeated_architectures_are_trained_once(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text(
        f"""
[search]
children = 8
architectures_per_update = 4
device = "cpu"
runs_dir = "{tmp_path / "runs"}"
[space]
max_layers = 1
filters = [4]
kernels = [1, 3]
strides = [1]
[training]
epochs = 1
"""
    )
    result = run_search(load_pipeline(str(path)))
    conn = sqlite3.connect(result.run_dir / "search.db")
    assert conn.execute("SELECT COUNT(*) FROM trials").fetchone()[0] == 2  # only two networks exist
    assert conn.execute("SELECT SUM(reused) FROM samples").fetchone()[0] == 6
    # a reused sample carries the stored trial's reward
    bad = conn.execute(
        "SELECT COUNT(*) FROM samples s JOIN trials t ON s.trial_id = t.id WHERE s.reward != t.reward"
    ).fetchone()[0]
    assert bad == 0


def test_same_seed_same_search(tiny_pipeline):
    pipe = load_pipeline(tiny_pipeline(children=4))
    a = run_search(pipe, run_name="a")
    b = run_search(pipe, run_name="b")
    rows = lambda r: (
        sqlite3.connect(r.run_dir / "search.db")
        .execute(  # noqa: E731
            "SELECT arch_key, val_accuracy, params FROM trials ORDER BY id"
        )
        .fetchall()
    )
    assert rows(a) == rows(b)


def test_budget_below_smallest_network_fails_before_training(tiny_pipeline, tmp_path):
    pipe = load_pipeline(tiny_pipeline(budget=20))
    with pytest.raises(BudgetError, match="smallest network"):
        run_search(pipe)
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_depth_curriculum_starts_shallow_and_deepens(tmp_path):
    """Zoph & Le's curriculum: one layer for the first two updates, then up to three."""
    path = tmp_path / "p.toml"
    path.write_text(
        f"""
[search]
children = 40
architectures_per_update = 4
device = "cpu"
runs_dir = "{tmp_path / "runs"}"
profile = "mcu-m7"
curriculum_start = 1
curriculum_every = 2
start = ["0:c4k1s1<in"]
[space]
max_layers = 3
filters = [4]
kernels = [1, 3]
[training]
epochs = 1
[reward]
budget_params = 100000
"""
    )
    result = run_search(load_pipeline(str(path)), run_name="c")
    conn = sqlite3.connect(result.run_dir / "search.db")
    rows = conn.execute(
        "SELECT s.update_index, t.arch FROM samples s JOIN trials t ON t.id = s.trial_id ORDER BY s.update_index"
    ).fetchall()
    depth = {}
    for update, arch in rows:
        depth.setdefault(update, []).append(len(json.loads(arch)["layers"]))
    assert all(d == 1 for u in (0, 1) for d in depth[u])
    assert all(d <= 2 for u in (2, 3) for d in depth[u])
    assert max(d for u in range(4, 10) for d in depth[u]) == 3
    # a start within the first updates' depth is accepted and evaluated first; a deeper one is refused
    first = conn.execute("SELECT arch_key FROM samples ORDER BY update_index, position LIMIT 1").fetchone()
    assert first == ("layerwise|0:c4k1s1<in",)
    deep = path.read_text().replace('start = ["0:c4k1s1<in"]', 'start = ["0:c4k1s1<in|1:c4k3s1<0"]')
    path.write_text(deep.replace(str(tmp_path / "runs"), str(tmp_path / "runs2")))
    with pytest.raises(ConfigError, match="deeper than the depth curriculum allows"):
        run_search(load_pipeline(str(path)), run_name="d")
    assert not (tmp_path / "runs2").exists()


def test_start_networks_are_evaluated_first_then_the_controller_goes_on(tiny_pipeline, tmp_path):
    """--start: the given networks are the first samples, in order, across updates (3 per update
    here), before the controller proposes; a resumed search would replay them the same way."""
    starts = ("layerwise|0:c8k3s1<in|1:c16k3s2<0", "layerwise|0:c4k1s1<in", "layerwise|0:c16k3s2<in", "0:c4k3s1<in")
    pipe = load_pipeline(tiny_pipeline(children=7, budget=5000))
    pipe = dataclasses.replace(pipe, search=dataclasses.replace(pipe.search, start=starts, templates=False))
    result = run_search(pipe, run_name="s")
    conn = sqlite3.connect(result.run_dir / "search.db")
    keys = [k for (k,) in conn.execute("SELECT arch_key FROM samples ORDER BY update_index, position")]
    assert len(keys) == 7
    assert keys[:4] == [s if s.startswith("layerwise|") else "layerwise|" + s for s in starts]
    # the controller's own samples come after and are real networks of the space
    assert all(k.startswith("layerwise|0:") for k in keys[4:])
    statuses = dict(conn.execute("SELECT arch_key, status FROM trials"))
    assert statuses[starts[0]] == "ok"


@pytest.mark.parametrize(
    "start, message",
    [
        ("layerwise|0:c32k3s1<in", "filters 32 is not one of"),  # not an option of this space
        ("layerwise|0:c8k3s1<in|1:c8k3s1<in|2:c8k3s1<1|3:c8k3s1<2", "sequence"),  # deeper than max_layers
        ("mobile|w16:k3e1", "not 0:c"),  # another space's key
        ("layerwise|0:c16k3s1<in|1:c16k3s1<0|2:c16k3s1<1", "over the search's limits"),  # over --budget
    ],
)
def test_a_bad_start_network_is_refused_before_the_run_directory_exists(tiny_pipeline, tmp_path, start, message):
    pipe = load_pipeline(tiny_pipeline(budget=2000))
    pipe = dataclasses.replace(pipe, search=dataclasses.replace(pipe.search, start=(start,)))
    with pytest.raises(ConfigError, match="search.start") as info:
        run_search(pipe)
    assert message in str(info.value)
    assert not (tmp_path / "runs").exists()


def test_a_start_over_a_graph_only_latency_limit_is_refused_before_the_run_directory_exists(tiny_pipeline, tmp_path):
    """A profile that predicts latency from the graph alone knows a start's latency before
    training: one over --max-latency-ms is refused like one over --budget."""
    arm = Path(edgenas.__file__).parent.parent / "hardware_profiles" / "cpu-arm.toml"
    text = "".join(
        line if not line.startswith(("host_calibration", "calibration")) else ""
        for line in arm.read_text().splitlines(keepends=True)
    )
    profile = tmp_path / "graph-only.toml"
    profile.write_text(text + f'calibration = "{arm.parent / "cpu-arm.calibration.json"}"\n')
    pipe = load_pipeline(tiny_pipeline(budget=20000))
    start = "layerwise|0:c16k3s1<in|1:c16k3s1<0"
    pipe = dataclasses.replace(
        pipe,
        search=dataclasses.replace(pipe.search, start=(start,), profile=str(profile)),
        reward=dataclasses.replace(pipe.reward, max_latency_ms=1e-4, latency_limit="hard"),
    )
    with pytest.raises(ConfigError, match="search.start") as info:
        run_search(pipe)
    assert "over the search's limits" in str(info.value) and "latency" in str(info.value)
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_max_minutes_starts_no_training_after_the_limit_not_even_inside_an_update(tiny_pipeline):
    """--max-minutes is a deadline for every training job, not only for starting an update: an
    update that would run past it is cut (its finished children are kept, with their samples),
    so the search overruns by at most one child's training, not by a whole update."""
    import time

    limit_s = 6.0
    pipe = (
        load_pipeline(tiny_pipeline(children=60))
        .override("training", epochs=15)
        .override("search", architectures_per_update=10, max_minutes=limit_s / 60)
    )
    t0 = time.time()
    result = run_search(pipe, run_name="deadline")
    conn = sqlite3.connect(result.run_dir / "search.db")
    trained = conn.execute(
        "SELECT id, finished_at, train_seconds FROM trials WHERE status = 'ok' ORDER BY id"
    ).fetchall()
    assert trained and result.manifest["winner"] is not None
    assert result.manifest["search"]["stopped_by"] == "max_minutes"
    sampled = conn.execute("SELECT COUNT(*) FROM samples").fetchone()[0]
    assert sampled < 60  # the limit stopped it, far from the 60 children asked for
    longest = max(s for _, _, s in trained)
    for _, finished, train_s in trained:
        started = finished - train_s  # finished_at is time.time()
        assert started <= t0 + limit_s + 1.0  # began before the deadline (+ bookkeeping slack)
    last = max(f for _, f, _ in trained)
    assert last <= t0 + limit_s + longest + 1.0  # at most one child's training past the limit
    # every trained child has the sample that asked for it; no update was learned from half a batch
    assert (
        conn.execute(
            "SELECT COUNT(*) FROM trials t WHERE NOT EXISTS (SELECT 1 FROM samples s WHERE s.trial_id = t.id)"
        ).fetchone()[0]
        == 0
    )
    updates = conn.execute("SELECT COUNT(*) FROM updates").fetchone()[0]
    per_update = conn.execute("SELECT update_index, COUNT(*) FROM samples GROUP BY update_index").fetchall()
    assert all(n == 10 for i, n in per_update if i < updates)  # learned updates were whole


def test_max_evaluated_stops_the_search_and_the_summary_says_why(tiny_pipeline):
    from typer.testing import CliRunner

    from edgenas.cli import app

    path = tiny_pipeline(children=30)
    res = CliRunner().invoke(app, ["search", "--pipeline", path, "--max-evaluated", "4", "--name", "cap"])
    assert res.exit_code == 0, res.output
    assert "stopped at --max-evaluated 4" in " ".join(res.output.split())
    run = Path(path).parent / "runs" / "cap"
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["search"]["stopped_by"] == "max_evaluated"
    s = manifest["search"]
    assert 4 <= s["trained"] + s["stopped_early"] < 30 and s["samples"] < 30
