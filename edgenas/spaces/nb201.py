"""NAS-Bench-201 cell space (Dong & Yang, 2020).

A cell has 4 nodes; each edge j -> i (j < i) carries one of none / skip_connect / nor_conv_1x1 /
nor_conv_3x3 / avg_pool_3x3; node i sums its inputs. The standard string is
`|op~0|+|op~0|op~1|+|op~0|op~1|op~2|` (edges into node 1, then 2, then 3). The macro skeleton:
stem 3x3 conv to C channels + BN; three stages of N cells at C, 2C, 4C channels with a ResNet basic
block of stride 2 between stages; BN, ReLU, global average pooling, linear classifier. nor_conv is
ReLU-Conv-BN. Six decisions of five options each: 15,625 cells.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn as nn

from edgenas.spaces.base import Decision, DecisionKind, SearchSpace

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
EDGES = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))  # (to, from), in string order


@dataclass(frozen=True)
class NB201Arch:
    ops: tuple[str, ...]  # one per edge, in EDGES order

    def __post_init__(self) -> None:
        if len(self.ops) != 6 or any(op not in OPS for op in self.ops):
            raise ValueError(f"an NB201 cell has 6 edges with ops from {OPS}, got {self.ops}")

    @classmethod
    def parse(cls, text: str) -> "NB201Arch":
        """Parse the standard `|op~0|+|op~0|op~1|+|op~0|op~1|op~2|` string."""
        nodes = text.strip().split("+")
        if len(nodes) != 3:
            raise ValueError(f"'{text}' is not an NB201 cell string (3 nodes separated by '+')")
        ops = []
        for i, node in enumerate(nodes, start=1):
            parts = [p for p in node.strip().split("|") if p]
            if len(parts) != i:
                raise ValueError(f"'{text}': node {i} must have {i} inputs, has {len(parts)}")
            for j, part in enumerate(parts):
                op, _, src = part.partition("~")
                if src != str(j) or op not in OPS:
                    raise ValueError(f"'{text}': '{part}' is not op~{j} with op in {OPS}")
                ops.append(op)
        return cls(tuple(ops))

    def __str__(self) -> str:
        o = self.ops
        return f"|{o[0]}~0|+|{o[1]}~0|{o[2]}~1|+|{o[3]}~0|{o[4]}~1|{o[5]}~2|"

    def key(self) -> str:
        return "nb201|" + str(self)

    def to_json(self) -> dict[str, Any]:
        return {"space": "nb201", "cell": str(self)}


class ReLUConvBN(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=False),
            nn.BatchNorm2d(c_out),
        )


def _op(name: str, c: int) -> nn.Module | None:
    if name == "none":
        return None
    if name == "skip_connect":
        return nn.Identity()
    if name == "nor_conv_1x1":
        return ReLUConvBN(c, c, 1, 1)
    if name == "nor_conv_3x3":
        return ReLUConvBN(c, c, 3, 1)
    return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)


class Cell(nn.Module):
    def __init__(self, arch: NB201Arch, c: int) -> None:
        super().__init__()
        self.edges = nn.ModuleList()
        self.wiring: list[tuple[int, int, int]] = []  # (to, from, module index)
        for (to, src), name in zip(EDGES, arch.ops):
            op = _op(name, c)
            if op is not None:
                self.wiring.append((to, src, len(self.edges)))
                self.edges.append(op)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        for i in (1, 2, 3):
            terms = [self.edges[k](nodes[src]) for to, src, k in self.wiring if to == i]
            if not terms:
                nodes.append(torch.zeros_like(x))  # every edge into the node is 'none'
            else:
                total = terms[0]
                for t in terms[1:]:
                    total = total + t
                nodes.append(total)
        return nodes[3]


class ResNetBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, 2)
        self.conv_b = ReLUConvBN(c_out, c_out, 3, 1)
        self.shortcut = nn.Sequential(nn.AvgPool2d(2, 2), nn.Conv2d(c_in, c_out, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_b(self.conv_a(x)) + self.shortcut(x)


class NB201Net(nn.Module):
    def __init__(self, arch: NB201Arch, in_channels: int = 3, num_classes: int = 10, c: int = 16, n: int = 5) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)]
        widths = (c, 2 * c, 4 * c)
        for stage, width in enumerate(widths):
            if stage > 0:
                layers.append(ResNetBlock(widths[stage - 1], width))
            layers.extend(Cell(arch, width) for _ in range(n))
        layers += [nn.BatchNorm2d(widths[-1]), nn.ReLU(inplace=False), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(widths[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class NB201Space(SearchSpace):
    """Six decisions, one op per edge. Keys are the cell strings (isomorphic cells that compute
    the same function are not merged yet)."""

    name = "nb201"

    def __init__(self, input_shape: tuple[int, int, int], num_classes: int, channels: int = 16, cells_per_stage: int = 5) -> None:
        if channels < 1 or cells_per_stage < 1:
            raise ValueError("channels and cells_per_stage must be >= 1")
        self.input_shape = tuple(input_shape)
        self.num_classes = num_classes
        self.channels = channels
        self.cells_per_stage = cells_per_stage
        self.kinds = (DecisionKind("op", OPS),)

    def next_decision(self, prefix: Sequence[int]) -> Decision | None:
        if len(prefix) > 6 or any(not 0 <= a < len(OPS) for a in prefix):
            raise ValueError("not an NB201 action prefix")
        return None if len(prefix) == 6 else Decision(0, (True,) * len(OPS))

    def decode(self, actions: Sequence[int]) -> NB201Arch:
        self.validate(actions)
        return NB201Arch(tuple(OPS[a] for a in actions))

    def encode(self, arch: NB201Arch) -> list[int]:
        return [OPS.index(op) for op in arch.ops]

    def smallest(self) -> NB201Arch:
        return NB201Arch(("none",) * 6)

    def arch_from_json(self, data: dict[str, Any]) -> NB201Arch:
        return NB201Arch.parse(data["cell"])

    def build(self, arch: NB201Arch) -> nn.Module:
        return NB201Net(arch, self.input_shape[0], self.num_classes, self.channels, self.cells_per_stage)
