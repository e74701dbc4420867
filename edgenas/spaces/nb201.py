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

from edgenas.spaces.base import SPACES, Decision, DecisionKind, SearchSpace

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
_ACTIONS = frozenset(range(len(OPS)))
_EDGE_DECISION = Decision(0, (True,) * len(OPS))
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
        """Isomorphism-aware canonical key: cells that compute the same function get one key
        (see `canonical_cell`)."""
        return "nb201|" + canonical_cell(self.ops)

    def to_json(self) -> dict[str, Any]:
        return {"space": "nb201", "cell": str(self)}


def canonical_cell(ops: Sequence[str]) -> str:
    """The function a cell computes, as a canonical expression.

    Every op on an edge is its own computation (its own weights); node 0 is `x`; node i is the
    sum of its edges' computations, written as a sorted list (addition commutes); skip_connect is
    the identity, an op applied to zeros or a node with no inputs is zero and drops out of sums,
    a sum of one term is that term. A computation read by more than one consumer is marked `#k`,
    so one conv feeding two edges differs from two convs. Isomorphic cells, cells that differ only
    in dead edges and cells equal through skip chains get one expression."""
    # computations: (label, inputs); index 0 is the input x
    comps: list[tuple[str, tuple[int, ...]]] = [("x", ())]
    nodes: list[int | None] = [0]  # None: the node is constantly zero
    for i in (1, 2, 3):
        terms = []
        for (to, src), op in zip(EDGES, ops):
            if to != i or op == "none" or nodes[src] is None:
                continue
            if op == "skip_connect":
                terms.append(nodes[src])
            else:
                comps.append((op, (nodes[src],)))
                terms.append(len(comps) - 1)
        if not terms:
            nodes.append(None)
        elif len(terms) == 1:
            nodes.append(terms[0])
        else:
            comps.append(("+", tuple(terms)))
            nodes.append(len(comps) - 1)
    out = nodes[3]
    if out is None:
        return "zero"
    readers = [0] * len(comps)
    seen, stack = set(), [out]
    while stack:  # count the consumers of each computation the output depends on
        c = stack.pop()
        if c in seen:
            continue
        seen.add(c)
        for child in comps[c][1]:
            readers[child] += 1
            stack.append(child)

    def text(c: int) -> str:
        label, inputs = comps[c]
        if label == "x":
            body = "x"
        elif label == "+":
            body = "+(" + ",".join(sorted(text(k) for k in inputs)) + ")"
        else:
            body = f"{label}({text(inputs[0])})"
        return body + (f"#{readers[c]}" if readers[c] > 1 and label != "x" else "")

    return text(out)


class ReLUConvBN(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=False),
            nn.BatchNorm2d(c_out),
        )


