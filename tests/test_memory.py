"""Peak activation RAM and flash from the ONNX graph, on networks whose numbers are worked out by
hand (int8: one byte per activation element), and the RAM / flash limits as search gates."""

import json
import sqlite3

import pytest
import torch.nn as nn
from hand_networks import Residual
from typer.testing import CliRunner

from edgenas.cli import app
from edgenas.constraints import Constraints
from edgenas.errors import BudgetError
from edgenas.hardware.memory import FLASH_BYTES_PER_OP, INT8_BYTES_PER_OUTPUT_CHANNEL, memory_estimate
from edgenas.hardware.onnx import export_onnx
from edgenas.hardware.profiles import load_profile
from edgenas.reward import RewardConfig


def est(model: nn.Module, shape, precision="int8"):
    return memory_estimate(export_onnx(model.eval(), shape), precision)


def test_plain_chain():
    # input 1x8x8 = 64 (one channel: no NHWC copy); conv1 out 4x8x8 = 256 (ReLU fused into it);
    # conv2 out 8x8x8 = 512, a feature-map output the converter transposes back to NCHW (a copy).
    # conv1 runs with 64 + 256 live, conv2 with 256 + 512 = 768, the transpose with 512 + 512.
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 8, 3, padding=1))
    e = est(net, (1, 8, 8))
    assert e.peak_ram_bytes == e.best_peak_ram_bytes == 1024 and e.best_order_exact
    assert est(net, (1, 8, 8), "fp32").peak_ram_bytes == 4 * 1024
    # ending in a vector instead: no output transpose, conv2's 256 + 512 is the peak
    pooled = nn.Sequential(*net, nn.AdaptiveAvgPool2d(1), nn.Flatten())
    assert est(pooled, (1, 8, 8)).peak_ram_bytes == 768
    # flash, int8: weights 36 + 288 bytes, 28 bytes per output channel (bias; scale and zero
    # point of weights and bias), 3 operators (two convolutions, the output transpose)
    assert e.flash_bytes == 36 + 288 + INT8_BYTES_PER_OUTPUT_CHANNEL * (4 + 8) + FLASH_BYTES_PER_OP * 3
    assert est(net, (1, 8, 8), "fp32").flash_bytes == 4 * (36 + 4 + 288 + 8) + FLASH_BYTES_PER_OP * 3


def test_residual_block():
    # x, a, b, out: 4x8x8 = 256 bytes each. x stays live until the addition:
    # conv a: x + a = 512; conv b: x + a + b = 768; add: x + b + out = 768.
    e = est(Residual(4), (4, 8, 8))
    assert e.peak_ram_bytes == e.best_peak_ram_bytes == 768


class InvertedResidual(nn.Module):
    def __init__(self, c: int, t: int) -> None:
        super().__init__()
        self.expand = nn.Sequential(nn.Conv2d(c, c * t, 1), nn.ReLU6())
        self.dw = nn.Sequential(nn.Conv2d(c * t, c * t, 3, padding=1, groups=c * t), nn.ReLU6())
        self.project = nn.Conv2d(c * t, c, 1)

    def forward(self, x):
        return x + self.project(self.dw(self.expand(x)))


def test_inverted_residual_block():
    # x 4x8x8 = 256; expanded 24x8x8 = 1536; depthwise out 1536; projected 256; sum 256.
    # expand: 256 + 1536; depthwise: x + 1536 + 1536 = 3328 (the peak); project: 256 + 1536 + 256; add: 768.
    e = est(InvertedResidual(4, 6), (4, 8, 8))
    assert e.peak_ram_bytes == 3328 and e.peak_node.endswith("Conv")


class TwoBranch(nn.Module):
    """Two branches, each widening to 16 channels and back to 2; traced interleaved (a1, b1, a2, b2)."""

    def __init__(self) -> None:
        super().__init__()
        self.a1, self.a2 = nn.Conv2d(2, 16, 1), nn.Conv2d(16, 2, 1)
        self.b1, self.b2 = nn.Conv2d(2, 16, 1), nn.Conv2d(16, 2, 1)

    def forward(self, x):
        a = self.a1(x)
        b = self.b1(x)
        return self.a2(a) + self.b2(b)


def test_two_branch_cell_order_matters():
    # x = 2x8x8 = 128 bytes, the wide tensors 1024, the narrow ones 128.
    # Graph order a1, b1, a2, b2, add: b1 runs with x + a1 + b1 = 2176 live (also a2: a1 + b1 + a2).
    # Best order a1, a2, b1, b2, add: never more than one wide tensor: 128 + 1024 + 128 = 1280.
    e = est(TwoBranch(), (2, 8, 8))
    assert e.peak_ram_bytes == 2176
    assert e.best_peak_ram_bytes == 1280 and e.best_order_exact


