"""The deployable bundle: parity, metadata, int8 round trip, a fresh onnxruntime-only process."""

import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from typer.testing import CliRunner

from edgenas.cli import app
from edgenas.deploy.bundle import Int8Refused, export_run
from edgenas.loop.run import run_search
from edgenas.settings.pipeline import load_pipeline


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("exp")
    (d / "p.toml").write_text(
        f"""
[search]
children = 6
architectures_per_update = 3
device = "cpu"
runs_dir = "{d / "runs"}"
[space]
max_layers = 2
filters = [32, 64]
kernels = [3]
[training]
epochs = 3
[final_training]
epochs = 8
"""
    )
    return run_search(load_pipeline(str(d / "p.toml")), run_name="done").run_dir


def test_bundle_contents_parity_and_metadata(finished_run, tmp_path):
    (res,) = export_run(finished_run, int8=True, out=tmp_path / "b")
    b = res.path
    m = json.loads((b / "manifest.json").read_text())
    assert {p.name for p in b.iterdir()} == {"model.onnx", "model.int8.onnx", "manifest.json", "README.txt"}
    proto = onnx.load(str(b / "model.onnx"))
    onnx.checker.check_model(proto)
    assert proto.opset_import[0].version == 17
    assert [i.name for i in proto.graph.input] == ["input"] and [o.name for o in proto.graph.output] == ["logits"]
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"  # dynamic batch axis
    meta = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(meta["classes"]) == [str(i) for i in range(10)]
    assert json.loads(meta["input_shape"]) == [-1, 1, 8, 8]
    assert set(json.loads(meta["normalisation"])) == {"mean", "std", "pixel_scale"}
    assert meta["profile"] == "cpu-arm" and int(meta["params"]) == m["params"]
    assert json.loads(meta["latency_ms"])["where"] == "predicted"
    assert float(meta["test_accuracy"]) == pytest.approx(m["test_accuracy"], abs=1e-6)
    assert meta["edgenas_version"]
    fp32 = m["models"]["fp32"]
    assert fp32["parity_max_abs_diff"] < 1e-4
    assert fp32["latency"]["label"] == "predicted" and fp32["latency"]["median_ms"] > 0
    assert "train + validation" in m["final_training"]["data"] and m["final_training"]["epochs"] == 8
    assert m["source"]["search_finished"] is True
    readme = (b / "README.txt").read_text()
    assert "onnxruntime" in readme and "predicted: the target's latency" in readme and "(x - mean) / std" in readme


def test_int8_round_trip(finished_run, tmp_path):
    (res,) = export_run(finished_run, int8=True, max_int8_drop=1.0, out=tmp_path / "b")
    m = res.manifest["models"]
    int8_path = res.path / "model.int8.onnx"
    assert int8_path.stat().st_size < (res.path / "model.onnx").stat().st_size
    ops = {n.op_type for n in onnx.load(str(int8_path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert m["int8"]["latency"]["median_ms"] > 0 and 0 <= m["int8"]["test_accuracy"] <= 1
    assert m["int8"]["accuracy_drop"] == pytest.approx(m["fp32"]["test_accuracy"] - m["int8"]["test_accuracy"])
    sess = ort.InferenceSession(str(int8_path), providers=["CPUExecutionProvider"])
    assert sess.run(None, {"input": np.zeros((3, 1, 8, 8), np.float32)})[0].shape == (3, 10)


def test_int8_refused_past_the_limit_keeps_the_fp32_bundle(finished_run, tmp_path):
    # calibration images that do not look like the data (blank frames) give activation ranges
    # that clip real images: a real accuracy loss, which the limit must catch
    blank = np.zeros((16, 1, 8, 8), np.float32)
    with pytest.raises(Int8Refused, match="max-int8-drop"):
        export_run(finished_run, int8=True, max_int8_drop=0.01, calibration_data=blank, out=tmp_path / "b")
    assert (tmp_path / "b" / "model.onnx").exists() and not (tmp_path / "b" / "model.int8.onnx").exists()
    m = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert m["models"]["int8"]["refused"] is True and m["models"]["int8"]["accuracy_drop"] > 0


def test_bundle_runs_with_only_onnxruntime_and_numpy(finished_run, tmp_path, digits):
    (res,) = export_run(finished_run, out=tmp_path / "b")
    from sklearn.datasets import load_digits

    # the raw test images: the same split edgenas used, in the raw 0-16 grey levels
    raw = load_digits().images.astype(np.float32)
    x_raw = (raw / 16.0)[:, None]
    from edgenas.training.data import _split

    _, _, test_idx = _split(len(raw), load_digits().target, 0.15, 0.2, 0)
    np.save(tmp_path / "x.npy", x_raw[test_idx])
    np.save(tmp_path / "y.npy", load_digits().target[test_idx])
    script = textwrap.dedent(
        """
        import json, sys
        import numpy as np, onnxruntime as ort
        m = json.load(open('b/manifest.json'))
        sess = ort.InferenceSession('b/model.onnx', providers=['CPUExecutionProvider'])
        mean = np.array(m['input']['mean'], np.float32)[None, :, None, None]
        std = np.array(m['input']['std'], np.float32)[None, :, None, None]
        x = ((np.load('x.npy') - mean) / std).astype(np.float32)
        pred = sess.run(None, {m['input']['name']: x})[0].argmax(1)
        labels = [m['labels'][i] for i in pred]
        acc = float((pred == np.load('y.npy')).mean())
        heavy = sorted(k for k in sys.modules if k.split('.')[0] in ('torch', 'edgenas', 'sklearn', 'onnx'))
        print(json.dumps({'acc': acc, 'heavy': heavy, 'n': len(labels)}))
        """
    )
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, check=True)
    got = json.loads(out.stdout)
    assert got["heavy"] == [] and got["n"] == len(digits.y_test)
    assert got["acc"] == pytest.approx(res.manifest["models"]["fp32"]["test_accuracy"])


@pytest.mark.slow
def test_export_of_an_interrupted_run(tmp_path):
    (tmp_path / "p.toml").write_text(
        f'[search]\nchildren = 9\narchitectures_per_update = 3\ndevice = "cpu"\nruns_dir = "{tmp_path / "runs"}"\n'
        "[space]\nmax_layers = 2\nfilters = [4, 8]\nkernels = [3]\n[training]\nepochs = 1\n[final_training]\nepochs = 2\n"
    )
    env = {**os.environ, "EDGENAS_FAULT": "train:4"}
    res = subprocess.run(
        [sys.executable, "-m", "edgenas", "search", "--pipeline", str(tmp_path / "p.toml"), "--name", "cut"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == -signal.SIGKILL
    cli = CliRunner().invoke(app, ["export", str(tmp_path / "runs" / "cut")])
    assert cli.exit_code == 0, cli.output
    m = json.loads((tmp_path / "runs" / "cut" / "bundle" / "manifest.json").read_text())
    assert m["source"]["search_finished"] is False and m["test_accuracy"] > 0


def test_export_bad_input():
    res = CliRunner().invoke(app, ["export", "/nonexistent/run"])
    assert res.exit_code == 2 and "not an edgenas run directory" in res.output
    res = CliRunner().invoke(app, ["export", "/nonexistent/run", "--top", "0"])
    assert res.exit_code == 2 and "--top / export.top must be >= 1" in res.output
