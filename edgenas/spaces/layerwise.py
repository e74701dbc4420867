"""Layer-wise space after Zoph & Le (2017) and the multi-objective REINFORCE line of work.

Per layer, in this order:
  stop       (layers after the first; absent once `max_layers` is reached) continue / stop
  skip_j     (layers after the first, one per earlier layer j, when skips are on) no / yes:
             does layer j feed this layer? If none does, the image feeds it (Zoph & Le).
             Without skips, each layer takes the previous one.
  filters    number of output channels
  kernel     square kernel size, 'same' padding
  stride     1 or 2

Feature maps of different resolutions are brought to the smallest of them by max pooling before
they are concatenated on channels. Every size in a network is ceil(H / 2**level), so one pool of
factor 2**(level difference) lands exactly on it. Layers whose output feeds no later layer are
global-average-pooled, concatenated and classified by one linear layer.

Masks make impossible networks impossible to sample: stride 2 is masked once the map is 1 pixel
wide, and kernels whose reach (k // 2) is not smaller than the map would only see padding
(the smallest kernel always stays allowed).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from edgenas.spaces.base import SPACES, ActionReader, Decision, DecisionKind, SearchSpace, snap

STOP, SKIP, FILTERS, KERNEL, STRIDE = range(5)


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


@dataclass(frozen=True)
class Layer:
    filters: int
    kernel: int
    stride: int
    inputs: tuple[int, ...]  # indices of earlier layers; empty = the image


@dataclass(frozen=True)
class LayerwiseArch:
    layers: tuple[Layer, ...]

    def key(self) -> str:
        """Canonical key: equal for equal networks, used to train each network once."""
        parts = []
        for i, layer in enumerate(self.layers):
            src = ",".join(map(str, layer.inputs)) if layer.inputs else "in"
            parts.append(f"{i}:c{layer.filters}k{layer.kernel}s{layer.stride}<{src}")
        return "layerwise|" + "|".join(parts)

    def to_json(self) -> dict[str, Any]:
        return {
            "space": "layerwise",
            "layers": [
                {"filters": l.filters, "kernel": l.kernel, "stride": l.stride, "inputs": list(l.inputs)}
                for l in self.layers
            ],
        }

    def outputs(self) -> tuple[int, ...]:
        """Layers no later layer reads: they feed the classifier."""
        used = {j for layer in self.layers for j in layer.inputs}
        return tuple(i for i in range(len(self.layers)) if i not in used)

    def __str__(self) -> str:
        return json.dumps(self.to_json()["layers"])


def layers_from_json(items: Sequence[dict[str, Any]]) -> tuple[Layer, ...]:
    """Layers from their `LayerwiseArch.to_json()` form."""
    return tuple(Layer(int(l["filters"]), int(l["kernel"]), int(l["stride"]), tuple(l["inputs"])) for l in items)


@SPACES.register
class LayerwiseSpace(SearchSpace):
    name = "layerwise"

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        num_classes: int,
        max_layers: int = 5,
        filters: Sequence[int] = (4, 8, 16, 32, 64),
        kernels: Sequence[int] = (1, 3, 5, 7),
        strides: Sequence[int] = (1, 2),
        skip_connections: bool = True,
    ) -> None:
        if max_layers < 1:
            raise ValueError("max_layers must be >= 1")
        if not filters or any(f < 1 for f in filters):
            raise ValueError("filters must be a non-empty list of positive integers")
        if not kernels or any(k < 1 or k % 2 == 0 for k in kernels):
            raise ValueError("kernels must be a non-empty list of odd positive integers")
        if not strides or any(s not in (1, 2) for s in strides) or 1 not in strides:
            raise ValueError("strides must contain 1 and may contain 2")
        self.input_shape = tuple(input_shape)
        self.num_classes = num_classes
        self.max_layers = max_layers
        self.skip_connections = skip_connections
        self.kinds = (
            DecisionKind("stop", ("continue", "stop")),
            DecisionKind("skip", ("no", "yes")),
            DecisionKind("filters", tuple(filters)),
            DecisionKind("kernel", tuple(kernels)),
            DecisionKind("stride", tuple(strides)),
        )

    # -- sizes --------------------------------------------------------------------------------
    def _size(self, level: int) -> tuple[int, int]:
        _, h, w = self.input_shape
        f = 2**level
        return _ceil_div(h, f), _ceil_div(w, f)

    # -- the decision walk ----------------------------------------------------------------------
    def _walk(self, actions: Sequence[int]) -> tuple[list[Layer], Decision | None]:
        """Replay `actions`; return the finished layers and the next decision (None: done).

        Raises ValueError on an action that is out of range or masked."""
        layers: list[Layer] = []
        levels: list[int] = []  # resolution level of each finished layer's output
        reader = ActionReader(actions)
        take = reader.take

        all_ok = (True, True)
        while True:
            i = len(layers)
            if i == self.max_layers:
                if not reader.exhausted:
                    raise ValueError("actions continue past the last layer")
                return layers, None
            if i >= 1:
                d = Decision(STOP, all_ok)
                a = take(d)
                if a is None:
                    return layers, d
                if a == 1:
                    if not reader.exhausted:
                        raise ValueError("actions continue after stop")
                    return layers, None
            if i >= 1 and self.skip_connections:
                inputs = []
                for j in range(i):
                    d = Decision(SKIP, all_ok)
                    a = take(d)
                    if a is None:
                        return layers, d
                    if a == 1:
                        inputs.append(j)
                inputs_t = tuple(inputs)
            else:
                inputs_t = (i - 1,) if i >= 1 else ()
            level = max((levels[j] for j in inputs_t), default=0)
            h, w = self._size(level)
            d = Decision(FILTERS, (True,) * self.kinds[FILTERS].size)
            filt = take(d)
            if filt is None:
                return layers, d
            k_min = min(self.kinds[KERNEL].options)
            reach_ok = tuple(k // 2 < min(h, w) or k == k_min for k in self.kinds[KERNEL].options)
            d = Decision(KERNEL, reach_ok)
            kern = take(d)
            if kern is None:
                return layers, d
            stride_ok = tuple(s == 1 or min(h, w) >= 2 for s in self.kinds[STRIDE].options)
            d = Decision(STRIDE, stride_ok)
            strd = take(d)
            if strd is None:
                return layers, d
            stride = self.kinds[STRIDE].options[strd]
            layers.append(
                Layer(
                    filters=self.kinds[FILTERS].options[filt],
                    kernel=self.kinds[KERNEL].options[kern],
                    stride=stride,
                    inputs=inputs_t,
                )
            )
            levels.append(level + (1 if stride == 2 else 0))

    def next_decision(self, prefix: Sequence[int]) -> Decision | None:
        return self._walk(prefix)[1]

    def decode(self, actions: Sequence[int]) -> LayerwiseArch:
        layers, nxt = self._walk(actions)
        if nxt is not None:
            raise ValueError(f"incomplete action sequence of length {len(actions)}")
        return LayerwiseArch(tuple(layers))

    def parse(self, text: str) -> LayerwiseArch:
        """An architecture from its key's text: layers `i:c<filters>k<kernel>s<stride><<inputs>`
        joined by `|`, inputs `in` (the image) or earlier layers' indices joined by `,`."""
        layers = []
        for i, part in enumerate(text.split("|")):
            m = re.fullmatch(r"(\d+):c(\d+)k(\d+)s(\d+)<(in|\d+(?:,\d+)*)", part)
            if m is None or int(m[1]) != i:
                raise ValueError(f"layer '{part}' is not {i}:c<filters>k<kernel>s<stride><<inputs>")
            inputs = () if m[5] == "in" else tuple(int(x) for x in m[5].split(","))
            layers.append(Layer(int(m[2]), int(m[3]), int(m[4]), inputs))
        return LayerwiseArch(tuple(layers))

    def encode(self, arch: LayerwiseArch) -> list[int]:
        """The action sequence that decodes to `arch` (inverse of `decode`)."""
        actions: list[int] = []
        for i, layer in enumerate(arch.layers):
            if i >= 1:
                actions.append(0)
                if self.skip_connections:
                    actions.extend(1 if j in layer.inputs else 0 for j in range(i))
            actions.append(self.option_index(FILTERS, layer.filters, "filters"))
            actions.append(self.option_index(KERNEL, layer.kernel, "kernel"))
            actions.append(self.option_index(STRIDE, layer.stride, "stride"))
        if 1 <= len(arch.layers) < self.max_layers:
            actions.append(1)
        self.validate(actions)
        return actions

    def references(self) -> dict[str, LayerwiseArch]:
        """The 4-layer VGG-style network (32-64-64-128 filters, 3x3, two stride-2 layers), its
        widths snapped to this space's filters and its depth to max_layers."""
        vgg = ((32, 1), (64, 2), (64, 1), (128, 2))
        f = self.kinds[FILTERS].options
        k = 3 if 3 in self.kinds[KERNEL].options else self.kinds[KERNEL].options[0]
        s2 = 2 if 2 in self.kinds[STRIDE].options else 1
        layers = tuple(
            Layer(snap(c, f), k, s2 if s == 2 else 1, (i - 1,) if i and self.skip_connections else ())
            for i, (c, s) in enumerate(vgg[: self.max_layers])
        )
        return {"VGG-style": LayerwiseArch(layers)}

    def scaled(self, arch: LayerwiseArch, width: float, depth: float) -> LayerwiseArch | None:
        if depth > 1:  # no stage to repeat a layer of: wider only
            return None
        keep = max(1, math.ceil(len(arch.layers) * depth - 1e-9))
        f = self.kinds[FILTERS].options
        layers = tuple(
            Layer(
                snap(layer.filters * width, f), layer.kernel, layer.stride, tuple(j for j in layer.inputs if j < keep)
            )
            for layer in arch.layers[:keep]
        )
        return LayerwiseArch(layers)

    def smallest(self) -> LayerwiseArch:
        return LayerwiseArch((Layer(min(self.kinds[FILTERS].options), min(self.kinds[KERNEL].options), 1, ()),))

    def arch_from_json(self, data: dict[str, Any]) -> LayerwiseArch:
        return LayerwiseArch(layers_from_json(data["layers"]))

    def build(self, arch: LayerwiseArch) -> nn.Module:
        return LayerwiseNet(arch, self.input_shape[0], self.num_classes)


