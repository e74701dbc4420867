"""Disk an install takes: edgenas's own dependencies, and what the `tflite` extra adds.

Reads the installed distributions of the running environment (importlib.metadata: each
distribution's RECORD of files, sizes as they are on disk now) and follows requirements from
`edgenas` (base) and from `edgenas[tflite]`, with environment markers evaluated for this
interpreter. Prints the total of the base install, the torch + torchvision part of it (with
the CUDA libraries and triton that the registry's torch build pulls in), and what the tflite
extra adds on top. This owns the README's install sizes ("about 5.6 GB" of CUDA torch, "about
1 GB" for the extra, "keep about 8 GB of disk free").

    python benchmarks/install_size.py
"""

from __future__ import annotations

import re
from importlib import metadata

from packaging.requirements import Requirement


def canon(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


DISTS = {canon(d.metadata["Name"]): d for d in metadata.distributions()}


def size(dist: metadata.Distribution) -> int:
    total = 0
    for f in dist.files or []:
        p = f.locate()
        try:
            total += p.stat().st_size
        except OSError:
            pass
    return total


def closure(roots: list[tuple[str, frozenset[str]]]) -> set[str]:
    """Installed distributions reachable from (name, extras) roots."""
    done: set[tuple[str, frozenset[str]]] = set()
    todo = list(roots)
    while todo:
        name, extras = todo.pop()
        if (canon(name), extras) in done or canon(name) not in DISTS:
            continue
        done.add((canon(name), extras))
        envs = [{"extra": e} for e in extras] + [{"extra": ""}]
        for text in DISTS[canon(name)].requires or []:
            req = Requirement(text)
            if req.marker is None or any(req.marker.evaluate(env) for env in envs):
                todo.append((req.name, frozenset(req.extras)))
    return {name for name, _ in done}


def gb(n: int) -> str:
    return f"{n / 1e9:.2f} GB"


def main() -> None:
    base = closure([("edgenas", frozenset())])
    extra = closure([("edgenas", frozenset({"tflite"}))]) - base
    torch_part = {d for d in base if d in ("torch", "torchvision", "triton") or d.startswith(("nvidia-", "cuda-"))}
    sizes = {d: size(DISTS[d]) for d in base | extra}
    print(f"edgenas base install: {len(base)} distributions, {gb(sum(sizes[d] for d in base))}")
    print(
        f"  of it torch + torchvision with their CUDA libraries and triton ({len(torch_part)} distributions): "
        f"{gb(sum(sizes[d] for d in torch_part))}"
    )
    print(f"the tflite extra adds {len(extra)} distributions: {gb(sum(sizes[d] for d in extra))}")
    for d in sorted(extra, key=lambda d: -sizes[d])[:5]:
        print(f"  {d:<28} {gb(sizes[d])}")


if __name__ == "__main__":
    main()
