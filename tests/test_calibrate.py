"""Calibration on real measured pairs: the 'device' is this host under other settings."""

import csv
import dataclasses
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgenas.cli import app
from edgenas.controllers import History, RandomController
from edgenas.errors import ConfigError
from edgenas.hardware.calibrate import Calibration, cross_validate, graph_features, read_pairs
from edgenas.hardware.calibration import GROUPS
from edgenas.hardware.latency import Measurer
from edgenas.hardware.onnx import export_onnx
from edgenas.hardware.profiles import load_profile
from edgenas.spaces import create
from edgenas.spaces.nb201 import NB201Arch, NB201Net


def test_graph_features_count_real_work():
    import torch.nn as nn

    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, bias=False), nn.ReLU(), nn.Flatten(), nn.Linear(256, 10))
    f = graph_features(export_onnx(model, (1, 8, 8)))
    assert f["conv_macs"] == f["conv3x3_macs"] == 4 * 9 * 64 and f["conv_count"] == f["conv3x3_count"] == 1
    assert f["gemm_macs"] == 256 * 10 and f["act_elements"] == 256


def test_graph_features_split_convolutions_by_kernel_kind():
    import torch.nn as nn

    model = nn.Sequential(
        nn.Conv2d(2, 4, 1),
        nn.Conv2d(4, 4, 3, padding=1),
        nn.Conv2d(4, 4, 5, padding=2),
        nn.Conv2d(4, 4, 3, padding=1, groups=4),
        nn.Conv2d(4, 4, (1, 3), padding=(0, 1)),
    )
    f = graph_features(export_onnx(model, (2, 8, 8)))
    assert f["conv1x1_macs"] == 64 * 4 * 2 and f["conv3x3_macs"] == 64 * 4 * 4 * 9
    assert f["convkxk_count"] == 2 and f["convkxk_macs"] == 64 * 4 * 4 * (25 + 3)
    assert f["dwconv_count"] == 1 and f["dwconv_macs"] == 64 * 4 * 9
    assert f["conv_count"] == 5 and f["conv_macs"] == sum(
        f[f"{g}_macs"] for g in ("conv1x1", "conv3x3", "convkxk", "dwconv")
    )


def test_prediction_falls_back_to_the_factor_outside_what_the_pairs_had():
    import torch.nn as nn

    from edgenas.hardware.calibrate import covered_features, fit, fit_scale

    # pairs with 3x3 convolutions only; 'device' = 2 x host + 1e-6 x 3x3 MACs
    nets = [nn.Sequential(nn.Conv2d(1, c, 3, padding=1), nn.ReLU()) for c in (2, 4, 6, 8, 10, 12)]
    feats = [graph_features(export_onnx(n, (1, 8, 8))) for n in nets]
    host = [0.07, 0.03, 0.11, 0.05, 0.13, 0.02]  # not proportional to the work, so the fit is unique
    device = [2 * h + 1e-6 * f["conv3x3_macs"] for h, f in zip(host, feats)]
    from edgenas.hardware.calibrate import FEATURES

    cal = Calibration(
        "p",
        "m",
        list(FEATURES),
        fit(host, feats, device),
        "cpu",
        len(nets),
        covered=covered_features(feats),
        baseline_scale=fit_scale(host, device),
    )
    assert "conv3x3_macs" in cal.covered and "convkxk_macs" not in cal.covered
    inside = graph_features(export_onnx(nn.Sequential(nn.Conv2d(1, 5, 3, padding=1), nn.ReLU()), (1, 8, 8)))
    value, how = cal.predict_explained(0.1, inside)
    assert how == "calibration" and value == pytest.approx(0.2 + 1e-6 * inside["conv3x3_macs"], rel=1e-3)
    outside = graph_features(export_onnx(nn.Sequential(nn.Conv2d(1, 5, 7, padding=3), nn.ReLU()), (1, 8, 8)))
    value, how = cal.predict_explained(0.1, outside)
    assert value == pytest.approx(0.1 * cal.baseline_scale) and "convkxk" in how and how.startswith("outside the fit")


