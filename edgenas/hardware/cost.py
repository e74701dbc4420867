"""Static cost of a module: exact parameter count and MACs (thop)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn


@dataclass(frozen=True)
class StaticCost:
    params: int  # exact: every element of every parameter tensor
    macs: int  # multiply-accumulates of one forward pass at batch 1 (thop)

    @property
    def flops(self) -> int:
        """2 x MACs, the usual convention."""
        return 2 * self.macs


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


_THOP_BUFFERS = ("total_ops", "total_params")


def static_cost(model: nn.Module, input_shape: tuple[int, ...]) -> StaticCost:
    """`input_shape` without the batch axis. `model` is left as it was: thop runs one forward
    pass in eval mode without gradients (no weight or running statistic changes), restores the
    training flag and removes its hooks; the counting buffers it leaves on modules it has no rule
    for are removed here. (Profiling a deep copy instead cost more than the forward pass itself.)"""
    import thop

    training = model.training
    try:
        with torch.no_grad():
            macs, _ = thop.profile(model, inputs=(torch.zeros(1, *input_shape),), verbose=False)
    finally:
        model.train(training)
        for m in model.modules():  # also what a failed profile left behind
            for name in _THOP_BUFFERS:
                m._buffers.pop(name, None)
            for key, hook in list(m._forward_hooks.items()):
                if getattr(hook, "__module__", "").startswith("thop"):
                    del m._forward_hooks[key]
    return StaticCost(params=count_params(model), macs=int(macs))
