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
from edgenas.settings.pipeline import TrainRecipe  # noqa: F401  (the recipe type; re-exported)


class ChildFailure(Exception):
    """A child could not be trained (diverged, ran out of memory); recorded, never fatal."""


class EarlyStopped(Exception):
    """Training stopped early because the child was clearly worse than earlier children."""

    def __init__(self, message: str, epoch: int, val_accuracy: float, curve: list[float]) -> None:
        super().__init__(message)
        self.epoch = epoch
        self.val_accuracy = val_accuracy
        self.curve = curve


@dataclass(frozen=True)
class TrainResult:
    val_accuracy: float | None  # None when trained without a validation split
    train_loss: float
    train_seconds: float
    epochs: int
    curve: tuple[float, ...] = ()  # validation accuracy after each epoch (with stop thresholds)
    state: dict | None = None  # stopped before the schedule's end (`stop_epoch`): what `resume` continues from


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


def channels_last_safe(model: nn.Module, device: torch.device) -> bool:
    """Whether `model` may train in channels_last on `device`. On the CPU, torch 2.14's backward
    pass of a 1x1 convolution with stride > 1 in channels_last can crash the process (segfault,
    heap corruption) or spin forever at CIFAR-like sizes (16-32 px); such models train in the
    contiguous format there. Every other model keeps channels_last."""
    if device.type != "cpu":
        return True
    return not any(isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) and m.stride != (1, 1) for m in model.modules())


def augment_batch(x: torch.Tensor, padding: int, flip: bool, gen: torch.Generator) -> torch.Tensor:
    """Random crops (after zero-padding by `padding` pixels) and left-right flips of a batch, on
    the batch's own device, one draw per image from `gen` (a CPU generator: seeded, and the same
    on every device). Padding with zeros pads with the mean pixel: the data is normalised."""
    b, c, h, w = x.shape
    if padding:
        offsets = torch.randint(0, 2 * padding + 1, (2, b), generator=gen).to(x.device)
        padded = F.pad(x, (padding, padding, padding, padding))
        rows = (torch.arange(h, device=x.device)[None, :] + offsets[0][:, None])[:, None, :, None]
        cols = (torch.arange(w, device=x.device)[None, :] + offsets[1][:, None])[:, None, None, :]
        batch = torch.arange(b, device=x.device)[:, None, None, None]
        chans = torch.arange(c, device=x.device)[None, :, None, None]
        x = padded[batch, chans, rows, cols]
    if flip:
        mirrored = torch.rand(b, generator=gen).to(x.device) < 0.5
        x = torch.where(mirrored[:, None, None, None], x.flip(3), x)
    return x


def train_child(
    model: nn.Module,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_val: torch.Tensor | None,
    y_val: torch.Tensor | None,
    recipe: TrainRecipe,
    seed: int,
    device: torch.device,
    stop_thresholds: list[float | None] | None = None,
    stop_epoch: int | None = None,
    resume: dict | None = None,
) -> TrainResult:
    """Train `model` in place on (x_train, y_train); score on the validation split if given.

    `stop_thresholds[e]` (median rule): if the validation accuracy after epoch e+1 is below it,
    raise EarlyStopped. The validation split is then scored after every epoch.

    Multi-fidelity: `stop_epoch` < recipe.epochs pauses the schedule (which still spans
    recipe.epochs) after that many epochs; the result is scored as it stands (EMA weights
    where the recipe averages) and `TrainResult.state` holds everything that continues it (raw
    weights, optimizer, schedule, EMA, both random generators). Passed back as `resume`, training
    goes on from there: pausing at any epochs and resuming gives the same network as training
    straight through.

    Raises ChildFailure on a non-finite loss or when the device runs out of memory."""
    start = time.perf_counter()
    t = _Training(model, x_train, y_train, recipe, seed, device)
    first_epoch = t.resume(resume) if resume is not None else 0
    last_epoch = recipe.epochs if stop_epoch is None else min(stop_epoch, recipe.epochs)
    if not 0 <= first_epoch < last_epoch:
        raise ValueError(f"cannot train epochs {first_epoch + 1}..{last_epoch} of {recipe.epochs}")
    loss_value = float("nan")
    curve: list[float] = []
    watch = bool(stop_thresholds) and x_val is not None and y_val is not None
    if watch:
        xv, yv = x_val.to(device).contiguous(memory_format=t.memory_format), y_val.to(device)  # type: ignore[union-attr]
    try:
        for epoch in range(first_epoch, last_epoch):
            loss_value = t.epoch()
            faults.point("train")
            if watch:
                curve.append(accuracy(model, xv, yv))
                limit = stop_thresholds[epoch] if epoch < len(stop_thresholds) else None  # type: ignore[arg-type]
                if limit is not None and curve[-1] < limit and epoch + 1 < recipe.epochs:
                    model.to("cpu", memory_format=torch.contiguous_format)
                    raise EarlyStopped(
                        f"median rule: validation accuracy {curve[-1]:.4f} after epoch {epoch + 1} is below the "
                        f"median {limit:.4f} of earlier children",
                        epoch + 1,
                        curve[-1],
                        curve,
                    )
            if not math.isfinite(loss_value):
                raise ChildFailure(f"training loss became {loss_value} (diverged)")
    except torch.OutOfMemoryError as exc:
        raise ChildFailure(f"out of memory on {device}: {exc}") from exc
    state = t.state(last_epoch) if last_epoch < recipe.epochs else None
    if t.ema is not None:
        model.load_state_dict({**model.state_dict(), **t.ema})  # the averaged weights are the result
    val = None if x_val is None or y_val is None else accuracy(model, x_val.to(device), y_val.to(device))
    model.to("cpu", memory_format=torch.contiguous_format)
    return TrainResult(val, loss_value, time.perf_counter() - start, last_epoch, tuple(curve), state)


