"""Cell spaces of Arora & Krone: A_small and A_large.

Operations (both spaces): 1x3-then-3x1 conv, 3x3 conv, 3x3 depthwise-separable conv, 5x5 conv,
7x7 conv, 2x2 max pool, 2x2 avg pool, identity; every op keeps the resolution and the channels
(convs are ReLU-Conv-BN; 2x2 pools use stride 1 with one row and column of padding).

A_small: a cell is two consecutive operations (8 x 8 = 64 networks).
A_large: a cell of B blocks; block b picks two inputs among the earlier hidden states (the cell
input and blocks 0..b-1) and one operation for each, and sums the two; the cell outputs the
concatenation of every block, projected back to the cell's channels by a 1x1 conv.

Child network (both): cell(C) - maxpool 2 - cell(2C) - maxpool 2 - fc - softmax (the softmax
lives in the loss): a 1x1 ReLU-Conv-BN at the start of each cell brings the channels to its
width, channels double after each reduction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from edgenas.spaces.base import SPACES, Decision, DecisionKind, SearchSpace

CELL_OPS = ("conv1x3_3x1", "conv3x3", "sepconv3x3", "conv5x5", "conv7x7", "maxpool2x2", "avgpool2x2", "identity")


def _rcb(c: int, kernel: tuple[int, int], groups: int = 1) -> list[nn.Module]:
    return [
        nn.ReLU(),
        nn.Conv2d(c, c, kernel, padding=(kernel[0] // 2, kernel[1] // 2), groups=groups, bias=False),
        nn.BatchNorm2d(c),
    ]


class Pool2x2(nn.Module):
    """2x2 pooling at stride 1 that keeps the size (pads one row and column at the end)."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (0, 1, 0, 1), mode="replicate")
        return F.max_pool2d(x, 2, 1) if self.kind == "max" else F.avg_pool2d(x, 2, 1)


def cell_op(name: str, c: int) -> nn.Module:
    if name == "conv1x3_3x1":
        return nn.Sequential(*_rcb(c, (1, 3)), *_rcb(c, (3, 1)))
    if name == "sepconv3x3":
        return nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(c, c, 3, padding=1, groups=c, bias=False),
            nn.Conv2d(c, c, 1, bias=False),
            nn.BatchNorm2d(c),
        )
    if name.startswith("conv"):
        k = int(name[4])
        return nn.Sequential(*_rcb(c, (k, k)))
    if name.endswith("pool2x2"):
        return Pool2x2(name[:3])
    return nn.Identity()


def _project(c_in: int, c: int) -> nn.Module:
    return nn.Sequential(nn.ReLU(), nn.Conv2d(c_in, c, 1, bias=False), nn.BatchNorm2d(c))


@dataclass(frozen=True)
class Block:
    inputs: tuple[int, int]  # hidden states: 0 = cell input, b + 1 = block b
    ops: tuple[str, str]


@dataclass(frozen=True)
class CellArch:
    space: str  # cell-small | cell-large
    blocks: tuple[Block, ...]  # cell-small: one block ((0, 1), (op1, op2)) read as op2(op1(x))

    def key(self) -> str:
        if self.space == "cell-small":
            return f"cell-small|{self.blocks[0].ops[0]}>{self.blocks[0].ops[1]}"
        # a block's two terms commute; write them sorted
        parts = []
        for b in self.blocks:
            terms = sorted(f"{op}({i})" for i, op in zip(b.inputs, b.ops))
            parts.append("+".join(terms))
        return "cell-large|" + ";".join(parts)

    def to_json(self) -> dict[str, Any]:
        return {"space": self.space, "blocks": [{"inputs": list(b.inputs), "ops": list(b.ops)} for b in self.blocks]}

    def __str__(self) -> str:
        return self.key().split("|", 1)[1]


class Cell(nn.Module):
    def __init__(self, arch: CellArch, c_in: int, c: int) -> None:
        super().__init__()
        self.arch = arch
        self.project = _project(c_in, c) if c_in != c else nn.Identity()
        self.ops = nn.ModuleList(cell_op(op, c) for b in arch.blocks for op in b.ops)
        self.out = _project(c * len(arch.blocks), c) if arch.space == "cell-large" else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.project(x)
        if self.arch.space == "cell-small":
            return self.ops[1](self.ops[0](x))
        states = [x]
        for b, block in enumerate(self.arch.blocks):
            a = self.ops[2 * b](states[block.inputs[0]])
            states.append(a + self.ops[2 * b + 1](states[block.inputs[1]]))
        return self.out(torch.cat(states[1:], dim=1))


