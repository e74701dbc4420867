"""Your own data and your own search space through the Python API: arrays and Datasets in
memory, a space defined outside edgenas (tests/user_space.py) passed as a class, by path and as
an installed entry point, and the conformance suite a user runs on it."""

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from test_faults import cli
from user_space import KeylessSpace, TinySpace

import edgenas
from edgenas import spaces
from edgenas.errors import ConfigError, DataError, SpaceCheckError
from edgenas.testing import check_space

FAST = dict(children=4, epochs=1, budget=5000, device="cpu", progress=False)


def _digits_uint8():
    b = load_digits()
    return (b.images * 255 / 16).astype(np.uint8)[:, None], b.target


def test_check_space_passes_a_user_space_and_names_what_a_broken_one_gets_wrong():
    summary = check_space(TinySpace, input_shape=(1, 8, 8), num_classes=10)
    assert summary["name"] == "tiny" and summary["params"][0] >= 4 * 1 + 4 + 4 * 2 + 4 * 10 + 10
    with pytest.raises(SpaceCheckError, match="builds the same network as .* which has the same key"):
        check_space(KeylessSpace, input_shape=(1, 8, 8), num_classes=10, proposals=24)


@pytest.mark.parametrize("name", spaces.names())
def test_every_shipped_space_passes_the_conformance_suite(name):
    small = {"nb201": {"channels": 4, "cells_per_stage": 1}, "cell-small": {"channels": 4}}
    small["cell-large"] = {"channels": 4, "blocks": 2}
    summary = check_space(spaces.space_class(name), (1, 8, 8), 10, **small.get(name, {}))
    assert summary["distinct_keys"] >= 2


def test_a_user_space_class_is_searched_end_to_end_and_exported(tmp_path):
    run = edgenas.search("digits", space=TinySpace, runs_dir=tmp_path / "runs", name="tiny", **FAST)
    assert run.pipeline.space.name == "user_space:TinySpace"
    keys = [t.arch_key for t in run.trials("ok")]
    assert keys and all(k.startswith("tiny|") for k in keys)
    assert run.winner.arch_key.startswith("tiny|") and run.winner.onnx_path.is_file()
    bundle = edgenas.export(run, progress=False)[0]
    assert bundle.manifest["test_accuracy"] > 0.2 and (bundle.path / "model.onnx").is_file()
    with pytest.raises(ConfigError, match="give the space's class"):
        edgenas.search("digits", space=TinySpace((1, 8, 8), 10), **FAST)
    with pytest.raises(ConfigError, match="cannot import module 'no_such_module'"):
        edgenas.search("digits", space="no_such_module:Space", runs_dir=tmp_path / "bad", **FAST)
    assert not (tmp_path / "bad").exists()


@pytest.mark.slow
def test_an_installed_entry_point_names_a_space_for_the_cli(tmp_path, monkeypatch):
    dist = tmp_path / "site" / "my_spaces-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-spaces\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[edgenas.spaces]\ntiny = user_space:TinySpace\n")
    tests_dir = str(__import__("pathlib").Path(__file__).parent)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    assert "tiny" in spaces.available() and spaces.space_class("tiny") is TinySpace
    monkeypatch.setenv("PYTHONPATH", f"{tmp_path / 'site'}:{tests_dir}")
    res = cli(
        ["search", "--space", "tiny", "--children", "3", "--epochs", "1", "--runs-dir", str(tmp_path / "r"),
         "--name", "ep", "--device", "cpu"],
        tmp_path,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "winner trial" in res.stdout
    assert edgenas.load_run(tmp_path / "r" / "ep").winner.arch_key.startswith("tiny|")
    res = cli(["search", "--space", "tinyy", "--runs-dir", str(tmp_path / "r")], tmp_path)
    assert res.returncode == 2 and "unknown search space 'tinyy'" in res.stderr and "tiny" in res.stderr


@pytest.mark.slow
def test_arrays_in_memory_are_searched_kept_in_the_run_and_exported(tmp_path):
    x, y = _digits_uint8()
    run = edgenas.search((x, y), runs_dir=tmp_path / "runs", name="arr", **FAST)
    kept = run.path / "data.npz"
    assert kept.is_file() and run.pipeline.dataset.name == f"arrays:{kept.resolve()}"
    assert run.manifest["dataset"]["sizes"] == {"train": 1167, "val": 270, "test": 360}  # as digits is split
    # the same images through the CLI's arrays:PATH dataset give the same trials
    res = cli(
        ["search", "--dataset", f"arrays:{kept}", "--children", "4", "--epochs", "1", "--budget", "5000",
         "--device", "cpu", "--runs-dir", str(tmp_path / "runs"), "--name", "cli"],
        tmp_path,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    cli_run = edgenas.load_run(tmp_path / "runs" / "cli")
    assert [(t.arch_key, t.val_accuracy) for t in cli_run.trials()] == [
        (t.arch_key, t.val_accuracy) for t in run.trials()
    ]
    moved = tmp_path / "moved"
    run.path.rename(moved)  # the run keeps its data: export finds it after a move
    bundle = edgenas.export(moved, progress=False)[0]
    assert bundle.manifest["test_accuracy"] > 0.2


def test_given_splits_and_a_torch_dataset(tmp_path):
    x, y = _digits_uint8()
    xf = torch.from_numpy(x.astype(np.float32) / 255.0)
    data = {"train": (xf[:1200], torch.from_numpy(y[:1200])), "val": (xf[1200:1500], y[1200:1500]),
            "test": (xf[1500:], y[1500:]), "classes": [f"digit {i}" for i in range(10)]}  # fmt: skip
    run = edgenas.search(data, runs_dir=tmp_path / "runs", name="splits", **FAST)
    assert run.manifest["dataset"]["sizes"] == {"train": 1200, "val": 300, "test": 297}
    ds = torch.utils.data.TensorDataset(xf[:600], torch.from_numpy(y[:600]))
    run = edgenas.search(ds, runs_dir=tmp_path / "runs", name="ds", **FAST)
    assert sum(run.manifest["dataset"]["sizes"].values()) == 600


@pytest.mark.parametrize(
    "data, message",
    [
        ((np.zeros((20, 8, 8, 3), np.uint8), np.arange(20) % 2), "looks channels-last"),
        ((np.zeros((20, 1, 8, 8), np.int32), np.arange(20) % 2), "dtype int32; give uint8 pixels"),
        ((np.zeros((20, 1, 8, 8), np.uint8), np.arange(19) % 2), "give one label per image"),
        ((np.full((20, 1, 8, 8), np.nan, np.float32), np.arange(20) % 2), "NaN or infinite"),
        ((np.zeros((20, 1, 8, 8), np.uint8), np.zeros(20, int)), "only one class"),
        ({"val": (np.zeros((20, 1, 8, 8)), np.arange(20) % 2)}, "no training split"),
    ],
)
@pytest.mark.slow
def test_bad_arrays_get_the_same_message_from_the_api_and_the_cli(tmp_path, data, message):
    with pytest.raises(DataError, match=message):
        edgenas.search(data, runs_dir=tmp_path / "runs", **FAST)
    assert not (tmp_path / "runs").exists()
    splits = {"train": data} if isinstance(data, tuple) else data
    np.savez(tmp_path / "bad.npz", **{f"{a}_{k}": v for k, pair in splits.items() for a, v in zip("xy", pair)})
    res = cli(["search", "--dataset", f"arrays:{tmp_path / 'bad.npz'}", "--runs-dir", str(tmp_path / "runs")], tmp_path)
    assert res.returncode == 2 and message in " ".join(res.stderr.split())
    assert not (tmp_path / "runs").exists()