class Zero(nn.Module):
    """The reference code's 'none' op: zeros computed from the input (`x * 0`), so a node whose
    only way out is a 'none' edge is still computed, as it was in the reference's graphs."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mul(0.0)


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


_PATH_OPS = ("skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
_PATHS = ((3,), (0, 4), (1, 5), (0, 2, 5))  # edge indices (EDGES order) along 0->3, 0->1->3, 0->2->3, 0->1->2->3
_PATH_OFFSETS = (0, 4, 4, 20)  # the two two-edge paths share slots (swapping nodes 1 and 2 swaps them)


def path_encoding(ops: Sequence[str]) -> list[float]:
    """Per op sequence of length 1, 2 and 3: how many input-to-output paths carry it (84 counts)."""
    out = [0.0] * 84
    for path, offset in zip(_PATHS, _PATH_OFFSETS):
        names = [ops[e] for e in path]
        if "none" in names:
            continue
        index = 0
        for name in names:
            index = index * 4 + _PATH_OPS.index(name)
        out[offset + index] += 1.0
    return out


def live_edges(ops: Sequence[str]) -> list[bool]:
    """Per edge: does it carry something other than zeros into a node the output reads?"""
    nonzero = {0}
    for (to, src), op in zip(EDGES, ops):
        if op != "none" and src in nonzero:
            nonzero.add(to)
    feeds = {3}
    for (to, src), op in reversed(list(zip(EDGES, ops))):
        if op != "none" and to in feeds:
            feeds.add(src)
    return [op != "none" and src in nonzero and to in feeds for (to, src), op in zip(EDGES, ops)]


class Cell(nn.Module):
    """`prune=True` leaves out dead edges (see `live_edges`), so cells with one canonical key
    build the same network; `prune=False` builds every edge as the reference code does, 'none'
    as `x * 0` (`Zero`), so dead nodes are computed too: what the Raspberry Pi 5 calibration
    networks were built and timed as (a network with a dead 3x3 convolution measured 8.34 ms
    there, about what its convolutions cost, not the 1.9 ms of the network without them)."""

    def __init__(self, arch: NB201Arch, c: int, prune: bool = True) -> None:
        super().__init__()
        self.edges = nn.ModuleList()
        self.wiring: list[tuple[int, int, int]] = []  # (to, from, module index)
        live = live_edges(arch.ops)
        for (to, src), name, alive in zip(EDGES, arch.ops, live):
            if prune:
                op = _op(name, c) if alive else None
            else:
                op = Zero() if name == "none" else _op(name, c)
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
    def __init__(
        self, arch: NB201Arch, in_channels: int = 3, num_classes: int = 10, c: int = 16, n: int = 5, prune: bool = True
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)]
        widths = (c, 2 * c, 4 * c)
        for stage, width in enumerate(widths):
            if stage > 0:
                layers.append(ResNetBlock(widths[stage - 1], width))
            layers.extend(Cell(arch, width, prune) for _ in range(n))
        layers += [nn.BatchNorm2d(widths[-1]), nn.ReLU(inplace=False), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(widths[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@SPACES.register
class NB201Space(SearchSpace):
    """Six decisions, one op per edge. Keys are isomorphism-aware (`NB201Arch.key`): two cells
    that compute the same function are trained once."""

    name = "nb201"

    def __init__(
        self, input_shape: tuple[int, int, int], num_classes: int, channels: int = 16, cells_per_stage: int = 5
    ) -> None:
        if channels < 1 or cells_per_stage < 1:
            raise ValueError("channels and cells_per_stage must be >= 1")
        self.input_shape = tuple(input_shape)
        self.num_classes = num_classes
        self.channels = channels
        self.cells_per_stage = cells_per_stage
        self.kinds = (DecisionKind("op", OPS),)

    def next_decision(self, prefix: Sequence[int]) -> Decision | None:
        # Called for every action of every candidate a controller scores (the predictor's pool
        # is ~1,000 per update), so: one shared Decision, one set test instead of a generator.
        if len(prefix) > 6 or not _ACTIONS.issuperset(prefix):
            raise ValueError("not an NB201 action prefix")
        return None if len(prefix) == 6 else _EDGE_DECISION

    def decode(self, actions: Sequence[int]) -> NB201Arch:
        self.validate(actions)
        return NB201Arch(tuple(OPS[a] for a in actions))

    def features(self, arch: NB201Arch) -> list[float]:
        """Path encoding (White et al., BANANAS) for surrogates: input-to-output paths counted by
        the ops along them (`path_encoding`), so isomorphic cells encode alike."""
        return path_encoding(arch.ops)

    def parse(self, text: str) -> NB201Arch:
        """An architecture from its standard cell string."""
        return NB201Arch.parse(text)

    def references(self) -> dict[str, NB201Arch]:
        """NAS-Bench-201's ResNet cell (two 3x3 convolutions and a skip), the benchmark's own reference."""
        return {
            "ResNet cell": NB201Arch.parse(
                "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|"
            )
        }

    def encode(self, arch: NB201Arch) -> list[int]:
        return [OPS.index(op) for op in arch.ops]

    def smallest(self) -> NB201Arch:
        return NB201Arch(("none",) * 6)

    def arch_from_json(self, data: dict[str, Any]) -> NB201Arch:
        return NB201Arch.parse(data["cell"])

    def build(self, arch: NB201Arch) -> nn.Module:
        return NB201Net(arch, self.input_shape[0], self.num_classes, self.channels, self.cells_per_stage)
