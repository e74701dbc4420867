"""A real agent process on loopback, measured through; it must run without torch & co."""

import base64
import json
import os
import secrets
import socket
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
from typer.testing import CliRunner

from edgenas.cli import app
from edgenas.hardware.agent_protocol import request_headers
from edgenas.hardware.onnx import export_onnx
from edgenas.hardware.profiles import load_profile

# Importing any of these in the agent process fails: the agent must not need them.
HEAVY = (
    "torch",
    "torchvision",
    "typer",
    "rich",
    "thop",
    "sklearn",
    "onnx",
    "matplotlib",
    "edgenas.cli",
    "edgenas.loop.run",
)
LAUNCH = (
    "import sys\n"
    f"for m in {HEAVY!r}: sys.modules[m] = None\n"
    "from edgenas.hardware.agent import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_agent(tmp_path, *extra, token=None):
    token = token or secrets.token_hex(32)
    (tmp_path / "token").write_text(token)
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            LAUNCH,
            "--listen",
            f"127.0.0.1:{port}",
            "--token-file",
            str(tmp_path / "token"),
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline()
    assert "listening on" in line, (line, proc.stderr.read() if proc.poll() is not None else "")
    return proc, port, token


@pytest.fixture(scope="module")
def agent(tmp_path_factory):
    d = tmp_path_factory.mktemp("agent")
    proc, port, token = start_agent(d)
    profile = d / "board.toml"
    profile.write_text(
        f'name = "board"\nmeasured_on = "agent"\nagent_url = "http://127.0.0.1:{port}"\ntoken_file = "{d / "token"}"\n'
        'execution_providers = ["CPUExecutionProvider"]\nintra_op_threads = 1\ninter_op_threads = 1\nbatch_size = 1\n'
        "timed_runs = 10\nwarmup_runs = 2\nsessions = 2\n"
    )
    yield {"proc": proc, "port": port, "token": token, "profile": str(profile), "dir": d}
    proc.terminate()
    proc.wait(timeout=10)


def _model(tmp_path):
    import torch.nn as nn

    path = tmp_path / "m.onnx"
    path.write_bytes(
        export_onnx(
            nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(256, 10)), (1, 8, 8)
        )
    )
    return path


def _post(port, token, body, path="/measure", headers=None):
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=body,
        method="POST",
        headers=headers if headers is not None else request_headers(token.encode(), "POST", path, body),
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_bench_through_the_agent(agent, tmp_path):
    res = CliRunner().invoke(app, ["bench", str(_model(tmp_path)), "-p", agent["profile"], "--json", "--no-cache"])
    assert res.exit_code == 0, res.output
    (row,) = json.loads(res.output)
    assert row["label"] == "device-measured" and row["measured_on"] == "agent"
    assert row["runs"] == 20 == len(row["samples_ms"]) and row["sessions"] == 2
    assert row["machine"]["onnxruntime"]


@pytest.mark.slow
def test_search_with_an_agent_backed_profile(agent, tiny_pipeline):
    from edgenas.loop.run import run_search
    from edgenas.settings.pipeline import load_pipeline

    pipe = load_pipeline(tiny_pipeline(children=3)).override("search", profile=agent["profile"])
    result = run_search(pipe, run_name="agent")
    assert result.manifest["winner"]["latency"]["label"] == "device-measured"


def test_wrong_token_and_unreachable_agent(agent, tmp_path):
    bad = tmp_path / "bad.toml"
    (tmp_path / "wrong").write_text(secrets.token_hex(32))
    text = open(agent["profile"]).read().replace(str(agent["dir"] / "token"), str(tmp_path / "wrong"))
    bad.write_text(text)
    res = CliRunner().invoke(app, ["bench", str(_model(tmp_path)), "-p", str(bad), "--no-cache"])
    assert res.exit_code == 2 and "refused" in res.output
    down = tmp_path / "down.toml"
    down.write_text(open(agent["profile"]).read().replace(str(agent["port"]), str(free_port())))
    res = CliRunner().invoke(app, ["bench", str(_model(tmp_path)), "-p", str(down), "--no-cache"])
    assert res.exit_code == 2 and "cannot reach the agent" in " ".join(res.output.split())


