"""The child trainer: one readable recipe, the whole dataset on the device, indexed batches.

No DataLoader in the hot loop: the (small, preprocessed) dataset is one tensor on the training
device and each epoch is a seeded permutation of indices.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from edgenas import faults


class ChildFailure(Exception):
    """A child could not be trained (diverged, ran out of memory); recorded, never fatal."""


@dataclass(frozen=True)
class TrainRecipe:
    epochs: int = 15
    batch_size: int = 64
    learning_rate: float = 0.1  # peak of the one-cycle schedule, SGD with Nesterov momentum
    momentum: float = 0.9
    weight_decay: float = 5e-4
    label_smoothing: float = 0.0

    def __post_init__(self) -> None:
        from edgenas.errors import ConfigError

        if self.epochs < 1 or self.batch_size < 2:
            raise ConfigError(f"training needs epochs >= 1 and batch_size >= 2, got {self.epochs} and {self.batch_size}")
        if self.learning_rate <= 0 or self.weight_decay < 0 or not 0 <= self.momentum < 1:
            raise ConfigError("training learning_rate must be > 0, weight_decay >= 0 and momentum in [0, 1)")
        if not 0 <= self.label_smoothing < 1:
            raise ConfigError(f"training label_smoothing must be in [0, 1), got {self.label_smoothing}")


@dataclass(frozen=True)
class TrainResult:
    val_accuracy: float | None  # None when trained without a validation split
    train_loss: float
    train_seconds: float
    epochs: int


def resolve_device(name: str) -> torch.device:
    """'auto' means CUDA when available, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1024) -> float:
    model.eval()
    correct = 0
    for i in range(0, len(y), batch_size):
        correct += int((model(x[i : i + batch_size]).argmax(1) == y[i : i + batch_size]).sum())
    return correct / max(1, len(y))


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    model.eval()
    return torch.cat([model(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])


def train_child(
    model: nn.Module,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_val: torch.Tensor | None,
    y_val: torch.Tensor | None,
    recipe: TrainRecipe,
    seed: int,
    device: torch.device,
) -> TrainResult:
    """Train `model` in place on (x_train, y_train); score on the validation split if given.

    Raises ChildFailure on a non-finite loss or when the device runs out of memory."""
    start = time.perf_counter()
    gen = torch.Generator(device="cpu").manual_seed(seed)
    model.to(device)
    xt, yt = x_train.to(device), y_train.to(device)
    n = len(yt)
    steps_per_epoch = max(1, math.ceil(n / recipe.batch_size))
    opt = torch.optim.SGD(
        model.parameters(),
        lr=recipe.learning_rate,
        momentum=recipe.momentum,
        nesterov=True,
        weight_decay=recipe.weight_decay,
    )
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=recipe.learning_rate, total_steps=recipe.epochs * steps_per_epoch, pct_start=0.25
    )
    loss_value = float("nan")
    try:
        for _ in range(recipe.epochs):
            model.train()
            loss_sum = torch.zeros((), device=device)
            batches = 0
            perm = torch.randperm(n, generator=gen).to(device)
            for i in range(0, n, recipe.batch_size):
                idx = perm[i : i + recipe.batch_size]
                if len(idx) < 2:  # BatchNorm needs two samples
                    continue
                loss = F.cross_entropy(model(xt[idx]), yt[idx], label_smoothing=recipe.label_smoothing)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                loss_sum += loss.detach()
                batches += 1
            # One host sync per epoch, not per step.
            loss_value = float(loss_sum) / max(1, batches)
            faults.point("train")
            if not math.isfinite(loss_value):
                raise ChildFailure(f"training loss became {loss_value} (diverged)")
    except torch.OutOfMemoryError as exc:
        raise ChildFailure(f"out of memory on {device}: {exc}") from exc
    val = None if x_val is None or y_val is None else accuracy(model, x_val.to(device), y_val.to(device))
    model.to("cpu")
    return TrainResult(val, loss_value, time.perf_counter() - start, recipe.epochs)