def test_memory_limits_are_gates_and_refuse_the_impossible_up_front():
    mcu = load_profile("stm32f746")
    assert mcu.precision == "int8" and mcu.max_peak_ram_bytes == 320 * 1024 and mcu.max_flash_bytes == 1024 * 1024
    c = Constraints.build(RewardConfig(budget_params=None, max_ram_kb=75, max_flash_kb=75), mcu)
    assert c.needs_memory and c.ram_bytes.value == 75 * 1024 and c.flash_bytes.value == 75 * 1024
    assert c.check_memory(70 * 1024, 10) is None
    assert c.check_memory(80 * 1024, 10) == "peak RAM 81,920 bytes > 76,800 bytes (--max-ram-kb)"
    assert c.check_memory(10, 80 * 1024) == "flash 81,920 bytes > 76,800 bytes (--max-flash-kb)"
    # the profile's own limit, less its headroom, when it is the tighter one
    c = Constraints.build(RewardConfig(budget_params=None), mcu)
    assert c.ram_bytes.value == 320 * 1024 - mcu.ram_headroom_bytes and "kept for the runtime" in c.ram_bytes.source
    tiny = Constraints.build(RewardConfig(budget_params=None, max_flash_kb=1), mcu)
    with pytest.raises(BudgetError, match="flash limit of 1,024 bytes"):
        tiny.check_feasible(5000, "layerwise", 64)  # 5,000 int8 weights cannot fit in 1 KiB
    with pytest.raises(BudgetError, match="the input alone"):
        Constraints.build(RewardConfig(budget_params=None, max_ram_kb=1), mcu).check_feasible(10, "x", 3 * 32 * 32)


def test_a_microcontroller_search_never_trains_a_child_over_its_limits(tiny_pipeline, tmp_path):
    args = ["search", "--pipeline", tiny_pipeline(children=6), "--profile", "stm32f746", "--name", "mcu"]
    res = CliRunner().invoke(app, [*args, "--max-ram-kb", "0.6", "--max-flash-kb", "4"])
    assert res.exit_code == 0, res.output
    assert "peak RAM" in res.output and "flash" in res.output
    with sqlite3.connect(tmp_path / "runs" / "mcu" / "search.db") as db:
        rows = db.execute("SELECT status, reason, memory, train_seconds FROM trials").fetchall()
    over = 0
    for status, reason, memory, train_s in rows:
        if memory is None:  # rejected on parameters before export
            assert status == "rejected" and "params" in reason
            continue
        m = json.loads(memory)
        fits = m["peak_ram_bytes"] <= 0.6 * 1024 and m["flash_bytes"] <= 4 * 1024
        if status == "ok":
            assert fits and train_s > 0
        if not fits:
            over += 1
            assert status == "rejected" and train_s is None and ("peak RAM" in reason or "flash" in reason)
    assert over > 0, "the limits should reject some of this space"
    manifest = json.loads((tmp_path / "runs" / "mcu" / "manifest.json").read_text())
    w = manifest["winner"]["memory"]
    assert w["precision"] == "int8" and w["peak_ram_bytes"] <= 0.6 * 1024
    # an int8 profile: every trained child's reward accuracy is its int8 model's, the float one kept
    with sqlite3.connect(tmp_path / "runs" / "mcu" / "search.db") as db:
        trained = db.execute(
            "SELECT val_accuracy, fp32_val_accuracy, reward FROM trials WHERE status = 'ok'"
        ).fetchall()
    assert trained and all(0 <= v <= 1 and f is not None and r == pytest.approx(v) for v, f, r in trained)
    assert "int8; fp32" in " ".join(res.output.split())


def test_runs_written_before_the_memory_column_still_open(tmp_path):
    from edgenas.run.store import SCHEMA, Store

    db = tmp_path / "search.db"
    with sqlite3.connect(db) as conn:  # a version-2 store: no trials.memory (nor the later rungs)
        old = SCHEMA.replace(",\n    memory TEXT,\n    fp32_val_accuracy REAL,\n    rung INTEGER", "")
        old = old.replace(",\n    stats TEXT", "").replace(",\n    told REAL", "")
        conn.executescript(
            old[: old.index("CREATE TABLE IF NOT EXISTS rungs")]
            + old[old.index("CREATE TABLE IF NOT EXISTS samples") :]
        )
        conn.execute("PRAGMA user_version = 2")
    with Store(db, readonly=True) as ro:
        assert ro.trials() == []
    with Store(db) as rw:
        cols = [r[1] for r in rw.conn.execute("PRAGMA table_info(trials)")]
        assert {"memory", "fp32_val_accuracy"} <= set(cols) and rw.conn.execute("PRAGMA user_version").fetchone()[
            0
        ] == 6