class CellNet(nn.Module):
    def __init__(self, arch: CellArch, input_shape: Sequence[int], num_classes: int, channels: int) -> None:
        super().__init__()
        c_in, h, w = input_shape
        self.cell1 = Cell(arch, c_in, channels)
        self.cell2 = Cell(arch, channels, 2 * channels)
        h, w = -(-h // 4), -(-w // 4)  # two ceil-mode 2x2 max pools
        self.fc = nn.Linear(2 * channels * h * w, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(self.cell1(x), 2, ceil_mode=True)
        x = F.max_pool2d(self.cell2(x), 2, ceil_mode=True)
        return self.fc(torch.flatten(x, 1))


class _CellSpace(SearchSpace):
    def __init__(self, input_shape: tuple[int, int, int], num_classes: int, channels: int = 16) -> None:
        if channels < 1:
            raise ValueError("channels must be >= 1")
        if min(input_shape[1:]) < 4:
            raise ValueError("cell spaces reduce twice by 2: the input must be at least 4x4")
        self.input_shape = tuple(input_shape)
        self.num_classes = num_classes
        self.channels = channels

    def build(self, arch: CellArch) -> nn.Module:
        return CellNet(arch, self.input_shape, self.num_classes, self.channels)

    def arch_from_json(self, data: dict[str, Any]) -> CellArch:
        return CellArch(self.name, tuple(Block(tuple(b["inputs"]), tuple(b["ops"])) for b in data["blocks"]))  # type: ignore[arg-type]


@SPACES.register
class CellSmallSpace(_CellSpace):
    """A_small: two decisions of 8 operations (64 networks)."""

    name = "cell-small"

    def __init__(self, input_shape: tuple[int, int, int], num_classes: int, channels: int = 16) -> None:
        super().__init__(input_shape, num_classes, channels)
        self.kinds = (DecisionKind("op", CELL_OPS),)

    def next_decision(self, prefix: Sequence[int]) -> Decision | None:
        if len(prefix) > 2 or any(not 0 <= a < len(CELL_OPS) for a in prefix):
            raise ValueError("not a cell-small action prefix")
        return None if len(prefix) == 2 else Decision(0, (True,) * len(CELL_OPS))

    def decode(self, actions: Sequence[int]) -> CellArch:
        self.validate(actions)
        return CellArch(self.name, (Block((0, 1), (CELL_OPS[actions[0]], CELL_OPS[actions[1]])),))

    def smallest(self) -> CellArch:
        return CellArch(self.name, (Block((0, 1), ("identity", "identity")),))

    def parse(self, text: str) -> CellArch:
        """A cell from the string it prints as, `first>second` (e.g. `conv3x3>maxpool2x2`), so a
        table of the 64 cells (`--table`) names them as `str(arch)` does."""
        ops = text.strip().split(">")
        if len(ops) != 2 or any(op not in CELL_OPS for op in ops):
            raise ValueError(f"'{text}' is not a cell-small string: two of {', '.join(CELL_OPS)} joined by '>'")
        return self.decode([CELL_OPS.index(op) for op in ops])


@SPACES.register
class CellLargeSpace(_CellSpace):
    """A_large: `blocks` blocks x (input, input, op, op)."""

    name = "cell-large"

    def __init__(
        self, input_shape: tuple[int, int, int], num_classes: int, channels: int = 16, blocks: int = 3
    ) -> None:
        super().__init__(input_shape, num_classes, channels)
        if blocks < 1:
            raise ValueError("blocks must be >= 1")
        self.blocks = blocks
        self.kinds = (DecisionKind("input", tuple(range(blocks))), DecisionKind("op", CELL_OPS))

    def next_decision(self, prefix: Sequence[int]) -> Decision | None:
        if len(prefix) > 4 * self.blocks:
            raise ValueError("not a cell-large action prefix")
        if len(prefix) == 4 * self.blocks:
            return None
        b, step = divmod(len(prefix), 4)
        if step < 2:  # an input: the cell input or an earlier block
            return Decision(0, tuple(i <= b for i in range(self.blocks)))
        return Decision(1, (True,) * len(CELL_OPS))

    def decode(self, actions: Sequence[int]) -> CellArch:
        self.validate(actions)
        blocks = []
        for b in range(self.blocks):
            i1, i2, o1, o2 = actions[4 * b : 4 * b + 4]
            blocks.append(Block((i1, i2), (CELL_OPS[o1], CELL_OPS[o2])))
        return CellArch(self.name, tuple(blocks))

    def smallest(self) -> CellArch:
        return CellArch(self.name, tuple(Block((0, 0), ("identity", "identity")) for _ in range(self.blocks)))
