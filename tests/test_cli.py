import json

import pytest
from typer.testing import CliRunner

from edgenas.cli import app

runner = CliRunner()


def run(*args):
    return runner.invoke(app, list(args))


def test_search_cli_end_to_end(tiny_pipeline, tmp_path):
    res = run(
        "search", "--pipeline", tiny_pipeline(children=4), "--budget", "5000", "--profile", "cpu-x86", "--name", "cli"
    )
    assert res.exit_code == 0, res.output
    assert "top candidates" in res.output and "host-measured" in res.output
    assert "winner.onnx verified" in res.output
    run_dir = tmp_path / "runs" / "cli"
    assert str(run_dir) in res.output.replace("\n", "")
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["profile"]["name"] == "cpu-x86" and manifest["reward"]["budget_params"] == 5000
    assert manifest["command"].startswith("edgenas")

    bench = run("bench", str(run_dir / "winner.onnx"), "--profile", "cpu-arm", "--profile", "cpu-x86", "--json")
    assert bench.exit_code == 0, bench.output
    rows = json.loads(bench.output)
    assert [r["profile"] for r in rows] == ["cpu-arm", "cpu-x86"]
    arm, x86 = rows
    assert x86["median_ms"] > 0 and len(x86["samples_ms"]) == x86["runs"] and x86["label"] == "host-measured"
    # cpu-arm: Raspberry Pi 5 milliseconds predicted; the host's own time is kept next to them
    assert arm["label"] == "predicted" and arm["median_ms"] > 0 and arm["host_median_ms"] > 0
    table = run("bench", str(run_dir / "winner.onnx"), "-p", "cpu-arm", "-p", "cpu-arm-host")
    assert table.exit_code == 0 and "predicted" in table.output and "host-measured" in table.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["search", "--budget", "0"], "positive"),
        (["search", "--budget", "-3"], "positive"),
        (["search", "--budget", "abc"], "budget"),
        (["search", "--profile", "pi-zero"], "available profiles"),
        (["search", "--budget", "10"], "smallest network"),
        (["search", "--pipeline", "nope"], "unknown pipeline"),
        (["search", "--reward-mode", "fancy"], "--reward-mode / reward.mode 'fancy' is unknown"),
        (["search", "--runs-dir", "/proc/edgenas-cannot-write"], "run directory"),
        (["bench", "pyproject.toml"], "not an ONNX model"),
        (["bench", "missing.onnx"], "does not exist"),
        (["profiles", "show", "pi-zero"], "available profiles"),
    ],
)
def test_bad_input_is_one_message_and_exit_2(args, message):
    res = run(*args)
    assert res.exit_code == 2, res.output
    assert message in res.output
    assert "Traceback" not in res.output


def test_bad_profile_file(tmp_path):
    f = tmp_path / "bad.toml"
    f.write_text('name = "x"\nspeed = "fast"\n')
    res = run("search", "--profile", str(f))
    assert res.exit_code == 2 and "unknown key(s) speed" in res.output


def test_unwritable_runs_dir(tmp_path):
    """A --runs-dir that cannot be created (a file stands where a folder must be: refused even
    as root, unlike permission bits) is one message and exit 2, before anything is trained."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    res = run("search", "--runs-dir", str(blocker / "sub"), "-n", "1")
    assert res.exit_code == 2, res.output
    assert "run directory" in res.output and "Traceback" not in res.output
    assert blocker.read_text() == "not a folder" and not (tmp_path / "runs").exists()


def test_profiles_list_and_show():
    res = run("profiles")
    assert res.exit_code == 0 and "cpu-arm" in res.output and "cpu-x86" in res.output
    res = run("profiles", "show", "cpu-arm")
    assert res.exit_code == 0 and "fingerprint" in res.output and "Cortex-A76" in res.output


@pytest.mark.parametrize("cmd", [[], ["search"], ["bench"], ["profiles"], ["profiles", "show"]])
def test_help_is_complete(cmd):
    res = run(*cmd, "--help")
    assert res.exit_code == 0
    assert "Usage" in res.output
    if cmd == ["search"]:
        for flag in ("--budget", "--profile", "--pipeline", "--max-latency-ms", "--reward-mode", "--children"):
            assert flag in res.output