def test_hostile_requests_get_errors_and_the_agent_survives(agent, tmp_path):
    port, token = agent["port"], agent["token"]
    settings = {**load_profile("cpu-arm-host").settings(), "cpu_cores": []}
    for model in (b"\x08\x07not onnx" * 100, _model(tmp_path).read_bytes()[:300]):
        status, answer = _post(
            port, token, json.dumps({"settings": settings, "model_b64": base64.b64encode(model).decode()}).encode()
        )
        assert status == 422 and not answer["ok"] and "cannot load" in answer["error"]
    status, answer = _post(port, token, b"{not json")
    assert status == 400
    status, answer = _post(port, token, json.dumps({"settings": {"name": "x", "bogus": 1}, "model_b64": ""}).encode())
    assert status == 422 and "unknown key" in answer["error"]
    status, answer = _post(port, token, json.dumps({"settings": settings, "model_b64": "%%%"}).encode())
    assert status == 422 and "base64" in answer["error"]
    # unsigned and stale requests
    req = urllib.request.Request(f"http://127.0.0.1:{port}/measure", data=b"{}", method="POST")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req)
    assert err.value.code == 401
    # a measurement over the agent's time limit is stopped; the next one works
    slow = {**settings, "timed_runs": 10**7, "sessions": 1}
    body = {"settings": slow, "model_b64": base64.b64encode(_model(tmp_path).read_bytes()).decode(), "timeout_s": 0.3}
    status, answer = _post(port, token, json.dumps(body).encode())
    assert status == 422 and "longer than" in answer["error"]
    ok = {"settings": {**settings, "timed_runs": 3, "sessions": 1}, "model_b64": body["model_b64"]}
    status, answer = _post(port, token, json.dumps(ok).encode())
    assert status == 200 and answer["stats"]["runs"] == 3
    assert agent["proc"].poll() is None


def test_a_bad_timeout_never_desynchronises_the_agent(agent, tmp_path):
    """A signed request with a negative, NaN or non-number timeout gets a 422, and every request
    after it gets the answer to its own model and settings (it used to get the previous answer)."""
    port, token = agent["port"], agent["token"]
    settings = {**load_profile("cpu-arm-host").settings(), "cpu_cores": [], "sessions": 1, "warmup_runs": 0}
    model = base64.b64encode(_model(tmp_path).read_bytes()).decode()
    for k, bad in enumerate((-100, float("nan"), "soon", True, -100)):
        body = json.dumps({"settings": {**settings, "timed_runs": 5}, "model_b64": model, "timeout_s": bad})
        status, answer = _post(port, token, body.encode())
        assert status == 422 and "timeout_s must be a positive number" in answer["error"], (bad, answer)
        runs = 2 + k  # a different, recognisable answer for each good request
        good = json.dumps({"settings": {**settings, "timed_runs": runs}, "model_b64": model, "timeout_s": 30})
        status, answer = _post(port, token, good.encode())
        assert status == 200 and answer["stats"]["runs"] == runs, answer
    status, answer = _post(port, token, json.dumps({"settings": [1], "model_b64": model}).encode())
    assert status == 422 and "must be a JSON object" in answer["error"]
    assert agent["proc"].poll() is None


def test_timing_worker_checks_every_answer_is_its_own(tmp_path):
    """The worker protocol cannot desynchronise: an answer left in the pipe by an interrupted
    request is never taken for the next one's; the worker is replaced instead."""
    from edgenas.errors import MeasurementError
    from edgenas.hardware.worker import TimingWorker

    settings = {**load_profile("cpu-arm-host").settings(), "cpu_cores": [], "sessions": 1, "warmup_runs": 0}
    worker = TimingWorker()
    try:
        path = str(_model(tmp_path))
        assert worker.measure(path, {**settings, "timed_runs": 2})["runs"] == 2
        with pytest.raises(MeasurementError, match="positive number"):
            worker.measure(path, settings, timeout_s=-1.0)
        # simulate a stale answer: a request written by someone else whose answer nobody read
        proc = worker._start()
        proc.stdin.write(json.dumps({"id": 999, "model_path": path, "settings": {**settings, "timed_runs": 7}}) + "\n")
        proc.stdin.flush()
        with pytest.raises(MeasurementError, match="answered request 999"):
            worker.measure(path, {**settings, "timed_runs": 3})
        assert worker.measure(path, {**settings, "timed_runs": 4})["runs"] == 4  # a fresh worker
    finally:
        worker.close()


def test_replays_and_unsigned_uploads_are_refused(agent, tmp_path):
    port, token = agent["port"], agent["token"]
    settings = {
        **load_profile("cpu-arm-host").settings(),
        "cpu_cores": [],
        "sessions": 1,
        "warmup_runs": 0,
        "timed_runs": 2,
    }
    body = json.dumps({"settings": settings, "model_b64": base64.b64encode(_model(tmp_path).read_bytes()).decode()})
    captured = request_headers(token.encode(), "POST", "/measure", body.encode())
    status, answer = _post(port, token, body.encode(), headers=captured)
    assert status == 200
    status, answer = _post(port, token, body.encode(), headers=captured)  # the same signed request again
    assert status == 401 and "replay" in answer["error"]
    # no signature headers: refused from the headers alone, the declared 50 MB body never read
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(b"POST /measure HTTP/1.1\r\nHost: x\r\nContent-Length: 50000000\r\n\r\n")
    reply = b""
    while chunk := sock.recv(4096):  # the agent answers and closes the connection
        reply += chunk
    sock.close()
    reply = reply.decode()
    assert " 401 " in reply.splitlines()[0] and "malformed signature headers" in reply
    assert agent["proc"].poll() is None


