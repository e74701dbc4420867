"""The boards and runtimes fitted from measured data (benchmarks/boards.py): the shipped profiles
predict latency (and, on the Pi 5, energy) from the graph alone, LiteRT's profiles see the graph
as its converter leaves it, and the docs page quotes the results file's numbers."""

import json
import re
from pathlib import Path

import pytest

from edgenas.hardware.calibration import Calibration, graph_features
from edgenas.hardware.latency import Measurer
from edgenas.hardware.onnx import export_onnx
from edgenas.hardware.profiles import load_profile
from edgenas.spaces.nb201 import NB201Arch, NB201Net

ROOT = Path(__file__).resolve().parents[1]
RESULTS = json.loads((ROOT / "benchmarks" / "results" / "boards.json").read_text())
NEW = ("pi5-litert", "pi5-torchmobile", "pixel-litert")


def nb201(cell: str) -> bytes:
    return export_onnx(NB201Net(NB201Arch.parse(cell), 3, 100, c=8, n=1, prune=False).eval(), (3, 16, 16))


@pytest.mark.parametrize("name", NEW)
def test_each_new_profile_is_a_fitted_prediction_with_its_provenance(name):
    profile = load_profile(name)
    assert profile.measured_on == "calibrated" and profile.latency_label == "predicted"
    cal = Calibration.load(profile.calibration_path())
    board, framework = RESULTS["pairs"][name]["board"], RESULTS["pairs"][name]["framework"]
    assert f"board {board}, framework {framework}" in cal.source and cal.pairs == 1994
    assert cal.cv == RESULTS["pairs"][name]["latency"]["cv"]
    assert profile.has_energy == (board == "raspberry-pi-5") == ("energy" in RESULTS["pairs"][name])
    assert cal.fold_constants == (framework == "litert")  # chosen by cross-validation, as the runtimes behave


def test_litert_runs_the_graph_its_converter_leaves():
    """A cell whose output no longer depends on its input ('none' into the last node) is folded
    away by LiteRT's converter, not by onnxruntime: the LiteRT profile predicts it far faster
    relative to a network with the same work left in, while onnxruntime's does not."""
    dead = nb201("|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|nor_conv_3x3~2|")
    alive = nb201("|nor_conv_3x3~0|+|none~0|none~1|+|nor_conv_3x3~0|none~1|nor_conv_3x3~2|")
    assert graph_features(dead)["conv3x3_count"] > 0 and graph_features(dead, fold_constants=True)["conv3x3_count"] == 0
    m = Measurer(use_cache=False)
    try:
        ratio = {p: m.measure(dead, load_profile(p)).median_ms / m.measure(alive, load_profile(p)).median_ms
                 for p in ("cpu-arm", "pi5-litert")}  # fmt: skip
        energy = m.measure(alive, load_profile("pi5-torchmobile"))
    finally:
        m.close()
    assert ratio["pi5-litert"] < 0.5 * ratio["cpu-arm"]
    assert energy.energy_mj is not None and energy.energy_mj > 0 and energy.energy_prediction


def test_the_docs_page_quotes_the_results_file():
    """Every number in docs/boards.md's table is the results file's, rounded as shown."""
    page = (ROOT / "docs" / "boards.md").read_text().split("## What the readings allow")[0]
    rows = re.findall(r"^\| `([\w-]+)` \| (latency|energy) \| (.+) \|$", page, flags=re.M)
    assert {(p, q) for p, q, _ in rows} == {
        (p, q) for p, e in RESULTS["pairs"].items() for q in ("latency", "energy") if q in e
    }
    for profile, quantity, cells in rows:
        got = [c.strip() for c in cells.split("|")]
        r = RESULTS["pairs"][profile][quantity]
        cv, ext = r["cv"], r["extrapolation"]
        want = [f"{cv['spearman']:.4f}", f"{cv['mape_pct']:.2f} %", f"{100 * cv['within_10pct']:.1f} %",
                f"{ext['spearman']:.4f}", f"{ext['mape_pct']:.2f} %", f"{100 * ext['within_10pct']:.1f} %"]  # fmt: skip
        assert got[:6] == want, (profile, quantity)


def _boards_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("boards_benchmark", ROOT / "benchmarks" / "boards.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_ceiling_is_what_one_prediction_per_set_of_features_can_hit():
    """Three networks with the same features read 1.0, 1.05 and 1.3: one number is within 10 % of
    at most two of them; a network alone in its features can be hit. Predicted by the others'
    median (1.175, 1.15, 1.025), only 1.05 is within 10 %."""
    a, b = {"conv3x3_macs": 1.0}, {"conv3x3_macs": 2.0}
    c = _boards_module().ceiling([a, a, a, b], [1.0, 1.05, 1.3, 2.0])
    assert c["best_within_10pct"] == 0.75 and c["networks"] == 3 and c["groups"] == 1
    assert c["within_10pct"] == pytest.approx(1 / 3)


def test_the_docs_page_quotes_the_ceilings():
    """The ceiling table of docs/boards.md is the results file's, rounded as shown."""
    page = (ROOT / "docs" / "boards.md").read_text().split("## What the readings allow")[1]
    rows = re.findall(r"^\| `([\w-]+)` \| (latency|energy) \| ([\d.]+ %) \| ([\d.]+ %) \| (\d+) in (\d+) \| (.+) \|$",
                      page, flags=re.M)  # fmt: skip
    assert len(rows) == sum(q in e for e in RESULTS["pairs"].values() for q in ("latency", "energy"))
    for profile, quantity, cv10, best, networks, groups, rest in rows:
        r = RESULTS["pairs"][profile][quantity]
        cv, c = r["cv"], r["ceiling"]
        assert cv10 == f"{100 * cv['within_10pct']:.1f} %" and best == f"{100 * c['best_within_10pct']:.1f} %"
        assert (int(networks), int(groups)) == (c["networks"], c["groups"])
        got = [x.strip() for x in rest.split("|")]
        assert got == [f"{c['spearman']:.4f}", f"{c['mape_pct']:.2f} %", f"{100 * c['within_10pct']:.1f} %"]
