"""Tabular mode: real CSV files, the real search loop and CLI, lookups instead of training."""

import csv
import itertools
import json
import sqlite3

import pytest
from typer.testing import CliRunner

from edgenas.cli import app
from edgenas.errors import DataError
from edgenas.spaces.nb201 import OPS, NB201Arch, NB201Space
from edgenas.table import Table

PROFILE = """name = "untimed"
description = "limits only"
timing = false
"""


def score(arch):
    """A table whose truth is known: validation = share of 3x3 convs (in percent), test = val + 1."""
    return 100 * sum(op == "nor_conv_3x3" for op in arch.ops) / 6


@pytest.fixture(scope="module")
def table_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("table") / "nb201.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["arch", "cellstr", "cifar10-val", "cifar10-test"])
        for i, ops in enumerate(itertools.product(OPS, repeat=6)):
            a = NB201Arch(ops)
            w.writerow([i, str(a), score(a), score(a) + 1])
    return path


def test_table_detects_columns_and_scales_percentages(table_file):
    space = NB201Space((3, 32, 32), 10)
    t = Table.load(table_file, space)
    assert (t.arch_column, t.val_column, t.test_column) == ("cellstr", "cifar10-val", "cifar10-test")
    best = NB201Arch(("nor_conv_3x3",) * 6)
    assert t.lookup(space, best) == pytest.approx((1.0, 1.01))
    with pytest.raises(DataError, match="no validation column 'acc'"):
        Table.load(table_file, space, val_column="acc")


@pytest.mark.slow
def test_tabular_search_finds_the_best_cell_without_training(table_file, tmp_path):
    prof = tmp_path / "untimed.toml"
    prof.write_text(PROFILE)
    args = [
        "search",
        "--space",
        "nb201",
        "--table",
        str(table_file),
        "--controller",
        "predictor",
        "--no-budget",
        "--children",
        "64",
        "--profile",
        str(prof),
        "--runs-dir",
        str(tmp_path / "runs"),
        "--name",
        "tab",
    ]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "nothing was trained" in " ".join(res.output.split())
    run = tmp_path / "runs" / "tab"
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["winner"]["onnx"] is None and not (run / "winner.onnx").exists()
    assert manifest["table"]["val_column"] == "cifar10-val"
    win = NB201Arch.parse(manifest["winner"]["architecture"]["cell"])
    assert manifest["winner"]["val_accuracy"] == pytest.approx(score(win) / 100)
    assert manifest["winner"]["test_accuracy"] == pytest.approx(score(win) / 100 + 0.01)
    assert score(win) == 100.0  # the single all-3x3 cell, found among 15,625 by lookup
    with sqlite3.connect(run / "search.db") as db:
        rows = db.execute("SELECT status, params, onnx_path FROM trials").fetchall()
    assert rows and all(s == "ok" and p > 0 and o is None for s, p, o in rows)
    assert not list((run / "children").iterdir())  # no weights, no ONNX files


def test_tabular_search_with_a_budget_rejects_before_lookup(table_file, tmp_path):
    prof = tmp_path / "untimed.toml"
    prof.write_text(PROFILE)
    args = [
        "search",
        "--space",
        "nb201",
        "--table",
        str(table_file),
        "--controller",
        "evolution",
        "--budget",
        "200000",
        "--children",
        "24",
        "--profile",
        str(prof),
        "--runs-dir",
        str(tmp_path / "runs"),
        "--name",
        "b",
    ]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    with sqlite3.connect(tmp_path / "runs" / "b" / "search.db") as db:
        rows = db.execute("SELECT status, params, val_accuracy FROM trials").fetchall()
    assert any(s == "rejected" for s, _, _ in rows)
    assert all((p > 200000) == (s == "rejected") for s, p, _ in rows)
    assert all(v is None for s, _, v in rows if s == "rejected")


def test_a_cell_small_table_is_read_by_its_printed_strings(tmp_path):
    """cell-small parses the strings its cells print as (`first>second`), so a table of the 64
    cells needs no --table-arch-column; a string that is not a cell is refused by name."""
    from edgenas.spaces.cells import CELL_OPS, CellSmallSpace

    space = CellSmallSpace((1, 8, 8), 10)
    path = tmp_path / "cells.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["name", "digits-val", "digits-test"])
        for i, j in itertools.product(range(len(CELL_OPS)), repeat=2):
            w.writerow([str(space.decode([i, j])), 50 + i + j, 40 + i])
    t = Table.load(path, space)
    assert t.arch_column == "name" and len(t.rows) == 64
    assert t.lookup(space, space.parse("identity>identity")) == pytest.approx((0.64, 0.47))
    assert str(space.parse("conv3x3>maxpool2x2")) == "conv3x3>maxpool2x2"
    with pytest.raises(ValueError, match="not a cell-small string"):
        space.parse("conv3x3>conv9x9")