@pytest.mark.parametrize(
    "args, message",
    [
        (["--max-mb", "0"], "--max-mb must be a positive"),
        (["--timeout-s", "nan"], "--timeout-s must be a positive"),
        (["--max-input-mb", "-1"], "--max-input-mb must be a positive"),
    ],
)
def test_agent_refuses_impossible_limits(tmp_path, args, message):
    (tmp_path / "t").write_text(secrets.token_hex(32))
    res = subprocess.run(
        [sys.executable, "-m", "edgenas", "agent", "--token-file", str(tmp_path / "t"), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 2 and message in res.stderr


def test_agent_on_ipv6_loopback_warns_about_a_readable_token(tmp_path):
    if not socket.has_ipv6:
        pytest.skip("no IPv6 here")
    token = secrets.token_hex(32)
    (tmp_path / "token").write_text(token)
    os.chmod(tmp_path / "token", 0o644)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", LAUNCH, "--listen", f"[::1]:{port}", "--token-file", str(tmp_path / "token")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        if "listening on" not in line:
            pytest.skip(f"IPv6 loopback unavailable: {proc.stderr.read()}")
        assert f"http://[::1]:{port}" in line
        req = urllib.request.Request(
            f"http://[::1]:{port}/info", headers=request_headers(token.encode(), "GET", "/info", b"")
        )
        with urllib.request.urlopen(req, timeout=30) as r:
            assert json.loads(r.read())["agent"] == "edgenas"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert "can be read by other users" in proc.stderr.read()


def test_request_size_limit(tmp_path):
    proc, port, token = start_agent(tmp_path, "--max-mb", "0.001")
    try:
        status, answer = _post(port, token, b"x" * 5000)
        assert status == 413 and "over the agent's limit" in answer["error"]
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_agent_refuses_a_short_token(tmp_path):
    (tmp_path / "t").write_text("short")
    res = subprocess.run(
        [sys.executable, "-m", "edgenas", "agent", "--token-file", str(tmp_path / "t")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 2 and "shorter than 16 bytes" in res.stderr


def _external_data_model(location: str) -> bytes:
    """A one-Add model whose weight is read from the file `location` (ONNX external data)."""
    from onnx import TensorProto, helper

    w = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[4], data_location=TensorProto.EXTERNAL)
    for key, value in (("location", location), ("offset", "0"), ("length", "16")):
        entry = w.external_data.add()
        entry.key, entry.value = key, value
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g", [x], [y], [w])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def test_models_cannot_read_files_from_the_agents_disk(agent, tmp_path):
    """A model with external data naming a file next to where models used to be written (the
    temp directory) is refused, by the agent without the onnx package and by the local worker."""
    import tempfile

    from edgenas.errors import ModelFileError
    from edgenas.hardware.worker import TimingWorker

    secret = os.path.join(tempfile.gettempdir(), f"edgenas-secret-{secrets.token_hex(4)}.bin")
    with open(secret, "wb") as fh:
        fh.write(b"\x00" * 16)
    settings = {**load_profile("cpu-arm-host").settings(), "cpu_cores": [], "sessions": 1, "timed_runs": 2}
    try:
        for location in (os.path.basename(secret), secret, "../" + os.path.basename(secret)):
            model = base64.b64encode(_external_data_model(location)).decode()
            status, answer = _post(
                agent["port"], agent["token"], json.dumps({"settings": settings, "model_b64": model}).encode()
            )
            assert status == 422 and not answer["ok"], (location, answer)
            worker = TimingWorker()
            try:
                with pytest.raises(ModelFileError, match="external file"):
                    worker.measure(_external_data_model(location), settings)
            finally:
                worker.close()
        assert agent["proc"].poll() is None
    finally:
        os.unlink(secret)


def test_an_input_over_the_agents_memory_limit_is_refused(tmp_path):
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 1024, 1024])  # 12 MiB
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 1024, 1024])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    big = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
    proc, port, token = start_agent(tmp_path, "--max-input-mb", "1")
    try:
        settings = {**load_profile("cpu-arm-host").settings(), "cpu_cores": [], "sessions": 1, "timed_runs": 2}
        body = {"settings": settings, "model_b64": base64.b64encode(big).decode()}
        status, answer = _post(port, token, json.dumps(body).encode())
        assert status == 422 and "needs 12 MiB, over the limit of 1 MiB" in answer["error"], answer
        small = {"settings": settings, "model_b64": base64.b64encode(_model(tmp_path).read_bytes()).decode()}
        status, answer = _post(port, token, json.dumps(small).encode())
        assert status == 200 and answer["stats"]["runs"] == 2
    finally:
        proc.terminate()
        proc.wait(timeout=10)
