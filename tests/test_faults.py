"""Kill a real search process at several points, resume it, and compare with an uninterrupted run."""

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

PIPELINE = """
[search]
seed = 3
children = 9
architectures_per_update = 3
device = "cpu"
runs_dir = "{runs}"
[controller]
name = "reinforce"
[space]
max_layers = 3
filters = [4, 8, 16]
kernels = [1, 3]
strides = [1, 2]
[training]
epochs = 2
"""


def cli(args, cwd, fault=None):
    env = {k: v for k, v in os.environ.items() if k != "EDGENAS_FAULT"}
    if fault:
        env["EDGENAS_FAULT"] = fault
    env["EDGENAS_CACHE_DIR"] = str(Path(cwd) / "latency-cache")  # this test's runs share only their own cache
    return subprocess.run(
        [sys.executable, "-m", "edgenas", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        preexec_fn=_default_sigint,
    )


def _default_sigint():
    # A test suite started in the background (`cmd &` in a script, some CI runners) inherits
    # SIGINT ignored, and Python then never turns SIGINT into KeyboardInterrupt. The search
    # under test must see SIGINT the way it does at a terminal, where Ctrl-C delivers it.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def snapshot(run_dir):
    conn = sqlite3.connect(run_dir / "search.db")
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    trials = conn.execute(
        "SELECT arch_key, status, params, val_accuracy, reward, origin_update, origin_position FROM trials ORDER BY arch_key"
    ).fetchall()
    samples = conn.execute(
        "SELECT update_index, position, arch_key, reused, reward FROM samples ORDER BY update_index, position"
    ).fetchall()
    updates = conn.execute("SELECT update_index, loss, entropy, baseline FROM updates ORDER BY update_index").fetchall()
    conn.close()
    winner = json.loads((run_dir / "manifest.json").read_text())["winner"]
    return trials, samples, updates, (winner["arch_key"], winner["test_accuracy"])


@pytest.mark.slow
def test_sigkill_anywhere_then_resume_loses_and_duplicates_nothing(tmp_path):
    pipe = tmp_path / "p.toml"
    pipe.write_text(PIPELINE.format(runs=tmp_path / "runs"))
    base = ["search", "--pipeline", str(pipe)]
    ref = cli([*base, "--name", "ref"], tmp_path)
    assert ref.returncode == 0, ref.stderr

    run = tmp_path / "runs" / "crash"
    first = cli([*base, "--name", "crash"], tmp_path, fault="train:3")  # during a child's training
    assert first.returncode == -signal.SIGKILL, first.stderr

    # Ctrl-C: clean stop with a resume hint
    res = cli(["search", "--resume", str(run)], tmp_path, fault="train:2:interrupt")
    assert res.returncode == 130, res.stderr
    assert "resume with: edgenas search --resume" in res.stderr
    assert "took over the lock" in res.stderr  # the SIGKILLed process left its lock behind
    # `kill PID` (SIGTERM): the same clean stop, a message, exit 143, the lock released
    res = cli(["search", "--resume", str(run)], tmp_path, fault="train:1:term")
    assert res.returncode == 143, res.stderr
    assert "stopped by SIGTERM" in res.stderr and "resume with: edgenas search --resume" in res.stderr
    assert not (run / "search.lock").exists()

    survived = {}
    for fault in ("export:4", "measure:3", "db-write:2", "checkpoint-write:1"):
        res = cli(["search", "--resume", str(run)], tmp_path, fault=fault)
        assert res.returncode == -signal.SIGKILL, (fault, res.stdout, res.stderr)
        conn = sqlite3.connect(run / "search.db")
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        survived[fault] = conn.execute("SELECT COUNT(*) FROM trials").fetchone()[0]
        print(f"after SIGKILL at {fault}: {survived[fault]} trials kept, integrity ok")
        conn.close()
    # finished trials are never lost: the count only grows from one kill to the next
    counts = list(survived.values())
    assert counts == sorted(counts) and counts[-1] >= 5, survived

    done = cli(["search", "--resume", str(run)], tmp_path)
    assert done.returncode == 0, done.stderr
    # the resumed search made exactly the decisions of the uninterrupted one
    trials, samples, updates, winner = snapshot(run)
    rtrials, rsamples, rupdates, rwinner = snapshot(tmp_path / "runs" / "ref")
    assert trials == rtrials
    assert samples == rsamples and len(samples) == 9
    assert updates == rupdates and len(updates) == 3
    assert winner == rwinner
    assert not (run / "search.lock").exists()
    # every trained child's files are there and complete
    conn = sqlite3.connect(run / "search.db")
    for onnx_path, weights_path in conn.execute("SELECT onnx_path, weights_path FROM trials WHERE status = 'ok'"):
        assert (run / onnx_path).stat().st_size > 0 and (run / weights_path).stat().st_size > 0

    again = cli(["search", "--resume", str(run)], tmp_path)
    assert again.returncode == 0 and "already finished" in again.stdout


@pytest.mark.slow
def test_resume_refuses_contradicting_settings(tmp_path):
    pipe = tmp_path / "p.toml"
    pipe.write_text(PIPELINE.format(runs=tmp_path / "runs"))
    first = cli(["search", "--pipeline", str(pipe), "--name", "r"], tmp_path, fault="train:1")
    assert first.returncode == -signal.SIGKILL
    res = cli(["search", "--resume", str(tmp_path / "runs" / "r"), "--budget", "1000"], tmp_path)
    assert res.returncode == 2
    assert "contradict" in res.stderr and "budget_params: 150000 -> 1000" in res.stderr
    bad = cli(["search", "--resume", str(tmp_path / "nothing-here")], tmp_path)
    assert bad.returncode == 2 and "not an edgenas run directory" in bad.stderr


@pytest.mark.slow
def test_run_lock_refuses_a_live_owner_and_takes_over_a_dead_one(tmp_path):
    pipe = tmp_path / "p.toml"
    pipe.write_text(PIPELINE.format(runs=tmp_path / "runs"))
    first = cli(["search", "--pipeline", str(pipe), "--name", "r"], tmp_path, fault="measure:2")
    assert first.returncode == -signal.SIGKILL
    run = tmp_path / "runs" / "r"
    lock = run / "search.lock"
    assert json.loads(lock.read_text())["pid"] > 0  # left behind by the killed process
    lock.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))  # a live owner
    res = cli(["search", "--resume", str(run)], tmp_path)
    assert res.returncode == 2 and f"another search (PID {os.getpid()})" in res.stderr
    dead = subprocess.Popen(["true"])
    dead.wait()
    lock.write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname()}))
    res = cli(["search", "--resume", str(run)], tmp_path)
    assert res.returncode == 0, res.stderr
    assert f"took over the lock of PID {dead.pid}" in res.stderr


