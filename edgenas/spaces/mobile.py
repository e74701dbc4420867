"""The mobile space (`--space mobile`): inverted-residual networks of the kind MnasNet,
ProxylessNAS, Once-for-All and MCUNet search.

A 3x3 stem convolution (`stem` channels), then `stages` stages; the first stage keeps the
resolution, every later one halves it in its first block (stride 1 once the map is 1 pixel).
Decisions, in this order:
  per stage  depth (1 .. max_depth blocks), width (output channels, from `widths`)
  per block  kernel (depthwise k x k, from `kernels`), expansion (from `expansions`), se (off/on)
A block is MobileNetV2's inverted residual: 1x1 expansion to t x C_in (left out when t = 1),
depthwise k x k with the stage's stride, optional squeeze-and-excite (reduction 4, hard
sigmoid), 1x1 projection; BatchNorm after each convolution, ReLU6 after the first two; a
residual connection when the shapes match. Head: optionally a 1x1 convolution to `head`
channels (BatchNorm, ReLU6: MobileNetV2's and MnasNet's last feature layer, scaled to small
budgets), then global average pooling and a linear layer. With more than one option in `heads`
the head's width is the last decision (0 = no head convolution); with one option it is fixed.
Masks: kernels wider than the feature map are not offered (the smallest always is).
The canonical key spells out every stage and block (and the head, as `/h<width>`, when there is
one), so equal networks share one key.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn as nn

from edgenas.spaces.base import SPACES, ActionReader, Decision, DecisionKind, SearchSpace, snap

DEPTH, WIDTH, KERNEL, EXPANSION, SE, HEAD = range(6)


@dataclass(frozen=True)
class MobileBlock:
    kernel: int
    expansion: int
    se: bool


@dataclass(frozen=True)
class MobileStage:
    width: int
    blocks: tuple[MobileBlock, ...]


@dataclass(frozen=True)
class MobileArch:
    stages: tuple[MobileStage, ...]
    head: int = 0  # output channels of the 1x1 head convolution before pooling; 0 = none

    def key(self) -> str:
        parts = [
            f"w{s.width}:" + ",".join(f"k{b.kernel}e{b.expansion}{'se' if b.se else ''}" for b in s.blocks)
            for s in self.stages
        ]
        if self.head:
            parts.append(f"h{self.head}")
        return "mobile|" + "/".join(parts)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "space": "mobile",
            "stages": [{"width": s.width, "blocks": [vars(b).copy() for b in s.blocks]} for s in self.stages],
        }
        if self.head:
            data["head"] = self.head
        return data

    def __str__(self) -> str:
        return self.key().split("|", 1)[1]


class SqueezeExcite(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        squeezed = max(1, c // 4)
        self.gate = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(c, squeezed, 1),
            nn.ReLU(),
            nn.Conv2d(squeezed, c, 1),
            nn.Hardsigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


class InvertedResidual(nn.Module):
    def __init__(self, c_in: int, c_out: int, block: MobileBlock, stride: int) -> None:
        super().__init__()
        hidden = c_in * block.expansion
        layers: list[nn.Module] = []
        if block.expansion != 1:
            layers += [nn.Conv2d(c_in, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6()]
        k = block.kernel
        layers += [
            nn.Conv2d(hidden, hidden, k, stride, k // 2, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(),
        ]
        if block.se:
            layers.append(SqueezeExcite(hidden))
        layers += [nn.Conv2d(hidden, c_out, 1, bias=False), nn.BatchNorm2d(c_out)]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        return out + x if self.residual else out


class MobileNet(nn.Module):
    def __init__(self, arch: MobileArch, in_channels: int, num_classes: int, stem: int, strides: list[int]) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, stem, 3, 1, 1, bias=False), nn.BatchNorm2d(stem), nn.ReLU6()]
        c = stem
        for stage, stride in zip(arch.stages, strides):
            for i, block in enumerate(stage.blocks):
                layers.append(InvertedResidual(c, stage.width, block, stride if i == 0 else 1))
                c = stage.width
        if arch.head:
            layers += [nn.Conv2d(c, arch.head, 1, bias=False), nn.BatchNorm2d(arch.head), nn.ReLU6()]
            c = arch.head
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@SPACES.register
class MobileSpace(SearchSpace):
    name = "mobile"
    smallest_is_cheapest = True  # narrowest, shallowest, smallest kernel and expansion, no SE, no head

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        num_classes: int,
        stages: int = 4,
        max_depth: int = 3,
        widths: Sequence[int] = (8, 16, 24, 32, 48, 64, 96),
        kernels: Sequence[int] = (3, 5, 7),
        expansions: Sequence[int] = (1, 3, 6),
        stem: int = 16,
        heads: Sequence[int] = (0,),
    ) -> None:
        if stages < 1 or max_depth < 1 or stem < 1:
            raise ValueError("stages, max_depth and stem must be >= 1")
        if not widths or any(w < 1 for w in widths):
            raise ValueError("widths must be a non-empty list of positive integers")
        if not kernels or any(k < 1 or k % 2 == 0 for k in kernels):
            raise ValueError("kernels must be a non-empty list of odd positive integers")
        if not expansions or any(t < 1 for t in expansions):
            raise ValueError("expansions must be a non-empty list of positive integers")
        if not heads or any(h < 0 for h in heads) or len(set(heads)) != len(heads):
            raise ValueError("heads must be a non-empty list of distinct widths >= 0 (0 = no head convolution)")
        self.input_shape = tuple(input_shape)
        self.num_classes = num_classes
        self.stages, self.max_depth, self.stem = stages, max_depth, stem
        self.kinds = (
            DecisionKind("depth", tuple(range(1, max_depth + 1))),
            DecisionKind("width", tuple(widths)),
            DecisionKind("kernel", tuple(kernels)),
            DecisionKind("expansion", tuple(expansions)),
            DecisionKind("se", (False, True)),
        )
        self.heads = tuple(heads)
        if len(self.heads) > 1:  # a decision only where there is a choice: other spaces' sequences stay as they were
            self.kinds += (DecisionKind("head", self.heads),)

    def strides(self) -> list[int]:
        """Each stage's first-block stride: 1, then 2 while the map is wider than 1 pixel."""
        size, out = min(self.input_shape[1:]), []
        for s in range(self.stages):
            stride = 2 if s > 0 and size > 1 else 1
            out.append(stride)
            size = -(-size // stride)
        return out

    def _walk(self, actions: Sequence[int]) -> tuple[list[MobileStage], Decision | int]:
        """The stages read from `actions` and the next decision, or the head width once complete."""
        stages: list[MobileStage] = []
        reader = ActionReader(actions)
        take = reader.take
        size = min(self.input_shape[1:])

        for stride in self.strides():
            size = -(-size // stride)
            picks = []
            for kind in (DEPTH, WIDTH):
                d = Decision(kind, (True,) * self.kinds[kind].size)
                a = take(d)
                if a is None:
                    return stages, d
                picks.append(self.kinds[kind].options[a])
            depth, width = picks
            kernel_mask = tuple(
                k // 2 < size or k == min(self.kinds[KERNEL].options) for k in self.kinds[KERNEL].options
            )
            blocks = []
            for _ in range(depth):
                choice = []
                for kind, mask in (
                    (KERNEL, kernel_mask),
                    (EXPANSION, (True,) * self.kinds[EXPANSION].size),
                    (SE, (True, True)),
                ):
                    d = Decision(kind, mask)
                    a = take(d)
                    if a is None:
                        return stages, d
                    choice.append(self.kinds[kind].options[a])
                blocks.append(MobileBlock(choice[0], choice[1], bool(choice[2])))
            stages.append(MobileStage(width, tuple(blocks)))
        head = self.heads[0]
        if len(self.heads) > 1:
            d = Decision(HEAD, (True,) * len(self.heads))
            a = take(d)
            if a is None:
                return stages, d
            head = self.heads[a]
        if not reader.exhausted:
            raise ValueError("actions continue past the last stage")
        return stages, head

    def next_decision(self, prefix: Sequence[int]) -> Decision | None:
        nxt = self._walk(prefix)[1]
        return nxt if isinstance(nxt, Decision) else None

    def decode(self, actions: Sequence[int]) -> MobileArch:
        stages, nxt = self._walk(actions)
        if isinstance(nxt, Decision):
            raise ValueError(f"incomplete action sequence of length {len(actions)}")
        return MobileArch(tuple(stages), nxt)

    def build(self, arch: MobileArch) -> nn.Module:
        return MobileNet(arch, self.input_shape[0], self.num_classes, self.stem, self.strides())

    def parse(self, text: str) -> MobileArch:
        """An architecture from its key's text: stages `w<width>:<blocks>` joined by `/`, blocks
        `k<kernel>e<expansion>[se]` joined by `,` (e.g. `w16:k3e1/w24:k3e6,k5e6se/...`), then
        `/h<width>` where the network has a head convolution."""
        stages, head = [], 0
        parts = text.split("/")
        if len(parts) > 1 and (hm := re.fullmatch(r"h(\d+)", parts[-1])):
            parts, head = parts[:-1], int(hm[1])
        for part in parts:
            m = re.fullmatch(r"w(\d+):(.+)", part)
            if m is None:
                raise ValueError(f"stage '{part}' is not w<width>:<blocks>")
            blocks = []
            for b in m[2].split(","):
                bm = re.fullmatch(r"k(\d+)e(\d+)(se)?", b)
                if bm is None:
                    raise ValueError(f"block '{b}' is not k<kernel>e<expansion>, optionally followed by se")
                blocks.append(MobileBlock(int(bm[1]), int(bm[2]), bm[3] is not None))
            stages.append(MobileStage(int(m[1]), tuple(blocks)))
        return MobileArch(tuple(stages), head)

    def encode(self, arch: MobileArch) -> list[int]:
        if len(arch.stages) != self.stages:
            raise ValueError(f"{len(arch.stages)} stages; this space has {self.stages}")
        index = self.option_index
        actions: list[int] = []
        for stage in arch.stages:
            actions += [index(DEPTH, len(stage.blocks), "depth"), index(WIDTH, stage.width, "width")]
            for b in stage.blocks:
                actions += [index(KERNEL, b.kernel, "kernel"), index(EXPANSION, b.expansion, "expansion"), int(b.se)]
        if len(self.heads) > 1:
            actions.append(index(HEAD, arch.head, "head"))
        elif arch.head != self.heads[0]:
            raise ValueError(f"head {arch.head} is not one of {list(self.heads)}")
        return actions

    def references(self) -> dict[str, MobileArch]:
        """MobileNetV2-style (inverted residuals, expansion 6, 3x3 depthwise: 16-24-32-64 with
        1, 2, 3, 2 blocks) and an MCUNet-like network (TinyNAS's mixed 3/5/7 kernels and
        expansions 3-6 at 16-24-32-48), each snapped to this space's options and stages."""

        def arch(plan: list[tuple[int, list[tuple[int, int]]]]) -> MobileArch:
            o = self.kinds
            stages = []
            for i in range(self.stages):
                width, blocks = plan[min(i, len(plan) - 1)]
                stages.append(
                    MobileStage(
                        snap(width, o[WIDTH].options),
                        tuple(
                            MobileBlock(snap(k, o[KERNEL].options), snap(t, o[EXPANSION].options), False)
                            for k, t in blocks[: self.max_depth]
                        ),
                    )
                )
            return MobileArch(tuple(stages), min(self.heads))

        return {
            "MobileNetV2-style": arch([(16, [(3, 1)]), (24, [(3, 6)] * 2), (32, [(3, 6)] * 3), (64, [(3, 6)] * 2)]),
            "MCUNet-like": arch(
                [(16, [(3, 1)]), (24, [(7, 3), (3, 3)]), (32, [(5, 6), (5, 3), (3, 3)]), (48, [(5, 6), (3, 4)])]
            ),
        }

    def scaled(self, arch: MobileArch, width: float, depth: float) -> MobileArch | None:
        """Widths snapped down to the space's options; a depth multiplier below 1 keeps each
        stage's first blocks, above 1 repeats its last block (as MobileNet's stages repeat one
        block), up to `max_depth`."""
        widths = self.kinds[WIDTH].options

        def blocks(s: MobileStage) -> tuple[MobileBlock, ...]:
            n = min(self.max_depth, max(1, math.ceil(len(s.blocks) * depth - 1e-9)))
            return s.blocks[:n] + (s.blocks[-1],) * (n - len(s.blocks))

        return MobileArch(tuple(MobileStage(snap(s.width * width, widths), blocks(s)) for s in arch.stages), arch.head)

    def smallest(self) -> MobileArch:
        block = MobileBlock(min(self.kinds[KERNEL].options), min(self.kinds[EXPANSION].options), False)
        stages = tuple(MobileStage(min(self.kinds[WIDTH].options), (block,)) for _ in range(self.stages))
        return MobileArch(stages, min(self.heads))

    def arch_from_json(self, data: dict[str, Any]) -> MobileArch:
        return MobileArch(
            tuple(
                MobileStage(
                    int(s["width"]),
                    tuple(MobileBlock(int(b["kernel"]), int(b["expansion"]), bool(b["se"])) for b in s["blocks"]),
                )
                for s in data["stages"]
            ),
            int(data.get("head", 0)),
        )
