"""The conformance checks every search space passes, for your own space too.

    from edgenas.testing import check_space
    check_space(MySpace, input_shape=(1, 8, 8), num_classes=10)

A space (see `edgenas.spaces.SearchSpace`) is a class built as `MySpace(input_shape=(C, H, W),
num_classes=K, **options)` with a `name`, its decision `kinds` and `input_shape`; it walks its
decisions in `next_decision(prefix)` (a kind and a mask of allowed options, None when the
sequence is complete), turns a complete sequence into a plain, hashable architecture with
`decode`, builds it with `build`, gives its `smallest()` architecture and reads one back from
JSON with `arch_from_json`. Architectures have `key()` (a canonical string: two sequences that
build the same network have the same key, so it is trained once) and `to_json()`.

`check_space` runs what the search relies on, on random proposals (the random controller's, the
same walk every controller makes): every mask allows something and every walk ends; proposals
validate and decode; the architecture is hashable, its JSON round-trips and its key is stable;
the network builds, maps (2, C, H, W) to (2, K), takes one training step that changes its
weights, exports to ONNX that onnxruntime runs like torch; equal keys mean equal networks (the
same parameter count); `smallest()` has no more parameters
than any proposal. A failure raises `edgenas.errors.SpaceCheckError` naming the check and the
sequence; success returns a small summary.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from edgenas.errors import SpaceCheckError
from edgenas.spaces import SearchSpace
from edgenas.spaces.base import DecisionKind

MAX_DECISIONS = 10_000  # a walk longer than this does not end


def check_space(
    space: SearchSpace | type[SearchSpace],
    input_shape: tuple[int, int, int] = (1, 8, 8),
    num_classes: int = 10,
    proposals: int = 8,
    seed: int = 0,
    **options: Any,
) -> dict[str, Any]:
    """Run the conformance checks on `space` (an instance, or a class built here with
    `input_shape`, `num_classes` and `options`). Returns {"name", "proposals", "distinct_keys",
    "params": [min, max]}; raises SpaceCheckError on the first failed check."""
    from edgenas import controllers

    if isinstance(space, type):
        try:
            space = space(input_shape=input_shape, num_classes=num_classes, **options)
        except Exception as exc:
            raise SpaceCheckError(
                f"cannot build the space as {space.__name__}(input_shape=..., num_classes=...): {exc}"
            )
    name = getattr(space, "name", None)
    label = f"space '{name}'"
    _require(isinstance(name, str) and bool(name), label, "has a `name` (a non-empty string)")
    kinds = getattr(space, "kinds", None)
    _require(
        isinstance(kinds, tuple) and len(kinds) > 0 and all(isinstance(k, DecisionKind) for k in kinds),
        label,
        "has `kinds`, a non-empty tuple of DecisionKind",
    )
    shape = tuple(getattr(space, "input_shape", ()))
    _require(len(shape) == 3, label, "has `input_shape` (C, H, W)")

    seqs = [list(s) for s in _walks(space, label, proposals, seed, controllers)]
    x = torch.randn(2, *shape, generator=torch.Generator().manual_seed(seed))
    y = torch.tensor([0, min(1, num_classes - 1)])
    by_key: dict[str, tuple[list[int], int, np.ndarray]] = {}
    params = []
    for seq in seqs:
        where = f"{label}, sequence {seq}"
        try:
            space.validate(seq)
            arch = space.decode(seq)
        except Exception as exc:
            raise SpaceCheckError(f"{where}: a proposed sequence does not validate and decode: {exc}") from exc
        try:
            hash(arch)
        except TypeError as exc:
            raise SpaceCheckError(f"{where}: the architecture is not hashable ({exc})") from exc
        key = arch.key()
        _require(isinstance(key, str) and key == space.decode(list(seq)).key(), where, "has a stable string key()")
        data = arch.to_json()
        try:
            back = space.arch_from_json(json.loads(json.dumps(data)))
        except Exception as exc:
            raise SpaceCheckError(f"{where}: to_json() does not round-trip through JSON: {exc}") from exc
        _require(back == arch and back.key() == key, where, "reads back from arch_from_json(arch.to_json())")
        n_params, out = _trains_and_exports(space, arch, x, y, num_classes, where)
        params.append(n_params)
        if key in by_key:
            other, other_params, _ = by_key[key]
            _require(
                n_params == other_params,
                where,
                f"builds the same network as {other}, which has the same key '{key}'",
            )
        by_key[key] = (seq, n_params, out)
    smallest = space.smallest()
    least = sum(p.numel() for p in space.build(smallest).parameters())
    _require(least <= min(params), label, f"has smallest() with no more parameters than any proposal ({least:,})")
    return {"name": name, "proposals": len(seqs), "distinct_keys": len(by_key), "params": [min(params), max(params)]}


def _require(ok: bool, where: str, what: str) -> None:
    if not ok:
        raise SpaceCheckError(f"{where}: fails the check that it {what}")


def _walks(space: SearchSpace, label: str, n: int, seed: int, controllers: Any) -> list[list[int]]:
    """`n` random proposals, each also replayed decision by decision (masks non-empty, walks end)."""
    try:
        seqs = controllers.create("random", space, seed=seed).propose(n, controllers.History())
    except Exception as exc:
        raise SpaceCheckError(f"{label}: random proposals fail: {exc}") from exc
    for seq in seqs:
        _require(len(seq) < MAX_DECISIONS, label, f"ends its walk within {MAX_DECISIONS} decisions")
        for i in range(len(seq) + 1):
            d = space.next_decision(seq[:i])
            if i == len(seq):
                _require(d is None, f"{label}, sequence {seq}", "says a proposed sequence is complete")
            else:
                _require(
                    d is not None and len(d.mask) == space.kinds[d.kind].size and any(d.mask),
                    f"{label}, prefix {seq[:i]}",
                    "gives a decision whose mask has one entry per option and allows at least one",
                )
    return seqs


def _trains_and_exports(
    space: SearchSpace, arch: Any, x: torch.Tensor, y: torch.Tensor, num_classes: int, where: str
) -> tuple[int, np.ndarray]:
    import onnxruntime as ort

    from edgenas.hardware.onnx import INPUT_NAME, export_onnx

    torch.manual_seed(0)
    try:
        model = space.build(arch)
        model.train()
        out = model(x)
    except Exception as exc:
        raise SpaceCheckError(f"{where}: the network does not build and run: {type(exc).__name__}: {exc}") from exc
    _require(
        tuple(out.shape) == (2, num_classes), where, f"maps (2, C, H, W) to (2, {num_classes}), not {tuple(out.shape)}"
    )
    weights = list(model.parameters())
    _require(bool(weights), where, "has parameters to train")
    before = [p.detach().clone() for p in weights]
    loss = F.cross_entropy(out, y)
    torch.optim.SGD(weights, lr=0.1).zero_grad()
    loss.backward()
    torch.optim.SGD(weights, lr=0.1).step()
    _require(bool(torch.isfinite(loss)), where, "gives a finite loss")
    _require(any(not torch.equal(a, b) for a, b in zip(before, weights)), where, "changes its weights in one step")
    torch.manual_seed(0)
    model = space.build(arch).eval()  # the same weights as any other build with this seed
    try:
        graph = export_onnx(model, tuple(x.shape[1:]))
        got = ort.InferenceSession(graph, providers=["CPUExecutionProvider"]).run(None, {INPUT_NAME: x.numpy()})[0]
    except Exception as exc:
        raise SpaceCheckError(f"{where}: ONNX export or onnxruntime fails: {type(exc).__name__}: {exc}") from exc
    with torch.no_grad():
        want = model(x).numpy()
    _require(np.allclose(got, want, atol=1e-4), where, "runs under onnxruntime as it runs under torch")
    return sum(p.numel() for p in model.parameters()), want