def test_graph_only_prediction_prices_unseen_work_as_its_proxy_and_says_so():
    import torch.nn as nn

    from edgenas.hardware.calibrate import GRAPH_FEATURES, covered_features, fit

    # 'device' = 1e-6 x 3x3 MACs + 0.01 per conv node, from the graph alone
    nets = [nn.Sequential(nn.Conv2d(1, c, 3, padding=1), nn.ReLU()) for c in (2, 4, 6, 8, 10, 12)]
    feats = [graph_features(export_onnx(n, (1, 8, 8))) for n in nets]
    device = [1e-6 * f["conv3x3_macs"] + 0.01 * f["conv3x3_count"] for f in feats]
    weights = fit(None, feats, device, GRAPH_FEATURES)
    cal = Calibration("p", "m", list(GRAPH_FEATURES), weights, "", len(nets), covered=covered_features(feats))
    assert not cal.uses_host and cal.applies_here()
    inside = graph_features(export_onnx(nn.Sequential(nn.Conv2d(1, 5, 3, padding=1), nn.ReLU()), (1, 8, 8)))
    value, how = cal.predict_explained(None, inside)
    assert how == "calibration" and value == pytest.approx(1e-6 * inside["conv3x3_macs"] + 0.01, rel=1e-3)
    seven = graph_features(export_onnx(nn.Sequential(nn.Conv2d(1, 5, 7, padding=3), nn.ReLU()), (1, 8, 8)))
    value, how = cal.predict_explained(None, seven)
    # the 7x7 work is priced at the 3x3 weights (proxy), never silently at zero
    assert how.startswith("outside the fit") and "convkxk as conv3x3" in how
    assert value == pytest.approx(1e-6 * seven["convkxk_macs"] + 0.01, rel=1e-3)


def test_graph_features_count_tensors_read_by_more_than_one_operator():
    """A residual (y = relu(x); conv(y) + y) reads y twice: one extra reader of y's elements; a
    chain reads every tensor once; weights shared by operators are not activations."""
    import torch.nn as nn

    class Residual(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(4, 4, 3, padding=1)

        def forward(self, x):
            y = x.relu()
            return self.conv(y) + y

    chain = graph_features(export_onnx(nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.ReLU()), (4, 8, 8)))
    assert chain["fanout_count"] == 0 and chain["fanout_elements"] == 0
    f = graph_features(export_onnx(Residual(), (4, 8, 8)))
    assert f["fanout_count"] == 1 and f["fanout_elements"] == 4 * 8 * 8 and f["fanout_macs"] == 0
    assert f["conv3x3_count"] == chain["conv3x3_count"] == 1  # the operators' own work as before


def test_calibrations_written_before_the_fanout_group_neither_use_nor_flag_it():
    """The shipped cpu-arm calibration was fitted without `fanout_*`: a network with fan-out is
    inside its fit and predicted from the features it has."""
    cal = Calibration.load(load_profile("cpu-arm").calibration_path())
    assert not any(name.startswith("fanout_") for name in cal.features)
    cell = "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|skip_connect~0|nor_conv_3x3~1|avg_pool_3x3~2|"
    f = graph_features(export_onnx(NB201Net(NB201Arch.parse(cell), 3, 100, c=16, n=5, prune=False).eval(), (3, 32, 32)))
    assert f["fanout_count"] > 0 and cal.uncovered(f) == []
    without = {k: v for k, v in f.items() if not k.startswith("fanout_")}
    assert cal.predict_explained(None, f) == cal.predict_explained(None, without)


def test_calibrations_written_before_the_split_predict_as_before():
    import torch.nn as nn

    old = Calibration("p", "m", ["host_ms", "conv_macs"], [1.5, 1e-6], "cpu", 10)  # no coverage: all trusted
    f = graph_features(export_onnx(nn.Sequential(nn.Conv2d(1, 4, 5, padding=2)), (1, 8, 8)))
    assert old.predict_explained(0.2, f) == (pytest.approx(0.3 + 1e-6 * f["conv_macs"]), "calibration")


