"""The Python API: the README's example as written, the same trials as the CLI, the CLI's errors."""

import re
import sqlite3
from pathlib import Path

import pytest

import edgenas
from edgenas.errors import ConfigError, DataError, RunDirError

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.slow
def test_readme_python_example_runs_as_written(tmp_path, monkeypatch):
    text = README.read_text()
    section = text[text.index("## Python") :]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    run = scope["run"]
    assert run.finished and run.winner.params <= 20_000 and run.winner.onnx_path.is_file()
    assert 0.5 < run.winner.test_accuracy <= 1.0
    assert (tmp_path / "runs" / "api-demo" / "bundle" / "model.onnx").is_file()
    assert scope["row"]["profile"] == "cpu-x86" and scope["row"]["median_ms"] > 0  # the last bench row
    assert scope["bundle"].manifest["test_accuracy"] > 0.5


def _trials(run_dir):
    with sqlite3.connect(run_dir / "search.db") as db:
        return db.execute(
            "SELECT arch_key, status, params, val_accuracy, reward FROM trials ORDER BY id"
        ).fetchall(), db.execute(
            "SELECT update_index, position, arch_key, reward FROM samples ORDER BY 1, 2"
        ).fetchall()


@pytest.mark.slow
def test_api_and_cli_make_the_same_trials_for_the_same_seed(tmp_path):
    from test_faults import cli

    args = ["--children", "8", "--epochs", "1", "--budget", "5000", "--seed", "4", "--controller", "reinforce"]
    res = cli(["search", *args, "--runs-dir", str(tmp_path / "runs"), "--name", "cli", "--device", "cpu"], tmp_path)
    assert res.returncode == 0, res.stderr
    run = edgenas.search(
        "digits",
        children=8,
        epochs=1,
        budget=5000,
        seed=4,
        controller="reinforce",
        device="cpu",
        runs_dir=str(tmp_path / "runs"),
        name="api",
        progress=False,
    )
    assert _trials(run.path) == _trials(tmp_path / "runs" / "cli")
    assert run.winner.arch_key == edgenas.load_run(tmp_path / "runs" / "cli").winner.arch_key


def test_bad_input_raises_the_cli_errors(tmp_path):
    from test_faults import cli

    with pytest.raises(ConfigError, match="is not a search setting") as exc:
        edgenas.search("digits", childrn=3, progress=False)
    assert "children" in str(exc.value)
    with pytest.raises(DataError, match="a Dataset must give"):
        edgenas.search([1, 2, 3], progress=False)
    with pytest.raises(DataError, match="is not a dataset"):
        edgenas.search(3.5, progress=False)
    with pytest.raises(RunDirError, match="not an edgenas run directory"):
        edgenas.load_run(tmp_path)
    # the same message as the CLI's for the same bad setting
    with pytest.raises(ConfigError) as api_err:
        edgenas.search("digits", fidelity="fast", runs_dir=str(tmp_path / "r"), progress=False)
    res = cli(["search", "--fidelity", "fast", "--runs-dir", str(tmp_path / "r")], tmp_path)
    assert res.returncode == 2 and str(api_err.value) in " ".join(res.stderr.split())
    assert not (tmp_path / "r").exists()


def test_report_profiles_and_calibrate_are_reachable_from_python(tmp_path):
    profiles = edgenas.profiles()
    assert {"cpu-arm", "stm32f746"} <= set(profiles) and profiles["stm32f746"].max_flash_bytes
    run = edgenas.search("digits", children=3, epochs=1, budget=5000, device="cpu", runs_dir=tmp_path, progress=False)
    page = edgenas.report(run, out=tmp_path / "r.html")
    assert page == tmp_path / "r.html" and "edgenas search report" in page.read_text()
    with pytest.raises(RunDirError):
        edgenas.report(tmp_path / "nothing-here")
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("model,device_ms\n" + "".join(f"{run.winner.onnx_path},{1.0 + i}\n" for i in range(1)))
    with pytest.raises(ConfigError, match="--folds must be >= 2"):
        edgenas.calibrate(pairs, folds=1)
