"""Children that fail are recorded and never stop the search; most failing stops it with a reason."""

import sqlite3

import pytest
from typer.testing import CliRunner

from edgenas import faults
from edgenas.cli import app
from edgenas.errors import SearchAborted
from edgenas.hardware.latency import Measurer
from edgenas.loop.run import run_search
from edgenas.settings.pipeline import load_pipeline


@pytest.fixture(autouse=True)
def _fresh_fault_counts():
    faults._counts.clear()
    yield
    faults._counts.clear()


def _rows(result):
    conn = sqlite3.connect(result.run_dir / "search.db")
    return conn.execute("SELECT status, reason, error, onnx_path, reward FROM trials ORDER BY id").fetchall()


def test_export_and_onnxruntime_failures_are_recorded_and_search_goes_on(tiny_pipeline, monkeypatch):
    pipe = load_pipeline(tiny_pipeline(children=6))
    monkeypatch.setenv("EDGENAS_FAULT", "export:2:error")  # the 2nd export: child 1's trained export
    result = run_search(pipe, run_name="export")
    rows = _rows(result)
    failed = [r for r in rows if r[0] == "failed"]
    assert len(failed) == 1 and "InjectedFault" in failed[0][2] and failed[0][3] is None
    assert failed[0][4] == 0.0  # a failed child gets the reject reward
    assert result.manifest["search"]["failed"] == 1 and result.winner is not None

    faults._counts.clear()
    monkeypatch.setenv("EDGENAS_FAULT", "measure:1:error")
    result = run_search(pipe, run_name="measure")
    assert [r[0] for r in _rows(result)].count("failed") == 1


def test_nan_loss_is_a_failed_child_and_most_failing_aborts(tiny_pipeline, tmp_path):
    path = tiny_pipeline(children=6)
    text = open(path).read().replace("epochs = 1", "epochs = 1\nlearning_rate = 1e30")
    text = text.replace("[search]", "[search]\nabort_min_evaluated = 3")
    open(path, "w").write(text)
    with pytest.raises(SearchAborted, match="diverged") as err:
        run_search(load_pipeline(path), run_name="nan")
    assert "resume" in str(err.value)
    conn = sqlite3.connect(tmp_path / "runs" / "nan" / "search.db")
    statuses = [r[0] for r in conn.execute("SELECT status FROM trials")]
    assert statuses.count("failed") >= 2  # saved, not lost
    # through the CLI: the reason and exit code 1
    res = CliRunner().invoke(app, ["search", "--pipeline", path, "--name", "nan-cli"])
    assert res.exit_code == 1 and "diverged" in res.output


def test_timing_timeout_fails_the_child(tiny_pipeline):
    path = tiny_pipeline(children=3)
    text = open(path).read().replace("[search]", "[search]\nmeasure_timeout_s = 1e-9\nabort_failed_fraction = 1.0")
    open(path, "w").write(text)
    result = run_search(load_pipeline(path), run_name="timeout", measurer=Measurer(use_cache=False))
    rows = _rows(result)
    assert rows and all(r[0] == "failed" and "longer than" in r[2] for r in rows)
    assert result.winner is None
    res = CliRunner().invoke(app, ["search", "--pipeline", path, "--name", "timeout-cli", "--no-cache"])
    assert res.exit_code == 1 and "no feasible child" in res.output
