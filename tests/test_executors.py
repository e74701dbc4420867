"""The same search on the local and the process executor gives the same results."""

import sqlite3

import pytest
from typer.testing import CliRunner

from edgenas.cli import app
from edgenas.loop.run import run_search
from edgenas.settings.pipeline import load_pipeline


def _rows(run_dir):
    return (
        sqlite3.connect(run_dir / "search.db")
        .execute("SELECT arch_key, status, params, val_accuracy, reward FROM trials ORDER BY arch_key")
        .fetchall()
    )


@pytest.mark.slow
def test_process_pool_matches_local(tiny_pipeline):
    base = load_pipeline(tiny_pipeline(children=6, budget=2500)).override("search", threads_per_job=1)
    local = run_search(base, run_name="local")
    pool = run_search(base.override("search", executor="process", workers=2), run_name="pool")
    assert _rows(local.run_dir) == _rows(pool.run_dir)
    q = "SELECT update_index, position, arch_key, reused FROM samples ORDER BY update_index, position"
    assert (
        sqlite3.connect(local.run_dir / "search.db").execute(q).fetchall()
        == sqlite3.connect(pool.run_dir / "search.db").execute(q).fetchall()
    )
    assert local.manifest["winner"]["arch_key"] == pool.manifest["winner"]["arch_key"]


@pytest.mark.slow
def test_process_executor_from_the_cli(tiny_pipeline):
    res = CliRunner().invoke(
        app,
        [
            "search",
            "--pipeline",
            tiny_pipeline(children=3),
            "--executor",
            "process",
            "--workers",
            "2",
            "--name",
            "cli-pool",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "winner.onnx verified" in res.output


@pytest.mark.slow
def test_ray_executor_matches_local(tiny_pipeline):
    pytest.importorskip("ray")
    base = load_pipeline(tiny_pipeline(children=6, budget=2500)).override("search", threads_per_job=1)
    local = run_search(base, run_name="local-r")
    on_ray = run_search(base.override("search", executor="ray"), run_name="ray")
    assert _rows(local.run_dir) == _rows(on_ray.run_dir)


def test_unreachable_ray_address_is_a_clear_error(tiny_pipeline, tmp_path):
    import socket
    import time

    pytest.importorskip("ray")
    with socket.socket() as s:  # a loopback port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.perf_counter()
    res = CliRunner().invoke(
        app,
        [
            "search",
            "--pipeline",
            tiny_pipeline(children=2),
            "--executor",
            "ray",
            "--ray-address",
            f"127.0.0.1:{port}",
            "--runs-dir",
            str(tmp_path / "runs"),
        ],
    )
    assert res.exit_code == 2 and f"cannot reach Ray at 127.0.0.1:{port}" in res.output, res.output
    assert time.perf_counter() - t0 < 60
    assert not (tmp_path / "runs").exists()  # refused before a run directory was made
    res = CliRunner().invoke(app, ["search", "--executor", "ray", "--ray-address", "headnode"])
    assert res.exit_code == 2 and "is not HOST:PORT" in res.output


def test_gpu_slots_spread_workers_over_gpus():
    from edgenas.evaluators import slot_devices, training_slots

    # several children per GPU: the process executor starts k workers per visible GPU...
    assert training_slots("process", "auto", 1, 3, 0.0, gpu_count=2) == (6, 0.0)
    assert slot_devices("auto", 6, gpu_count=2) == ["cuda:0", "cuda:1"] * 3
    assert training_slots("process", "cuda:1", 1, 4, 0.0, gpu_count=2) == (4, 0.0)
    assert slot_devices("cuda:1", 4, gpu_count=2) == ["cuda:1"] * 4
    # ...and each Ray task asks for 1/k of a GPU
    assert training_slots("ray", "cuda", 1, 4, 0.0, gpu_count=1) == (1, 0.25)
    assert training_slots("ray", "cuda", 1, 2, 0.5, gpu_count=1) == (1, 0.25)
    # k = 1 changes nothing; CPU workers stay on the CPU
    assert training_slots("process", "cpu", 2, 1, 0.0, gpu_count=0) == (2, 0.0)
    assert slot_devices("auto", 2, gpu_count=0) == ["cpu", "cpu"]
    from edgenas.errors import ConfigError

    with pytest.raises(ConfigError, match="use --executor process or ray"):
        training_slots("local", "cuda", 1, 2, 0.0, gpu_count=1)
    with pytest.raises(ConfigError, match="needs CUDA"):
        slot_devices("cuda", 2, gpu_count=0)


@pytest.mark.parametrize(
    "args, match",
    [
        (["--executor", "dask"], "unknown executor 'dask'; available: local, process, ray"),
        (["--workers", "0"], "--workers must be >= 1"),
        (["--children-per-gpu", "0"], "--children-per-gpu must be >= 1"),
        (["--children-per-gpu", "2", "--device", "cpu", "--executor", "process"], "training runs on the CPU here"),
    ],
)
def test_bad_executor_settings(args, match):
    res = CliRunner().invoke(app, ["search", *args])
    assert res.exit_code == 2 and match in res.output


def test_median_rule_stops_children_and_records_why(tiny_pipeline):
    pipe = (
        load_pipeline(tiny_pipeline(children=18))
        .override("search", early_stopping="median", early_stop_min_children=2)
        .override("training", epochs=3)
    )
    result = run_search(pipe, run_name="median")
    conn = sqlite3.connect(result.run_dir / "search.db")
    rows = conn.execute("SELECT status, reason, curve, reward, val_accuracy, origin_update FROM trials").fetchall()
    stopped = [r for r in rows if r[0] == "stopped"]
    assert stopped, "with 18 children some should fall below the median of earlier ones"
    import json

    for status, reason, curve, reward, acc, origin in stopped:
        assert reason.startswith("median rule") and origin >= 1  # the first update has no history
        assert len(json.loads(curve)) < 3 and reward == acc
    assert all(json.loads(r[2]) and len(json.loads(r[2])) == 3 for r in rows if r[0] == "ok")
    assert result.manifest["search"]["stopped_early"] == len(stopped)
    assert result.winner["trial_id"] not in [r for r in stopped]


@pytest.mark.slow
def test_a_job_past_its_deadline_is_not_trained_in_a_worker_process(tiny_pipeline):
    """--max-minutes reaches the worker: a job that gets there after its `not_after` comes back
    `not_started` with nothing trained; one before it trains as usual."""
    import time

    from edgenas import spaces
    from edgenas.evaluators import ProcessEvaluator, TrainJob
    from edgenas.training.data import load_pipeline_dataset

    pipe = load_pipeline(tiny_pipeline(children=3))
    data = load_pipeline_dataset(pipe)
    space = spaces.from_pipeline(pipe, data.input_shape, data.num_classes)
    arch = space.smallest()
    ex = ProcessEvaluator(pipe.to_json(), 1, 1)
    try:
        late = TrainJob("late", arch.to_json(), 0, not_after=time.time() - 1)
        on_time = TrainJob("on-time", arch.to_json(), 0, not_after=time.time() + 600)
        out = {o.key: o for o in ex.run([late, on_time])}
    finally:
        ex.close()
    assert out["late"].not_started and not out["late"].ok and out["late"].val_accuracy is None
    assert out["on-time"].ok and not out["on-time"].not_started and out["on-time"].val_accuracy is not None
