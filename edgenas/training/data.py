"""Datasets as tensors with a fixed, seeded train / validation / test split.

The test split is only for reporting the final winner; it never enters a reward.
Normalisation statistics come from the train split and travel with the run.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from edgenas.errors import ConfigError, DataError


@dataclass
class Dataset:
    name: str
    x_train: torch.Tensor  # float32, N x C x H x W, normalised
    y_train: torch.Tensor  # int64
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: list[str]
    mean: list[float]  # per channel, in the raw pixel scale given by `pixel_scale`
    std: list[float]
    pixel_scale: str  # how raw pixels map to the values normalised by mean/std

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])  # type: ignore[return-value]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.y_train), "val": len(self.y_val), "test": len(self.y_test)}


def _split(n: int, y: np.ndarray, val_fraction: float, test_fraction: float, seed: int):
    """Stratified, seeded split indices (train, val, test)."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(n)
    rest, test = train_test_split(idx, test_size=test_fraction, random_state=seed, stratify=y)
    val_of_rest = val_fraction / (1.0 - test_fraction)
    train, val = train_test_split(rest, test_size=val_of_rest, random_state=seed, stratify=y[rest])
    return np.sort(train), np.sort(val), np.sort(test)


def from_arrays(
    name: str,
    x: np.ndarray,
    y: np.ndarray,
    classes: list[str],
    val_fraction: float,
    test_fraction: float,
    seed: int,
    pixel_scale: str,
) -> Dataset:
    """x: N x C x H x W float in the raw scale; normalised with train-split statistics."""
    if not (0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ConfigError(
            f"val_fraction ({val_fraction}) and test_fraction ({test_fraction}) must each be "
            "between 0 and 1 and leave room for a train split"
        )
    train, val, test = _split(len(y), y, val_fraction, test_fraction, seed)
    mean = x[train].mean(axis=(0, 2, 3))
    std = x[train].std(axis=(0, 2, 3)) + 1e-8
    xn = ((x - mean[None, :, None, None]) / std[None, :, None, None]).astype(np.float32)
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
    return Dataset(
        name=name,
        x_train=t(xn[train]),
        y_train=t(y[train].astype(np.int64)),
        x_val=t(xn[val]),
        y_val=t(y[val].astype(np.int64)),
        x_test=t(xn[test]),
        y_test=t(y[test].astype(np.int64)),
        classes=classes,
        mean=[float(m) for m in mean],
        std=[float(s) for s in std],
        pixel_scale=pixel_scale,
    )


def load_digits(val_fraction: float = 0.15, test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """scikit-learn's digits: 1,797 real handwritten digits, 8x8, 17 grey levels, shipped
    inside scikit-learn (no download). Pixels are scaled to [0, 1] (value / 16) first."""
    from sklearn.datasets import load_digits as _load

    bunch = _load()
    x = (bunch.images.astype(np.float32) / 16.0)[:, None, :, :]
    y = bunch.target.astype(np.int64)
    return from_arrays(
        "digits", x, y, [str(c) for c in range(10)], val_fraction, test_fraction, seed,
        pixel_scale="value / 16 (digits grey levels 0-16 to [0, 1])",
    )


DATASETS = {"digits": load_digits}


def load_dataset(name: str, val_fraction: float, test_fraction: float, seed: int) -> Dataset:
    if name not in DATASETS:
        raise DataError(f"unknown dataset '{name}'; available: {', '.join(sorted(DATASETS))}")
    return DATASETS[name](val_fraction=val_fraction, test_fraction=test_fraction, seed=seed)