class _Training:
    """One child's training run: the model on its device, the optimizer and one-cycle schedule,
    the batch-order and augmentation generators, the weight average. `epoch()` trains one epoch;
    `state` / `resume` save and restore all of it between rungs."""

    def __init__(
        self,
        model: nn.Module,
        x_train: torch.Tensor,
        y_train: torch.Tensor,
        recipe: TrainRecipe,
        seed: int,
        device: torch.device,
    ) -> None:
        self.model, self.recipe, self.device = model, recipe, device
        self.gen = torch.Generator(device="cpu").manual_seed(seed)
        cuda = device.type == "cuda"
        if cuda:
            torch.backends.cudnn.benchmark = True
        self.memory_format = (
            torch.channels_last
            if recipe.channels_last and channels_last_safe(model, device)
            else torch.contiguous_format
        )
        model.to(device, memory_format=self.memory_format)
        self.xt, self.yt = x_train.to(device).contiguous(memory_format=self.memory_format), y_train.to(device)
        self.step_model = torch.compile(model) if recipe.compile else model
        self.autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda and recipe.bf16_autocast)
        self.n = len(self.yt)
        steps_per_epoch = max(1, math.ceil(self.n / recipe.batch_size))
        if recipe.optimizer == "adam":
            self.opt = torch.optim.Adam(model.parameters(), lr=recipe.learning_rate, weight_decay=recipe.weight_decay)
            self.sched = torch.optim.lr_scheduler.ConstantLR(self.opt, factor=1.0, total_iters=0)
        else:
            self.opt = torch.optim.SGD(
                model.parameters(),
                lr=recipe.learning_rate,
                momentum=recipe.momentum,
                nesterov=True,
                weight_decay=recipe.weight_decay,
            )
            self.sched = torch.optim.lr_scheduler.OneCycleLR(
                self.opt,
                max_lr=recipe.learning_rate,
                total_steps=recipe.epochs * steps_per_epoch,
                pct_start=0.25,
            )
        self.augment = recipe.crop_padding > 0 or recipe.horizontal_flip
        self.aug_gen = torch.Generator(device="cpu").manual_seed(seed + 1)  # its own stream: batch order is unchanged
        self.ema = (
            {k: v.detach().clone() for k, v in model.state_dict().items() if v.dtype.is_floating_point}
            if recipe.ema_decay
            else None
        )
        self.ema_steps = 0

    def resume(self, saved: dict) -> int:
        """Continue from `state()`'s dict; returns the epoch to start at."""
        self.model.load_state_dict(saved["model"])
        self.opt.load_state_dict(saved["optimizer"])
        self.sched.load_state_dict(saved["scheduler"])
        self.gen.set_state(saved["batch_generator"])
        self.aug_gen.set_state(saved["augment_generator"])
        if self.ema is not None:
            self.ema = {k: v.to(self.device) for k, v in saved["ema"].items()}
        self.ema_steps = int(saved["ema_steps"])
        return int(saved["epoch"])

    def epoch(self) -> float:
        """One epoch over a fresh permutation; the mean training loss (one host sync per epoch)."""
        recipe, model = self.recipe, self.model
        model.train()
        loss_sum = torch.zeros((), device=self.device)
        batches = 0
        perm = torch.randperm(self.n, generator=self.gen).to(self.device)
        for i in range(0, self.n, recipe.batch_size):
            idx = perm[i : i + recipe.batch_size]
            if len(idx) < 2:  # BatchNorm needs two samples
                continue
            xb = self.xt[idx]
            if self.augment:
                xb = augment_batch(xb, recipe.crop_padding, recipe.horizontal_flip, self.aug_gen).contiguous(
                    memory_format=self.memory_format
                )
            with self.autocast:
                loss = F.cross_entropy(self.step_model(xb), self.yt[idx], label_smoothing=recipe.label_smoothing)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            if recipe.grad_clip_norm:
                nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip_norm)
            self.opt.step()
            self.sched.step()
            if self.ema is not None:
                self.ema_steps += 1
                decay = min(
                    recipe.ema_decay, (1 + self.ema_steps) / (10 + self.ema_steps)
                )  # warm-up: early weights fade
                with torch.no_grad():
                    state = model.state_dict()
                    for k, v in self.ema.items():
                        v.lerp_(state[k].detach(), 1.0 - decay)
            loss_sum += loss.detach()
            batches += 1
        return float(loss_sum) / max(1, batches)

    def state(self, epoch: int) -> dict:
        """Everything that continues this training after `epoch` epochs, on the CPU."""

        def cpu(tensors: dict) -> dict:
            return {k: v.detach().cpu().clone() for k, v in tensors.items()}

        return {
            "epoch": epoch,
            "model": cpu(self.model.state_dict()),
            "optimizer": _to_cpu(self.opt.state_dict()),
            "scheduler": self.sched.state_dict(),
            "batch_generator": self.gen.get_state(),
            "augment_generator": self.aug_gen.get_state(),
            "ema": cpu(self.ema) if self.ema is not None else None,
            "ema_steps": self.ema_steps,
        }


def _to_cpu(obj):
    """An optimizer state with every tensor copied to the CPU (it is saved to disk and may be
    resumed on another device)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().clone()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_cpu(v) for v in obj]
    return obj
