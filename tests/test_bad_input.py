"""One test per row of docs/bad-input.md: the table is parsed and every command run as written."""

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from edgenas.cli import app

DOC = Path(__file__).resolve().parents[1] / "docs" / "bad-input.md"
ROW = re.compile(r"^\| (\d+) \| ([^|]+) \| `([^`]+)` \| (.+) \| (\d) \|$")


def rows():
    out = []
    for line in DOC.read_text().splitlines():
        m = ROW.match(line.strip())
        if m:
            out.append(
                pytest.param(m.group(3), m.group(4).strip(), int(m.group(5)), id=f"{m.group(1)}-{m.group(2).strip()}")
            )
    return out


def test_table_is_complete():
    assert len(rows()) >= 75


ARM = (Path(__file__).resolve().parents[1] / "hardware_profiles" / "cpu-arm-host.toml").read_text()
TINY = """
[search]
children = 6
architectures_per_update = 3
device = "cpu"
runs_dir = "{runs}"
[space]
max_layers = 2
filters = [4, 8]
kernels = [1, 3]
[training]
epochs = 1
"""


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    f = {}

    def write(name, text, suffix=".toml"):
        p = d / f"{name}{suffix}"
        p.write_text(text)
        f[name] = str(p)

    write("profile_bad_toml", 'name = "x')
    write("profile_unknown_key", ARM + 'speed = "fast"\n')
    write("profile_wrong_type", ARM.replace("batch_size = 1", 'batch_size = "one"'))
    write("profile_bad_value", ARM.replace('graph_optimization_level = "all"', 'graph_optimization_level = "max"'))
    write("profile_missing_ep", ARM.replace('["CPUExecutionProvider"]', '["TensorrtExecutionProvider"]'))
    write("pipeline_bad_toml", "[search\n")
    write("pipeline_unknown_section", "[extras]\nx = 1\n")
    write("pipeline_unknown_key", "[training]\nepoch = 3\n")
    write("pipeline_wrong_type", '[training]\nepochs = "ten"\n')
    write("pipeline_bad_space", "[space]\nkernels = [2]\n")
    write("pipeline_bad_dataset", '[dataset]\nname = "imagenet"\n')
    write("a_file", "just a file", suffix=".txt")
    agent_base = (
        'name = "b"\nmeasured_on = "agent"\nexecution_providers = ["CPUExecutionProvider"]\n'
        "intra_op_threads = 1\ninter_op_threads = 1\nbatch_size = 1\n"
    )
    write("profile_agent_no_url", agent_base)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    (d / "tok").write_text("x" * 40)
    write("profile_agent_down", agent_base + f'agent_url = "http://127.0.0.1:{port}"\ntoken_file = "{d / "tok"}"\n')
    write("profile_agent_no_token", agent_base + f'agent_url = "http://127.0.0.1:{port}"\n')
    write("profile_bad_cores", ARM.replace("cpu_cores = [1]", "cpu_cores = [99]"))
    write("profile_tiny_params", 'name = "tiny-mcu"\ntiming = false\nmax_params = 10\n')
    write("profile_tiny_flash", 'name = "tiny-flash"\ntiming = false\nmax_model_bytes = 100\n')
    write("pipeline_nan_lr", "[training]\nlearning_rate = nan\n")
    write("pipeline_curriculum", "[search]\ncurriculum_start = 1\n")
    f["two_layer_start"] = "0:c32k3s1<in|1:c64k3s2<0"  # a '|' would end a cell of the markdown table
    write("profile_nan_limit", ARM + "max_latency_ms = nan\n")
    write("profile_host_cal_on_host", ARM + 'host_calibration = "x.host-calibration.json"\n')
    write(
        "profile_missing_cal",
        ARM.replace('measured_on = "host"', 'measured_on = "calibrated"') + 'calibration = "gone.calibration.json"\n',
    )
    write("profile_path_name", ARM.replace('name = "cpu-arm-host"', 'name = "../../x"'))
    (d / "binary_toml.toml").write_bytes(bytes(range(128, 256)) * 4)
    f["binary_toml"] = str(d / "binary_toml.toml")
    write("calib_wrong_columns", "a,b\n1,2\n", suffix=".csv")
    write("calib_missing_model", "model,device_ms\nnope.onnx,1.5\n", suffix=".csv")
    boards = "cellstr,board,framework,lat_ms_median,energy_mj\n"
    cells = ("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_1x1~1|nor_conv_3x3~2|",
             "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|")  # fmt: skip
    write("calib_boards", boards + "".join(f"{c},pi,onnx,2.0,5.0\n{c},phone,litert,1.0,\n" for c in cells), ".csv")
    write("calib_energy_gap", boards + f"{cells[0]},pi,onnx,2.0,5.0\n{cells[1]},pi,onnx,1.0,\n", ".csv")
    write("calib_energy_negative", boards + f"{cells[0]},pi,onnx,2.0,5.0\n{cells[1]},pi,onnx,1.0,-2\n", ".csv")
    write("short_token", "short", suffix=".txt")
    cell = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_1x1~1|nor_conv_3x3~2|"
    write("table_ok", f"cellstr,cifar10-val,cifar10-test\n{cell},84.9,89.0\n", suffix=".csv")
    write("table_no_arch", "name,val\nresnet,0.9\n", suffix=".csv")
    write("table_bad_row", f"cellstr,cifar10-val\n{cell},84.9\n|conv~0|+|x~0|,50\n", suffix=".csv")
    write("table_bad_number", f"cellstr,cifar10-val\n{cell},n/a\n", suffix=".csv")
    write("pipeline_bad_controller", '[controller]\nname = "predictor"\nexplore = "greedy"\n')
    from PIL import Image

    (d / "one_class" / "cats").mkdir(parents=True)
    Image.new("L", (8, 8)).save(d / "one_class" / "cats" / "a.png")
    f["one_class_folder"] = str(d / "one_class")
    for c in ("a", "b"):
        (d / "broken" / c).mkdir(parents=True)
        for i in range(6):
            Image.new("L", (8, 8), color=i * 30).save(d / "broken" / c / f"{i}.png")
    (d / "broken" / "b" / "broken.png").write_bytes(b"not a png at all")
    f["broken_image_folder"] = str(d / "broken")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        f["dead_ray"] = f"127.0.0.1:{sock.getsockname()[1]}"
    (d / "not").mkdir()
    write("not_onnx", "this is text, not a model", suffix=".onnx")
    f["missing"] = str(d / "does-not-exist")
    (d / "empty").mkdir()
    f["empty_dir"] = str(d / "empty")
    (d / "corrupt").mkdir()
    (d / "corrupt" / "search.db").write_text("not sqlite at all " * 100)
    f["corrupt_run"] = str(d / "corrupt")

    # a real, interrupted tiny search (killed during its second child's training)
    pipe = d / "tiny.toml"
    pipe.write_text(TINY.format(runs=d / "runs"))
    env = {**os.environ, "EDGENAS_FAULT": "train:2"}
    for name in ("run", "locked"):
        res = subprocess.run(
            [sys.executable, "-m", "edgenas", "search", "--pipeline", str(pipe), "--name", name],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert res.returncode == -signal.SIGKILL, res.stderr
    f["run"] = str(d / "runs" / "run")
    f["locked_run"] = str(d / "runs" / "locked")
    (d / "runs" / "locked" / "search.lock").write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
    f["model"] = str(next((d / "runs" / "run" / "children").glob("*.onnx")))
    import shutil

    shutil.copytree(d / "runs" / "run", d / "runs" / "missing-child", ignore=shutil.ignore_patterns("search.lock"))
    for child in (d / "runs" / "missing-child" / "children").glob("*.onnx"):
        child.unlink()
    f["run_missing_child"] = str(d / "runs" / "missing-child")
    # the same run as if finished (its manifest is what marks a finished run)
    shutil.copytree(d / "runs" / "run", d / "runs" / "finished", ignore=shutil.ignore_patterns("search.lock"))
    (d / "runs" / "finished" / "manifest.json").write_text("{}")
    f["finished_run"] = str(d / "runs" / "finished")
    (d / "stillborn" / "children").mkdir(parents=True)  # what a search killed in its first instant leaves
    f["stillborn_run"] = str(d / "stillborn")
    for c, n in (("many", 6), ("lonely", 1)):
        (d / "small_class" / c).mkdir(parents=True)
        for i in range(n):
            Image.new("L", (8, 8), color=i * 30).save(d / "small_class" / c / f"{i}.png")
    f["small_class_folder"] = str(d / "small_class")
    for c in ("a", "b"):
        (d / "bomb" / c).mkdir(parents=True)
        Image.new("L", (8, 8)).save(d / "bomb" / c / "0.png")
    Image.new("1", (20000, 20000)).save(d / "bomb" / "a" / "00-huge.png")  # 400 Mpixels in 48 KB
    f["bomb_folder"] = str(d / "bomb")
    return f


@pytest.mark.parametrize("command, message, code", rows())
def test_row(command, message, code, files, monkeypatch, tmp_path):
    if "--device cuda" in command and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    monkeypatch.chdir(tmp_path)  # a search that wrongly started would write under here
    monkeypatch.delenv("EDGENAS_AGENT_TOKEN", raising=False)
    args = [a.format(**files) for a in shlex.split(command)]
    res = CliRunner().invoke(app, args)
    out = " ".join(res.output.split())
    assert res.exit_code == code, res.output
    assert message in out
    assert "Traceback" not in res.output
    assert not (tmp_path / "runs").exists()
