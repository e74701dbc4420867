"""Xu's block space: a sequence of layers, each a residual block, a convolution or a pooling
layer with its settings, up to `max_layers`.

Per layer, in this order:
  stop      (layers after the first) continue / stop: every prefix that ends here is a network,
            which is what per-prefix returns need
  type      conv | residual | pool
  filters   conv and residual: output channels
  kernel    conv and residual: square kernel, 'same' padding
  stride    1 or 2 (pool: always 2, no decision)
A residual block is ReLU-Conv(k, stride)-BN-ReLU-Conv(k)-BN plus a 1x1 projection shortcut when
the shape changes. Masks: stride 2 and pooling are not offered once the map is 1 pixel wide.
Head: global average pooling and a linear classifier.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn as nn

from edgenas.spaces.base import SPACES, ActionReader, Decision, DecisionKind, SearchSpace

STOP, TYPE, FILTERS, KERNEL, STRIDE = range(5)
TYPES = ("conv", "residual", "pool")


@dataclass(frozen=True)
class BlockLayer:
    type: str
    filters: int = 0  # pool: unchanged channels (0)
    kernel: int = 2
    stride: int = 2


@dataclass(frozen=True)
class BlocksArch:
    layers: tuple[BlockLayer, ...]

    def key(self) -> str:
        parts = [
            f"pool{l.kernel}" if l.type == "pool" else f"{l.type[:3]}c{l.filters}k{l.kernel}s{l.stride}"
            for l in self.layers
        ]
        return "blocks|" + "-".join(parts)

    def to_json(self) -> dict[str, Any]:
        return {"space": "blocks", "layers": [vars(l).copy() for l in self.layers]}

    def __str__(self) -> str:
        return self.key().split("|", 1)[1]


class Residual(nn.Module):
    def __init__(self, c_in: int, c: int, k: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(c_in, c, k, stride, k // 2, bias=False),
            nn.BatchNorm2d(c),
            nn.ReLU(),
            nn.Conv2d(c, c, k, 1, k // 2, bias=False),
            nn.BatchNorm2d(c),
        )
        self.shortcut = (
            nn.Identity()
            if c_in == c and stride == 1
            else nn.Sequential(nn.Conv2d(c_in, c, 1, stride, bias=False), nn.BatchNorm2d(c))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.shortcut(x)


class BlocksNet(nn.Module):
    def __init__(self, arch: BlocksArch, in_channels: int, num_classes: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for l in arch.layers:
            if l.type == "pool":
                layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))
            elif l.type == "conv":
                layers += [
                    nn.Conv2d(c, l.filters, l.kernel, l.stride, l.kernel // 2, bias=False),
                    nn.BatchNorm2d(l.filters),
                    nn.ReLU(),
                ]
                c = l.filters
            else:
                layers.append(Residual(c, l.filters, l.kernel, l.stride))
                c = l.filters
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@SPACES.register
class BlocksSpace(SearchSpace):
    name = "blocks"

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        num_classes: int,
        max_layers: int = 6,
        filters: Sequence[int] = (8, 16, 32, 64),
        kernels: Sequence[int] = (1, 3, 5),
    ) -> None:
        if max_layers < 1:
            raise ValueError("max_layers must be >= 1")
        if not filters or any(f < 1 for f in filters):
            raise ValueError("filters must be a non-empty list of positive integers")
        if not kernels or any(k < 1 or k % 2 == 0 for k in kernels):
            raise ValueError("kernels must be a non-empty list of odd positive integers")
        self.input_shape = tuple(input_shape)
        self.num_classes = num_classes
        self.max_layers = max_layers
        self.kinds = (
            DecisionKind("stop", ("continue", "stop")),
            DecisionKind("type", TYPES),
            DecisionKind("filters", tuple(filters)),
            DecisionKind("kernel", tuple(kernels)),
            DecisionKind("stride", (1, 2)),
        )

    def _walk(self, actions: Sequence[int]) -> tuple[list[BlockLayer], Decision | None]:
        layers: list[BlockLayer] = []
        size = min(self.input_shape[1:])
        reader = ActionReader(actions)
        take = reader.take

        while True:
            if len(layers) == self.max_layers:
                if not reader.exhausted:
                    raise ValueError("actions continue past the last layer")
                return layers, None
            if layers:
                d = Decision(STOP, (True, True))
                a = take(d)
                if a is None:
                    return layers, d
                if a == 1:
                    if not reader.exhausted:
                        raise ValueError("actions continue after stop")
                    return layers, None
            d = Decision(TYPE, (True, True, size >= 2))
            t = take(d)
            if t is None:
                return layers, d
            if TYPES[t] == "pool":
                layers.append(BlockLayer("pool"))
                size = -(-size // 2)
                continue
            picks = []
            for kind, mask in (
                (FILTERS, (True,) * self.kinds[FILTERS].size),
                (
                    KERNEL,
                    tuple(k // 2 < size or k == min(self.kinds[KERNEL].options) for k in self.kinds[KERNEL].options),
                ),
                (STRIDE, (True, size >= 2)),
            ):
                d = Decision(kind, mask)
                a = take(d)
                if a is None:
                    return layers, d
                picks.append(self.kinds[kind].options[a])
            layers.append(BlockLayer(TYPES[t], picks[0], picks[1], picks[2]))
            if picks[2] == 2:
                size = -(-size // 2)

    def next_decision(self, prefix: Sequence[int]) -> Decision | None:
        return self._walk(prefix)[1]

    def decode(self, actions: Sequence[int]) -> BlocksArch:
        layers, nxt = self._walk(actions)
        if nxt is not None:
            raise ValueError(f"incomplete action sequence of length {len(actions)}")
        return BlocksArch(tuple(layers))

    def smallest(self) -> BlocksArch:
        """A single pooling layer (the head then sees the input's own channels) where the input
        can be pooled, else the narrowest 1-layer convolution."""
        if min(self.input_shape[1:]) >= 2:
            return BlocksArch((BlockLayer("pool"),))
        return BlocksArch((BlockLayer("conv", min(self.kinds[FILTERS].options), min(self.kinds[KERNEL].options), 1),))

    def arch_from_json(self, data: dict[str, Any]) -> BlocksArch:
        return BlocksArch(
            tuple(BlockLayer(l["type"], int(l["filters"]), int(l["kernel"]), int(l["stride"])) for l in data["layers"])
        )

    def build(self, arch: BlocksArch) -> nn.Module:
        return BlocksNet(arch, self.input_shape[0], self.num_classes)