@pytest.mark.slow
def test_a_full_disk_stops_the_search_with_a_message_and_resume_finishes_it(tmp_path):
    """A real write limit (RLIMIT_FSIZE: writes past it fail with EFBIG, as they fail with
    ENOSPC on a full disk): one message, exit 1, nothing half-written left, and the run resumes."""
    import resource

    def limited():
        _default_sigint()
        resource.setrlimit(resource.RLIMIT_FSIZE, (300_000, 300_000))

    args = ["search", "--children", "12", "--epochs", "1", "--budget", "20000", "--device", "cpu"]
    args += ["--runs-dir", str(tmp_path / "runs"), "--name", "full"]
    env = {**os.environ, "EDGENAS_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("EDGENAS_FAULT", None)
    res = subprocess.run(
        [sys.executable, "-m", "edgenas", *args], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=600, preexec_fn=limited,
    )  # fmt: skip
    assert res.returncode == 1, res.stderr
    assert "the disk is full" in res.stderr and "Traceback" not in res.stderr
    run = tmp_path / "runs" / "full"
    assert not list(run.rglob("*.tmp"))  # the write that failed left no partial file
    with sqlite3.connect(run / "search.db") as db:
        saved = db.execute("SELECT COUNT(*) FROM trials").fetchone()[0]
    assert 0 < saved < 12
    done = cli(["search", "--resume", str(run)], tmp_path)
    assert done.returncode == 0, done.stderr
    with sqlite3.connect(run / "search.db") as db:
        assert db.execute("SELECT COUNT(*) FROM samples").fetchone()[0] == 12
