"""`--profile cpu-arm` gives Raspberry Pi 5 milliseconds on any host: predicted from the ONNX graph
by the shipped predictor, refined by host timing only where the host has the fitting CPU."""

import json
import sqlite3

import pytest
from typer.testing import CliRunner

import edgenas.hardware.calibration as calibration
from edgenas.cli import app
from edgenas.errors import MeasurementError
from edgenas.hardware.latency import Measurer
from edgenas.hardware.onnx import export_onnx
from edgenas.hardware.profiles import load_profile
from edgenas.spaces.nb201 import NB201Arch, NB201Net

# Row 0 of the Pi 5 file (shared/data/pi5-onnxruntime-latency-calibration.csv), measured on the board.
CELL = "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|"
PI5_MS = 1.830504


@pytest.fixture(scope="module")
def nb201_model() -> bytes:
    return export_onnx(NB201Net(NB201Arch.parse(CELL), 3, 100, prune=False).eval(), (3, 32, 32))


def test_shipped_predictor_gives_pi5_ms_on_a_host_with_another_cpu(nb201_model, monkeypatch):
    monkeypatch.setattr(calibration, "host_cpu", lambda: "Some Laptop CPU @ 1.2GHz")
    arm = load_profile("cpu-arm")
    stats = Measurer(use_cache=False).measure(nb201_model, arm)
    assert stats.label == "predicted" and stats.calibration == "cpu-arm.calibration.json"
    assert stats.prediction == "calibration" and stats.outside_fit == ()
    assert stats.median_ms == pytest.approx(PI5_MS, rel=0.10)  # the board's number, not this host's
    assert stats.host_median_ms > 0  # the host time is still taken and kept
    # the strict host-timing profile refuses on that CPU, and says what to use instead
    with pytest.raises(MeasurementError, match="cpu-arm"):
        Measurer(use_cache=False).measure(nb201_model, load_profile("cpu-arm-calibrated"))


def test_host_timing_refines_where_the_host_has_the_fitting_cpu(nb201_model, monkeypatch):
    arm = load_profile("cpu-arm")
    host_cal = calibration.Calibration.load(arm.calibration_path("host_calibration"))
    monkeypatch.setattr(calibration, "host_cpu", lambda: host_cal.host_cpu)
    stats = Measurer(use_cache=False).measure(nb201_model, arm)
    assert stats.calibration == "cpu-arm.host-calibration.json" and stats.label == "predicted"
    assert stats.median_ms == pytest.approx(host_cal.predict(nb201_model, stats.host_median_ms))
    assert stats.median_ms == pytest.approx(PI5_MS, rel=0.10)


def _trials(run_dir):
    with sqlite3.connect(run_dir / "search.db") as conn:
        rows = conn.execute("SELECT status, reason, latency FROM trials ORDER BY id").fetchall()
    return [(status, reason, json.loads(lat) if lat else None) for status, reason, lat in rows]


@pytest.mark.slow
def test_max_latency_gates_on_predicted_board_time_not_host_time(tmp_path, monkeypatch):
    """NB201 networks (the size of the Pi 5 data) looked up in a table, timed for real under
    cpu-arm on a host with the fitting CPU (where the prediction needs host timing, so the gate
    and not the controller's feasibility check decides): a hard --max-latency-ms rejects a
    network whose host time is under the limit and whose predicted board time is over it. (On
    any other host the prediction is from the graph alone and such a network is never proposed:
    tests/test_constraints.py.)"""
    import csv
    import itertools

    from edgenas.spaces.nb201 import OPS

    host_cal = calibration.Calibration.load(load_profile("cpu-arm").calibration_path("host_calibration"))
    monkeypatch.setattr(calibration, "host_cpu", lambda: host_cal.host_cpu)
    assert not Measurer().predicts_from_graph(load_profile("cpu-arm"))

    table = tmp_path / "nb201.csv"
    with table.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["cellstr", "cifar10-val"])
        for ops in itertools.product(OPS, repeat=6):
            w.writerow([str(NB201Arch(ops)), 50 + 10 * ops.count("nor_conv_3x3")])
    base = ["search", "--space", "nb201", "--table", str(table), "--no-budget", "--children", "4"]
    base += ["--profile", "cpu-arm", "--runs-dir", str(tmp_path / "runs"), "--seed", "3"]
    runner = CliRunner()
    first = runner.invoke(app, [*base, "--name", "free"])
    assert first.exit_code == 0, first.output
    free = [lat for _, _, lat in _trials(tmp_path / "runs" / "free") if lat]
    assert len(free) >= 2 and all(lat["label"] == "predicted" and not lat["outside_fit"] for lat in free)
    fastest = min(lat["median_ms"] for lat in free)
    limit = None
    for lat in sorted(free, key=lambda lat: -lat["median_ms"]):
        candidate = max(fastest * 1.001, lat["host_median_ms"] * 1.01)
        if candidate < lat["median_ms"]:
            limit = candidate
            break
    assert limit is not None, "needs a network whose host time is under a limit its predicted time is over"
    second = runner.invoke(app, [*base, "--name", "gated", "--max-latency-ms", f"{limit}"])
    assert second.exit_code == 0, second.output
    gated = _trials(tmp_path / "runs" / "gated")
    rejected = [lat for status, reason, lat in gated if status == "rejected" and "latency" in (reason or "")]
    assert rejected and all(lat["median_ms"] > limit for lat in rejected)
    assert any(lat["host_median_ms"] < limit for lat in rejected)  # the host time alone would have let it through
    assert all(lat["median_ms"] <= limit for status, _, lat in gated if status == "ok")
