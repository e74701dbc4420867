"""Known-good starting points (Edge Impulse's EON Tuner and MCUNet start from templates): each
search space's reference networks (`SearchSpace.references`: MobileNetV2-style and MCUNet-like in
the mobile space, VGG-style in the layer-wise one, NB201's ResNet cell), scaled by width and depth
multipliers to the largest variant inside the search's hard limits (down where a reference does
not fit, up where it leaves room: a reference far inside the limits wastes what the device
allows), checked before training as the gate checks them (parameters, RAM, flash, and latency /
energy: predicted from the graph where the profile can, else measured on this host, a second or
so per variant tried), and evaluated first, as enqueued trials. The search's answer is then never worse than the best of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from edgenas.evaluate import feasibility

if TYPE_CHECKING:
    from edgenas.constraints import Constraints
    from edgenas.hardware.profiles import Profile
    from edgenas.spaces.base import SearchSpace

WIDTHS = (2.0, 1.5, 1.25, 1.0, 0.75, 0.5, 0.35, 0.25)  # width multipliers, as MobileNet's and MCUNet's
DEPTHS = (1.5, 1.0, 0.67, 0.34)  # depth multipliers (blocks or layers per stage, as the space allows)


@dataclass(frozen=True)
class Template:
    name: str  # the reference and its multipliers, e.g. "MobileNetV2-style (width x0.5)"
    actions: tuple[int, ...]
    key: str


def _label(name: str, width: float, depth: float) -> str:
    scale = [f"width x{width:g}"] * (width != 1) + [f"depth x{depth:g}"] * (depth != 1)
    return f"{name} ({', '.join(scale)})" if scale else name


def templates(space: SearchSpace, constraints: Constraints, profile: Profile | None = None) -> tuple[Template, ...]:
    """Each reference of `space` at the largest width and depth multipliers that fit the limits
    (by width squared times depth, as compute grows); a reference no variant of which fits is left
    out, and two references that scale to one network count once. Multipliers above 1 only where
    a hard limit bounds the size: without one the references are taken as they are."""
    check = feasibility(space, constraints, profile, timed=True)
    bounded = check is not None
    scales = sorted(
        ((w, d) for w in WIDTHS for d in DEPTHS if bounded or (w <= 1 and d <= 1)),
        key=lambda wd: (-(wd[0] ** 2) * wd[1], -wd[0]),
    )
    out: list[Template] = []
    for name, arch in space.references().items():
        variants = {wd: space.scaled(arch, *wd) for wd in scales}  # largest first
        for (width, depth), scaled in variants.items():
            if scaled is None:
                continue
            try:
                actions = space.encode(scaled)
                space.validate(actions)
            except ValueError:
                continue
            key = space.decode(actions).key()
            if key != scaled.key() or (check is not None and not check(actions)):
                continue
            if all(t.key != key for t in out):
                # named by the multipliers nearest 1 that give this network (widths snap to the
                # space's options: MobileNetV2-style at width x1.25 is MobileNetV2-style)
                same = [wd for wd, v in variants.items() if v is not None and v.key() == key]
                w, d = min(same, key=lambda wd: (abs(wd[0] - 1) + abs(wd[1] - 1), -(wd[0] ** 2) * wd[1]))
                out.append(Template(_label(name, w, d), tuple(actions), key))
            break
    return tuple(out)
