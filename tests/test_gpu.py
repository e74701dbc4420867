"""The CUDA paths, run for real where torch sees a GPU; skipped on machines without one (CI).

The same code runs on the CPU in the rest of the suite; these tests check what only a GPU can
show: a child trains on CUDA (bf16 autocast, channels_last) and comes back a CPU model that
exports, and several children share one GPU through the process executor."""

from __future__ import annotations

import sqlite3

import pytest
import torch

from edgenas.loop.run import run_search
from edgenas.settings.pipeline import load_pipeline
from edgenas.spaces.layerwise import Layer, LayerwiseArch, LayerwiseSpace
from edgenas.training.trainer import TrainRecipe, accuracy, train_child

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_child_trains_on_cuda_and_comes_back_on_cpu(digits):
    space = LayerwiseSpace(digits.input_shape, digits.num_classes)
    arch = LayerwiseArch((Layer(16, 3, 1, ()), Layer(32, 3, 2, (0,))))
    torch.manual_seed(0)
    model = space.build(arch)
    before = torch.cuda.max_memory_allocated()
    res = train_child(
        model,
        digits.x_train,
        digits.y_train,
        digits.x_val,
        digits.y_val,
        TrainRecipe(epochs=3),
        0,
        torch.device("cuda"),
    )
    assert torch.cuda.max_memory_allocated() > before  # the work ran on the GPU
    assert all(p.device.type == "cpu" for p in model.parameters())
    assert res.val_accuracy is not None and res.val_accuracy > 0.8, res
    # The returned CPU model scores the same split as the GPU measured (bf16 only in training).
    assert accuracy(model, digits.x_val, digits.y_val) == pytest.approx(res.val_accuracy, abs=0.02)


def test_search_on_cuda_local_and_with_children_sharing_the_gpu(tiny_pipeline):
    base = load_pipeline(tiny_pipeline(children=6)).override("search", device="cuda", threads_per_job=1)
    base = base.override("training", epochs=3)
    local = run_search(base, run_name="cuda-local")
    shared = run_search(base.override("search", executor="process", children_per_gpu=2), run_name="cuda-k2")
    for res in (local, shared):
        rows = sqlite3.connect(res.run_dir / "search.db").execute("SELECT status, val_accuracy FROM trials").fetchall()
        # Tiny children (<= 16 filters, 3 epochs) reach 10-30 % on CPU; chance is 10 %.
        assert len(rows) == 6 and all(status == "ok" and 0 <= acc <= 1 for status, acc in rows), rows
        assert max(acc for _, acc in rows) > 0.15, rows
        winner = res.manifest["winner"]
        assert (res.run_dir / "winner.onnx").exists()
        assert winner["test_accuracy_onnx"] == pytest.approx(winner["test_accuracy"], abs=0.01)
    # Same seed, same first proposals: the executor changes where children train, not what is searched.
    q = "SELECT arch_key FROM samples WHERE update_index = 0 ORDER BY position"
    first = [sqlite3.connect(res.run_dir / "search.db").execute(q).fetchall() for res in (local, shared)]
    assert first[0] and first[0] == first[1]
