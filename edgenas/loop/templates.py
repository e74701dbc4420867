"""Known-good starting points (Edge Impulse's EON Tuner and MCUNet start from templates): each
search space's reference networks (`SearchSpace.references`: MobileNetV2-style and MCUNet-like in
the mobile space, VGG-style in the layer-wise one, NB201's ResNet cell), scaled by width and depth
multipliers to the largest variant inside the search's hard limits, checked before training as
the gate checks them (parameters, RAM, flash, and latency / energy: predicted from the graph where
the profile can, else measured on this host, a second or so per variant tried), and evaluated
first, as enqueued trials. The search's answer is then never worse than the best of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from edgenas.evaluate import feasibility

if TYPE_CHECKING:
    from edgenas.constraints import Constraints
    from edgenas.hardware.profiles import Profile
    from edgenas.spaces.base import SearchSpace

WIDTHS = (1.0, 0.75, 0.5, 0.35, 0.25)  # width multipliers, as MobileNet's and MCUNet's
DEPTHS = (1.0, 0.67, 0.34)  # depth multipliers (blocks or layers kept per stage)


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
    (widest first, then deepest); a reference no variant of which fits is left out, and two
    references that scale to one network count once."""
    check = feasibility(space, constraints, profile, timed=True)
    out: list[Template] = []
    for name, arch in space.references().items():
        for width, depth in sorted(((w, d) for w in WIDTHS for d in DEPTHS), key=lambda wd: -(wd[0] ** 2) * wd[1]):
            scaled = space.scaled(arch, width, depth)
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
                out.append(Template(_label(name, width, depth), tuple(actions), key))
            break
    return tuple(out)
