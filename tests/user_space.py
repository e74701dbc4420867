"""A search space written the way a user writes one, outside the edgenas package: a plain
stack of convolutions, each with a width and a kernel size, then global pooling and a linear
head. Used by tests/test_user_space.py (by class, by 'module:Class' path and as an entry point)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch.nn as nn

from edgenas.spaces import Decision, DecisionKind, SearchSpace


@dataclass(frozen=True)
class TinyArch:
    layers: tuple[tuple[int, int], ...]  # (width, kernel) per convolution

    def key(self) -> str:
        return "tiny|" + "-".join(f"w{w}k{k}" for w, k in self.layers)

    def to_json(self) -> dict[str, Any]:
        return {"layers": [list(layer) for layer in self.layers]}


class TinySpace(SearchSpace):
    name = "tiny"

    def __init__(self, input_shape: tuple[int, int, int], num_classes: int, depth: int = 2) -> None:
        self.input_shape = tuple(input_shape)
        self.num_classes = num_classes
        self.depth = depth
        self.kinds = (DecisionKind("width", (4, 8, 16)), DecisionKind("kernel", (1, 3)))

    def next_decision(self, prefix: Sequence[int]) -> Decision | None:
        if len(prefix) == 2 * self.depth:
            return None
        kind = len(prefix) % 2
        return Decision(kind, (True,) * self.kinds[kind].size)

    def decode(self, actions: Sequence[int]) -> TinyArch:
        self.validate(actions)
        widths, kernels = self.kinds[0].options, self.kinds[1].options
        return TinyArch(tuple((widths[actions[i]], kernels[actions[i + 1]]) for i in range(0, len(actions), 2)))

    def build(self, arch: TinyArch) -> nn.Module:
        layers: list[nn.Module] = []
        channels = self.input_shape[0]
        for width, kernel in arch.layers:
            layers += [nn.Conv2d(channels, width, kernel, padding=kernel // 2), nn.BatchNorm2d(width), nn.ReLU()]
            channels = width
        return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, self.num_classes))

    def smallest(self) -> TinyArch:
        return TinyArch(((4, 1),) * self.depth)

    def arch_from_json(self, data: dict[str, Any]) -> TinyArch:
        return TinyArch(tuple((int(w), int(k)) for w, k in data["layers"]))


class KeylessSpace(TinySpace):
    """Broken on purpose: its key ignores the kernel, so different networks share a key."""

    name = "keyless"

    def decode(self, actions: Sequence[int]) -> TinyArch:
        return _SameKey(super().decode(actions).layers)

    def arch_from_json(self, data: dict[str, Any]) -> TinyArch:
        return _SameKey(super().arch_from_json(data).layers)


@dataclass(frozen=True)
class _SameKey(TinyArch):
    def key(self) -> str:
        return "keyless|" + "-".join(f"w{w}" for w, _ in self.layers)
