"""Static cost of a module: exact parameter count and MACs (thop)."""

from __future__ import annotations

import copy
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


def static_cost(model: nn.Module, input_shape: tuple[int, ...]) -> StaticCost:
    """`input_shape` without the batch axis. Profiles a deep copy: thop adds buffers and hooks."""
    import thop

    probe = copy.deepcopy(model).eval()
    with torch.no_grad():
        macs, _ = thop.profile(probe, inputs=(torch.zeros(1, *input_shape),), verbose=False)
    return StaticCost(params=count_params(model), macs=int(macs))