class LayerwiseNet(nn.Module):
    """Conv-BN-ReLU layers wired as the architecture says; a pooled linear head."""

    def __init__(self, arch: LayerwiseArch, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.arch = arch
        self.inputs = [layer.inputs for layer in arch.layers]
        levels: list[int] = []
        blocks = []
        for layer in arch.layers:
            c_in = sum(arch.layers[j].filters for j in layer.inputs) if layer.inputs else in_channels
            level = max((levels[j] for j in layer.inputs), default=0)
            levels.append(level + (1 if layer.stride == 2 else 0))
            blocks.append(
                nn.Sequential(
                    nn.Conv2d(c_in, layer.filters, layer.kernel, layer.stride, layer.kernel // 2, bias=False),
                    nn.BatchNorm2d(layer.filters),
                    nn.ReLU(inplace=True),
                )
            )
        self.levels = levels
        self.blocks = nn.ModuleList(blocks)
        self.outputs = arch.outputs()
        self.classifier = nn.Linear(sum(arch.layers[i].filters for i in self.outputs), num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats: list[torch.Tensor] = []
        for block, inputs in zip(self.blocks, self.inputs):
            if not inputs:
                h = x
            elif len(inputs) == 1:
                h = feats[inputs[0]]
            else:
                level = max(self.levels[j] for j in inputs)
                parts = []
                for j in inputs:
                    f = feats[j]
                    gap = level - self.levels[j]
                    if gap:
                        f = F.max_pool2d(f, 2**gap, 2**gap, ceil_mode=True)
                    parts.append(f)
                h = torch.cat(parts, dim=1)
            feats.append(block(h))
        pooled = [feats[i].mean(dim=(2, 3)) for i in self.outputs]
        z = pooled[0] if len(pooled) == 1 else torch.cat(pooled, dim=1)
        return self.classifier(z)
