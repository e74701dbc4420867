"""One search and its export through the `edgenas` CLI, as a user runs them; the winner's row.

Shared by the paper benchmarks that search real photos (benchmarks/paper_*.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def machine() -> str:
    """The CPU model, its cores and torch's version, for a results file's header."""
    import os

    import torch

    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores, torch {torch.__version__}"


def photos_pipeline(path: Path, epochs: int, final_epochs: int, space: str, controller: str) -> None:
    """pipelines/photos.toml (its augmentation and recipe) with these epochs, space and controller."""
    text = (ROOT / "pipelines" / "photos.toml").read_text()
    data = tomllib.loads(text)
    assert "training" in data and "final_training" in data
    lines, section = [], None
    for line in text.splitlines():
        if line.startswith("["):
            section = line.strip("[] ")
        if line.startswith("epochs =") and section in ("training", "final_training"):
            line = f"epochs = {epochs if section == 'training' else final_epochs}"
        if line.startswith("name =") and section == "space":
            line = f'name = "{space}"'
        if line.startswith("name =") and section == "controller":
            line = f'name = "{controller}"'
        lines.append(line)
    path.write_text("\n".join(lines) + "\n")


def search_and_export(run_dir: Path, search_args: list[str]) -> dict:
    """`edgenas search ARGS` into run_dir (resumed if it is there), then `edgenas export`."""
    search = [sys.executable, "-m", "edgenas", "search", *search_args, "--runs-dir", str(run_dir.parent)]
    search += ["--resume", str(run_dir)] if run_dir.is_dir() else ["--name", run_dir.name]
    print("$", " ".join(search[2:]), flush=True)
    t0 = time.perf_counter()
    subprocess.run(search, check=True)
    search_s = time.perf_counter() - t0
    export = [sys.executable, "-m", "edgenas", "export", str(run_dir)]
    print("$", " ".join(export[2:]), flush=True)
    t0 = time.perf_counter()
    subprocess.run(export, check=True)
    export_s = time.perf_counter() - t0
    bundle = json.loads((run_dir / "bundle" / "manifest.json").read_text())
    manifest = json.loads((run_dir / "manifest.json").read_text())
    fp32 = bundle["models"]["fp32"]
    return {
        "architecture": manifest["winner"]["arch_key"],
        "test_accuracy": bundle["test_accuracy"],
        "params": bundle["params"],
        "macs": bundle["macs"],
        "flops": bundle.get("flops") or 2 * bundle["macs"],
        "latency_ms_cpu_arm": fp32["latency"]["median_ms"],
        "trained": manifest["search"]["trained"],
        "search_seconds": round(search_s, 1),
        "export_seconds": round(export_s, 1),
        "command": "edgenas search " + " ".join(search_args),
    }


def describe(row: dict, label: str) -> str:
    return (
        f"{label:<12} test {100 * row['test_accuracy']:.2f} %  params {row['params']:,}  "
        f"MFLOPs {row['flops'] / 1e6:.2f}  cpu-arm {row['latency_ms_cpu_arm']:.3f} ms  {row['architecture']}"
    )
