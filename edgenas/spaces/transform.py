"""Neural Architect's transformation space: start from a given network and transform it.

The base is a layer-wise network (`base`: a list of layers as in `LayerwiseArch.to_json()`,
default two 3x3 conv layers of 8 and 16 filters, the second at stride 2). Up to `steps` times
the controller picks a transformation and the layer it applies to:
  stop            the network is finished
  insert_conv     a 3x3 stride-1 conv layer after layer p, with p's filters; p's readers now read it
  insert_skip     an extra input to layer p: the nearest earlier layer that does not feed it yet
                  (feature maps of other resolutions are pooled, as in the layer-wise space)
  scale_channels  layer p's filters to the next larger option of `filters`
  scale_kernel    layer p's kernel to the next larger option of `kernels` (while its reach fits the map)
A position decision's mask allows only the layers the transformation can apply to. The result is
a layer-wise architecture: it builds with the layer-wise builder and dedups by its key, so two
transformation sequences that reach one network train it once.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch.nn as nn

from edgenas.spaces.base import SPACES, Decision, DecisionKind, SearchSpace
from edgenas.spaces.layerwise import Layer, LayerwiseArch, LayerwiseNet, layers_from_json

TRANSFORMS = ("stop", "insert_conv", "insert_skip", "scale_channels", "scale_kernel")
DEFAULT_BASE = (
    {"filters": 8, "kernel": 3, "stride": 1, "inputs": []},
    {"filters": 16, "kernel": 3, "stride": 2, "inputs": [0]},
)


def _levels(layers: Sequence[Layer]) -> list[int]:
    levels: list[int] = []
    for layer in layers:
        level = max((levels[j] for j in layer.inputs), default=0)
        levels.append(level + (1 if layer.stride == 2 else 0))
    return levels


@SPACES.register
class TransformSpace(SearchSpace):
    name = "transform"

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        num_classes: int,
        base: Sequence[dict[str, Any]] = DEFAULT_BASE,
        steps: int = 4,
        filters: Sequence[int] = (4, 8, 16, 32, 64),
        kernels: Sequence[int] = (1, 3, 5, 7),
    ) -> None:
        if steps < 1:
            raise ValueError("steps must be >= 1")
        if not base:
            raise ValueError("base must have at least one layer")
        try:
            layers = layers_from_json(base)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"base must be a list of layers with filters, kernel, stride, inputs ({exc})") from None
        for i, layer in enumerate(layers):
            if any(not 0 <= j < i for j in layer.inputs) or layer.filters < 1 or layer.kernel % 2 == 0:
                raise ValueError(f"base layer {i} is not a valid layer-wise layer")
        self.input_shape = tuple(input_shape)
        self.num_classes = num_classes
        self.base = LayerwiseArch(layers)
        self.steps = steps
        self.filters = tuple(sorted(filters))
        self.kernels = tuple(sorted(kernels))
        self.kinds = (DecisionKind("transform", TRANSFORMS), DecisionKind("layer", tuple(range(len(layers) + steps))))

    # -- the transformations ------------------------------------------------------------------
    def _map_size(self, layers: Sequence[Layer], p: int) -> int:
        level = max((_levels(layers)[j] for j in layers[p].inputs), default=0)
        return min(-(-s // 2**level) for s in self.input_shape[1:])

    def _targets(self, layers: tuple[Layer, ...], t: str) -> list[bool]:
        n = len(layers)
        ok = [False] * self.kinds[1].size
        for p in range(n):
            layer = layers[p]
            if t == "insert_conv":
                ok[p] = True
            elif t == "insert_skip":
                ok[p] = bool(layer.inputs) and self._skip_source(layer, p) is not None
            elif t == "scale_channels":
                ok[p] = layer.filters < self.filters[-1]
            elif t == "scale_kernel":
                bigger = [k for k in self.kernels if k > layer.kernel]
                ok[p] = bool(bigger) and bigger[0] // 2 < self._map_size(layers, p)
        return ok

    @staticmethod
    def _skip_source(layer: Layer, p: int) -> int | None:
        return next((j for j in range(p - 1, -1, -1) if j not in layer.inputs), None)

    def _apply(self, layers: tuple[Layer, ...], t: str, p: int) -> tuple[Layer, ...]:
        out = list(layers)
        if t == "insert_conv":
            new = Layer(layers[p].filters, 3 if 3 in self.kernels else self.kernels[0], 1, (p,))
            shifted = []
            for layer in layers[p + 1 :]:
                shifted.append(
                    Layer(
                        layer.filters,
                        layer.kernel,
                        layer.stride,
                        tuple(sorted(j + 1 if j >= p else j for j in layer.inputs)),
                    )
                )
            return tuple(layers[: p + 1]) + (new,) + tuple(shifted)
        layer = layers[p]
        if t == "insert_skip":
            src = self._skip_source(layer, p)
            out[p] = Layer(layer.filters, layer.kernel, layer.stride, tuple(sorted(layer.inputs + (src,))))  # type: ignore[operator]
        elif t == "scale_channels":
            out[p] = Layer(next(f for f in self.filters if f > layer.filters), layer.kernel, layer.stride, layer.inputs)
        elif t == "scale_kernel":
            out[p] = Layer(layer.filters, next(k for k in self.kernels if k > layer.kernel), layer.stride, layer.inputs)
        return tuple(out)

    def _walk(self, actions: Sequence[int]) -> tuple[tuple[Layer, ...], Decision | None]:
        layers = self.base.layers
        for step in range(self.steps + 1):
            i = 2 * step
            if step == self.steps:
                if len(actions) > i:
                    raise ValueError("actions continue past the last step")
                return layers, None
            allowed = tuple(True if t == "stop" else any(self._targets(layers, t)) for t in TRANSFORMS)
            d = Decision(0, allowed)
            if len(actions) == i:
                return layers, d
            t = actions[i]
            if not (0 <= t < len(TRANSFORMS)) or not allowed[t]:
                raise ValueError(f"action {t} at position {i} is not allowed")
            if TRANSFORMS[t] == "stop":
                if len(actions) > i + 1:
                    raise ValueError("actions continue after stop")
                return layers, None
            d = Decision(1, tuple(self._targets(layers, TRANSFORMS[t])))
            if len(actions) == i + 1:
                return layers, d
            p = actions[i + 1]
            if not (0 <= p < len(d.mask)) or not d.mask[p]:
                raise ValueError(f"action {p} at position {i + 1} is not allowed")
            layers = self._apply(layers, TRANSFORMS[t], p)
        raise AssertionError("unreachable")

    # -- the SearchSpace interface ---------------------------------------------------------------
    def next_decision(self, prefix: Sequence[int]) -> Decision | None:
        return self._walk(prefix)[1]

    def decode(self, actions: Sequence[int]) -> LayerwiseArch:
        layers, nxt = self._walk(actions)
        if nxt is not None:
            raise ValueError(f"incomplete action sequence of length {len(actions)}")
        return LayerwiseArch(layers)

    def smallest(self) -> LayerwiseArch:
        return self.base  # transformations only add

    def arch_from_json(self, data: dict[str, Any]) -> LayerwiseArch:
        return LayerwiseArch(layers_from_json(data["layers"]))

    def build(self, arch: LayerwiseArch) -> nn.Module:
        return LayerwiseNet(arch, self.input_shape[0], self.num_classes)
