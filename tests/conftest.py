from __future__ import annotations

import pytest

from edgenas.training.data import Dataset, load_digits


@pytest.fixture(autouse=True, scope="session")
def _private_latency_cache(tmp_path_factory):
    """Tests never read or write the user's latency cache."""
    import os

    os.environ["EDGENAS_CACHE_DIR"] = str(tmp_path_factory.mktemp("latency-cache"))
    yield


@pytest.fixture(scope="session")
def digits() -> Dataset:
    return load_digits()


TINY_PIPELINE = """
[search]
seed = 0
children = {children}
architectures_per_update = 3
profile = "cpu-arm"
device = "cpu"
runs_dir = "{runs_dir}"

[space]
name = "layerwise"
max_layers = 3
filters = [4, 8, 16]
kernels = [1, 3]
strides = [1, 2]

[controller]
name = "reinforce"

[training]
epochs = 1

[reward]
budget_params = {budget}
"""


@pytest.fixture
def tiny_pipeline(tmp_path):
    """Write a small, fast pipeline file; returns a function taking overrides."""

    def make(children: int = 6, budget: int = 150000) -> str:
        path = tmp_path / "tiny.toml"
        path.write_text(TINY_PIPELINE.format(children=children, runs_dir=tmp_path / "runs", budget=budget))
        return str(path)

    return make