@pytest.fixture(scope="module")
def pairs_csv(tmp_path_factory):
    """Twelve networks; 'device' latency = this host with 2 threads and a batch of 8."""
    d = tmp_path_factory.mktemp("cal")
    space = create("layerwise", input_shape=(1, 8, 8), num_classes=10)
    device = dataclasses.replace(load_profile("cpu-x86"), batch_size=8, sessions=1)
    m = Measurer(use_cache=False)
    with open(d / "pairs.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["model", "device_ms"])
        for i, actions in enumerate(RandomController(space, seed=4).propose(12, History())):
            blob = export_onnx(space.build(space.decode(actions)), (1, 8, 8))
            (d / f"m{i}.onnx").write_bytes(blob)
            w.writerow([f"m{i}.onnx", m.measure(blob, device).median_ms])
    m.close()
    return d / "pairs.csv"


def test_calibrate_cli_writes_a_calibrated_profile_that_predicts(pairs_csv, tmp_path):
    res = CliRunner().invoke(
        app, ["calibrate", str(pairs_csv), "--profile", "cpu-arm-host", "--out-dir", str(tmp_path), "--folds", "3"]
    )
    assert res.exit_code == 0, res.output
    assert "graph only" in res.output and "host timing + graph" in res.output and "baseline" in res.output
    graph = Calibration.load(tmp_path / "cpu-arm-host-calibrated.calibration.json")
    host = Calibration.load(tmp_path / "cpu-arm-host-calibrated.host-calibration.json")
    assert not graph.uses_host and graph.host_cpu == "" and host.uses_host and host.host_cpu
    for cal in (graph, host):
        assert cal.pairs == 12 and set(cal.cv) >= {"spearman", "mape_pct"} and len(cal.weights) == len(cal.features)
        assert all(w >= 0 for w in cal.weights)
    prof = load_profile(str(tmp_path / "cpu-arm-host-calibrated.toml"))
    assert prof.measured_on == "calibrated" and prof.latency_label == "predicted"
    assert prof.host_calibration == "cpu-arm-host-calibrated.host-calibration.json"
    stats = Measurer(use_cache=False).measure(str(pairs_csv.parent / "m0.onnx"), prof)
    assert stats.label == "predicted" and stats.host_median_ms > 0 and stats.median_ms > 0
    assert stats.calibration == "cpu-arm-host-calibrated.host-calibration.json"  # this host: the host timing refines
    bench = CliRunner().invoke(
        app, ["bench", str(pairs_csv.parent / "m0.onnx"), "-p", str(tmp_path / "cpu-arm-host-calibrated.toml")]
    )
    assert bench.exit_code == 0 and "predicted" in bench.output


def test_calibrate_graph_only_times_nothing_and_predicts_the_same_on_another_cpu(pairs_csv, tmp_path, monkeypatch):
    import edgenas.hardware.calibration as calibration

    res = CliRunner().invoke(
        app, ["calibrate", str(pairs_csv), "--graph-only", "--name", "mine", "--out-dir", str(tmp_path), "--folds", "3"]
    )
    assert res.exit_code == 0, res.output
    assert "graph only" in res.output and "host timing" not in res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.calibration.json", "mine.toml"]
    prof = load_profile(str(tmp_path / "mine.toml"))
    model = (pairs_csv.parent / "m3.onnx").read_bytes()
    m = Measurer(use_cache=False)
    here = m.measure(model, prof)
    monkeypatch.setattr(calibration, "host_cpu", lambda: "Some Other CPU @ 1.0GHz")
    elsewhere = Measurer(use_cache=False).measure(model, prof)
    assert here.median_ms == pytest.approx(elsewhere.median_ms)  # from the graph alone: host-independent
    assert here.label == elsewhere.label == "predicted" and elsewhere.calibration == "mine.calibration.json"
    assert here.median_ms == pytest.approx(Calibration.load(tmp_path / "mine.calibration.json").predict(model, None))


def test_cross_validation_beats_nothing_and_is_out_of_fold():
    # a synthetic device that is exactly 3 x host + 1e-6 x 3x3-conv MACs: the fit must recover it
    host = [0.1 * (i + 1) for i in range(20)]
    feats = [{"conv3x3_macs": 1000.0 * ((i * 7) % 20 + 1)} for i in range(20)]
    device = [3 * h + 1e-6 * f["conv3x3_macs"] for h, f in zip(host, feats)]
    cv, base = cross_validate(host, feats, device, folds=4)
    assert cv["mape_pct"] < 1e-6 < base["mape_pct"] and cv["spearman"] == pytest.approx(1.0)


def test_nb201_pairs_build_the_described_networks(tmp_path):
    f = tmp_path / "pi.csv"
    f.write_text(
        "arch_idx,lat_ms_median,lat_ms_var,cellstr\n0,1.83,0.0,|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|\n"
    )
    (p,) = read_pairs(f)
    assert p.device_ms == 1.83
    import onnx

    proto = onnx.load_from_string(p.model())
    dims = [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim[1:]]
    assert dims == [3, 32, 32] and proto.graph.output[0].type.tensor_type.shape.dim[1].dim_value == 100


@pytest.mark.parametrize(
    "text, match",
    [
        ("a,b\n1,2\n", "needs either 'model,device_ms'"),
        ("model,device_ms\nmissing.onnx,1.0\n", "does not exist"),
        ("cellstr,lat_ms_median\n|bogus~0|,1.0\n", "NB201"),
    ],
)
def test_bad_calibration_files(tmp_path, text, match):
    f = tmp_path / "c.csv"
    f.write_text(text)
    with pytest.raises(ConfigError, match=match):
        read_pairs(f)
    res = CliRunner().invoke(app, ["calibrate", str(f), "--out-dir", str(tmp_path)])
    assert res.exit_code == 2


def test_nb201_cell_strings_round_trip_and_build():
    import torch

    text = "|nor_conv_3x3~0|+|none~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_1x1~1|none~2|"
    arch = NB201Arch.parse(text)
    assert str(arch) == text
    out = NB201Net(arch, 3, 10, c=4, n=1).eval()(torch.zeros(2, 3, 16, 16))
    assert out.shape == (2, 10)
    all_none = NB201Net(NB201Arch(("none",) * 6), 3, 10, c=4, n=1).eval()(torch.zeros(1, 3, 16, 16))
    assert all_none.shape == (1, 10)
    with pytest.raises(ValueError):
        NB201Arch.parse("|nor_conv_3x3~1|+|none~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_1x1~1|none~2|")


def test_bench_marks_a_prediction_outside_the_calibration(tmp_path):
    import torch.nn as nn

    # pairs: 3x3 convolutions only, 'device' latency measured for real on this host (2 threads)
    device = dataclasses.replace(load_profile("cpu-x86"), sessions=1, timed_runs=10, warmup_runs=2)
    m = Measurer(use_cache=False)
    rows = []
    for i, c in enumerate((2, 4, 8, 12, 16, 24)):
        blob = export_onnx(
            nn.Sequential(nn.Conv2d(1, c, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(64 * c, 10)), (1, 8, 8)
        )
        (tmp_path / f"m{i}.onnx").write_bytes(blob)
        rows.append(f"m{i}.onnx,{m.measure(blob, device).median_ms}")
    (tmp_path / "pairs.csv").write_text("model,device_ms\n" + "\n".join(rows) + "\n")
    seven = tmp_path / "seven.onnx"
    seven.write_bytes(
        export_onnx(
            nn.Sequential(nn.Conv2d(1, 8, 7, padding=3), nn.ReLU(), nn.Flatten(), nn.Linear(512, 10)), (1, 8, 8)
        )
    )
    m.close()
    res = CliRunner().invoke(
        app,
        ["calibrate", str(tmp_path / "pairs.csv"), "--name", "c", "--out-dir", str(tmp_path), "--folds", "2"],
    )
    assert res.exit_code == 0, res.output
    prof = str(tmp_path / "c.toml")
    out = CliRunner().invoke(app, ["bench", str(tmp_path / "m1.onnx"), str(seven), "-p", prof, "--no-cache", "--csv"])
    assert out.exit_code == 0, out.output
    by_model = {Path(r["model"]).name: r for r in csv.DictReader(out.output.splitlines())}
    assert by_model["m1.onnx"]["prediction"] == "calibration"
    assert by_model["seven.onnx"]["prediction"].startswith("outside the fit")
    assert "convkxk" in by_model["seven.onnx"]["prediction"]
    table = CliRunner().invoke(app, ["bench", str(seven), "-p", prof, "--no-cache"])
    assert table.exit_code == 0 and "~" in table.output


@pytest.fixture(scope="module")
def boards_csv(pairs_csv):
    """The twelve networks as a boards file (HW-NAS-Bench-360's layout): 'pi/onnx' with their
    measured latencies and energies of a 2.5 W board (2.5 mJ per ms), 'phone/litert' at half the
    time and without energy data."""
    rows = list(csv.DictReader(open(pairs_csv, newline="")))
    out = pairs_csv.parent / "boards.csv"
    with open(out, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["model", "board", "framework", "device_ms", "energy_mj"])
        for r in rows:
            ms = float(r["device_ms"])
            w.writerow([r["model"], "pi", "onnx", ms, 2.5 * ms])
            w.writerow([r["model"], "phone", "litert", ms / 2, ""])
    return out


def test_calibrate_a_boards_file_fits_latency_and_energy_and_the_profile_predicts_both(boards_csv, tmp_path):
    def run(*args):
        return CliRunner().invoke(app, ["calibrate", str(boards_csv), "--graph-only", "--out-dir", str(tmp_path),
                                        "--folds", "3", "--target", "Pi", *args])  # fmt: skip

    res = run("--board", "pi", "--framework", "onnx", "--name", "pi-ort")
    assert res.exit_code == 0, res.output
    assert "energy per inference" in res.output and "what carries the predicted latency" in res.output
    prof = load_profile(str(tmp_path / "pi-ort.toml"))
    assert prof.has_energy and prof.target == "Pi" and prof.measured_on == "calibrated"
    energy = Calibration.load(tmp_path / "pi-ort.energy-calibration.json")
    latency = Calibration.load(tmp_path / "pi-ort.calibration.json")
    assert energy.unit == "mJ" and latency.unit == "ms" and energy.pairs == latency.pairs == 12
    assert "board pi, framework onnx" in latency.source
    # which work carries the prediction: shares of operator groups, about the whole
    assert set(latency.contributions) <= {*GROUPS} and sum(latency.contributions.values()) == pytest.approx(1, abs=0.01)
    # energy here is 2.5 mJ per ms: the energy model is the latency model x 2.5, prediction for prediction
    m = Measurer(use_cache=False)
    stats = m.measure((boards_csv.parent / "m0.onnx").read_bytes(), prof)
    assert stats.energy_mj == pytest.approx(2.5 * stats.median_ms, rel=1e-6)
    assert stats.energy_prediction == "calibration" and stats.to_json()["energy_mj"] == stats.energy_mj
    m.close()
    # the phone's rows have no energy: a latency-only profile
    res = run("--board", "phone", "--framework", "litert", "--name", "phone")
    assert res.exit_code == 0, res.output
    phone = load_profile(str(tmp_path / "phone.toml"))
    assert not phone.has_energy and not (tmp_path / "phone.energy-calibration.json").exists()
    # bench across the two runtimes of board "Pi": which is fastest, which spends least
    res = CliRunner().invoke(app, ["bench", str(boards_csv.parent / "m0.onnx"), "-p", str(tmp_path / "pi-ort.toml"),
                                   "-p", str(tmp_path / "phone.toml"), "--json"])  # fmt: skip
    assert res.exit_code == 0, res.output
    rows = {r["profile"]: r for r in json.loads(res.output)}
    assert rows["phone"].get("fastest_on_board") and not rows["pi-ort"].get("fastest_on_board")
    assert rows["pi-ort"]["energy_mj"] > 0 and "energy_mj" in rows["phone"] and rows["phone"]["energy_mj"] is None


def test_a_boards_file_reads_only_the_chosen_rows(boards_csv):
    pairs = read_pairs(boards_csv, board="phone", framework="litert")
    assert len(pairs) == 12 and all(p.energy_mj is None for p in pairs)
    pi = read_pairs(boards_csv, board="pi", framework="onnx")
    assert [p.energy_mj for p in pi] == pytest.approx([2.5 * p.device_ms for p in pi])
    assert [2 * p.device_ms for p in pairs] == pytest.approx([p.device_ms for p in pi])
    with pytest.raises(ConfigError, match="holds timings of 2 board/framework pairs"):
        read_pairs(boards_csv)
    with pytest.raises(ConfigError, match="no board and framework columns"):
        read_pairs(boards_csv.parent / "pairs.csv", board="pi")
