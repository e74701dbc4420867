"""Every `edgenas` command the README shows runs as written, with small settings added.

The commands are read from the README itself (its indented command blocks and the "Choose your
path" table), in order, so a command added to the README is run here without editing this file.
Each `search` gets `--children 2 --epochs 1 --supernet-epochs 1` and a temporary runs directory
appended (later flags win); `runs/<run>` means the run directory of the last search before it,
`~/photos` a small folder of generated RGB images (the path is replaced; HOME is left alone: Ray
keeps its cluster token there), `HOST:6379` a Ray head started for the test.
The Python example is run by tests/test_api.py.
"""

import re
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from edgenas.cli import app

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
SMALL = ["--children", "2", "--epochs", "1", "--supernet-epochs", "1"]


def readme_commands() -> list[str]:
    """The README's `edgenas ...` commands in order: lines of indented blocks, and table cells."""
    out, section = [], ""
    for line in README.splitlines():
        section = line if line.startswith("## ") else section
        block = re.match(r"^    (edgenas .*?)(\s+#.*)?$", line)
        if block:
            out.append(block.group(1).strip())
        elif line.startswith("|") and section == "## Choose your path":
            out += re.findall(r"`(edgenas [^`]+)`", line)
    return out


def test_the_readme_shows_a_command_for_every_path():
    commands = readme_commands()
    assert len(commands) >= 12
    for needle in ("folder:", "--profile stm32f746", "--profile pixel-litert", "--executor ray", "--objectives"):
        assert any(needle in c for c in commands), needle
    assert len(README.splitlines()) <= 250  # a newcomer's five minutes


def _photos(root: Path) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for label, hue in (("cats", 0), ("dogs", 1)):
        (root / label).mkdir(parents=True)
        for i in range(24):
            pixels = rng.integers(0, 80, (16, 16, 3), dtype=np.uint8)
            pixels[..., hue] += 150  # a colour tells the classes apart
            Image.fromarray(pixels).save(root / label / f"{i}.png")
    return root


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_every_readme_command_runs_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _photos(tmp_path / "photos")
    runs = tmp_path / "runs"
    table = ROOT.parent / "shared" / "data" / "nb201-cifar-12epoch.csv"
    ray_head = None
    last_run: Path | None = None
    ran = []
    try:
        for command in readme_commands():
            if "../shared/data" in command and not table.exists():
                continue  # a clean clone without ../shared beside it
            if "HOST:6379" in command:
                pytest.importorskip("ray")
                port = _free_port()
                ray = str(Path(sys.executable).with_name("ray"))
                ray_head = ray
                for attempt in (1, 2):  # a loaded machine can miss ray's own start-up deadlines once
                    started = subprocess.run(
                        [ray, "start", "--head", f"--port={port}", "--num-cpus=2", "--include-dashboard=false"],
                        capture_output=True, text=True, timeout=180,
                    )  # fmt: skip
                    if started.returncode == 0:
                        break
                    subprocess.run([ray, "stop", "--force"], capture_output=True, timeout=120)
                assert started.returncode == 0, (
                    f"ray start --head failed:\n{started.stdout[-2000:]}\n{started.stderr[-2000:]}"
                )
                command = command.replace("HOST:6379", f"127.0.0.1:{port}")
            if "../shared/data" in command:
                command = command.replace("../shared/data", str(table.parent))
            args = shlex.split(command.replace("~/photos", str(tmp_path / "photos")))[1:]
            if args[0] == "search":
                before = set(runs.iterdir()) if runs.exists() else set()
                args += SMALL + ["--runs-dir", str(runs)]
            args = [a.replace("runs/<run>", str(last_run)) for a in args]
            res = CliRunner().invoke(app, args)
            assert res.exit_code == 0, f"$ {command}\n{res.output[-3000:]}"
            ran.append(command)
            if args[0] == "search":
                (new,) = {d for d in set(runs.iterdir()) - before if not d.name.startswith(".")}  # not .supernets
                last_run = new
                assert (new / "manifest.json").is_file(), command
    finally:
        if ray_head:
            subprocess.run([ray_head, "stop", "--force"], capture_output=True, timeout=120)
    assert len(ran) >= 12, ran
    assert (last_run is not None) and any("export" in c for c in ran)
