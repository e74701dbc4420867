"""The weight-sharing evaluator (`--executor supernet`, mobile space): Once-for-All's idea at our
scale. One supernet of the mobile space (`spaces.mobile_supernet`) is trained once per dataset,
space and recipe with the sandwich rule (each batch trains the largest subnetwork on the labels,
the smallest and two random ones on the largest's predictions: BigNAS's in-place distillation;
their losses summed), or with progressive shrinking (`--supernet-rule progressive`, Once-for-All's
order: the first fifth of the epochs trains the largest network alone, then kernel sizes and
squeeze-excite, depth, expansion and at last width and head become elastic, a fifth each, each
phase with its own cosine learning-rate schedule from the recipe's rate; each
batch then trains one subnetwork drawn from the part of the space opened so far on the labels and
the largest's predictions, the largest itself only through the weights they share: about half the
sandwich rule's cost per epoch); then every
candidate is scored in seconds with the
weights it inherits: written into its stand-alone network, BatchNorm statistics recalibrated on
training images, validation accuracy measured. The search's gates (parameters, RAM / flash,
latency, energy) apply as for any child, and `edgenas export` trains the winner stand-alone with
the final recipe.

The trained supernet is kept under RUNS_DIR/.supernets/ by a digest of what it depends on (the
dataset, the space, the training recipe, supernet_epochs, the seed), so a later search on the same
data and space (another profile, other limits) reuses it and trains nothing again. Training
writes a checkpoint after every epoch (atomically), and a search killed during it continues from
the last one: the same supernet as an uninterrupted run (each epoch's order and sampled
subnetworks come from (seed, epoch) alone).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from edgenas.errors import ConfigError
from edgenas.evaluators.base import EVALUATORS, Evaluator, EvaluatorContext, TrainJob, TrainOutcome
from edgenas.fsutil import atomic_write_bytes

CALIBRATION_BATCHES = 8  # batches of training images that recalibrate a subnetwork's BatchNorm
# In-place distillation (BigNAS): the largest subnetwork learns from the labels, the others from
# its (detached) predictions. benchmarks/supernet_ranking.py --no-distill measures without it.
DISTILL = True


# progressive shrinking's phases, in Once-for-All's order: what is elastic from each fifth of the epochs on
PHASES = ((), ("kernel", "se"), ("kernel", "se", "depth"), ("kernel", "se", "depth", "expansion"), None)  # None: all


def _sample(space: Any, rng: np.random.Generator) -> Any:
    """A subnetwork drawn uniformly decision by decision."""
    from edgenas.controllers.base import complete_uniformly

    return space.decode(complete_uniformly(space, [], rng))


def _phase_starts(epochs: int) -> list[int]:
    """The first epoch of each phase of progressive shrinking (floor(epochs * p / 5)), then `epochs`."""
    return [epochs * p // len(PHASES) for p in range(len(PHASES))] + [epochs]


def phase(epoch: int, epochs: int) -> int:
    """Progressive shrinking's phase of `epoch`: phase p starts at epoch floor(epochs * p / 5), so a
    run of any length ends in the last phase (the whole space) and 1 epoch is the sandwich rule."""
    return max(p for p, start in enumerate(_phase_starts(epochs)[:-1]) if start <= epoch)


def _sample_part(space: Any, rng: np.random.Generator, elastic: tuple[str, ...]) -> Any:
    """A subnetwork of the part of the space where only the `elastic` dimensions vary (of kernel, se,
    depth, expansion; width and head stay elastic only in the last phase, drawn by `_sample`), the
    others at the supernet's largest, drawn uniformly there."""
    from edgenas.spaces.mobile import MobileArch, MobileBlock, MobileStage

    def pick(options: Any, free: bool) -> Any:
        options = sorted(options)
        return options[int(rng.integers(len(options)))] if free else options[-1]

    kinds = {k.name: k.options for k in space.kinds}
    size, stages = min(space.input_shape[1:]), []
    for stride in space.strides():
        size = -(-size // stride)
        kernels = [k for k in kinds["kernel"] if k // 2 < size or k == min(kinds["kernel"])]
        depth = pick(kinds["depth"], "depth" in elastic)
        blocks = tuple(
            MobileBlock(
                pick(kernels if "kernel" in elastic else kinds["kernel"], "kernel" in elastic),
                pick(kinds["expansion"], "expansion" in elastic),
                bool(pick((False, True), "se" in elastic)),
            )  # fmt: skip
            for _ in range(depth)
        )
        stages.append(MobileStage(max(kinds["width"]), blocks))
    return MobileArch(tuple(stages), max(space.heads))


@EVALUATORS.register
class SupernetEvaluator(Evaluator):
    name = "supernet"
    inherits = True  # candidates are scored with inherited weights: nothing is trained per child

    @classmethod
    def check(cls, pipeline: Any, space: Any) -> None:
        from edgenas.spaces.mobile import MobileSpace

        if not isinstance(space, MobileSpace):
            name = getattr(space, "name", "?")
            raise ConfigError(
                f"--executor supernet shares weights among networks of the mobile space; this search's space is "
                f"'{name}'. Use --space mobile, or another executor"
            )
        if pipeline.search.fidelity != "none" or pipeline.search.early_stopping != "none":
            raise ConfigError(
                "--executor supernet scores networks without training them: --fidelity and --early-stopping do not "
                "apply; leave them at none"
            )

    @classmethod
    def from_context(cls, context: EvaluatorContext) -> "SupernetEvaluator":
        from edgenas.settings.pipeline import Pipeline

        cls.check(Pipeline.from_json(context.pipeline_json, "executor"), context.space)
        return cls(context.pipeline_json, context.threads_per_job)

    def __init__(self, pipeline_json: dict[str, Any], threads: int) -> None:
        self.pipeline_json, self.threads = pipeline_json, threads
        self.net: Any = None

    # -- the supernet, trained once ----------------------------------------------------------
    def digest(self) -> str:
        """What the trained supernet depends on, hashed: a change to any of it trains a new one."""
        from edgenas.evaluators.jobs import WORKER
        from edgenas.run.rundir import describe_dataset

        p = self.pipeline_json
        basis = {
            "dataset": describe_dataset(WORKER["data"]),
            "space": p.get("space"),
            "training": p.get("training"),
            "epochs": p["search"].get("supernet_epochs"),
            "seed": p["search"].get("seed"),
            "format": 2,  # 2: in-place distillation
            "distill": DISTILL,
        }
        if self.rule() != "sandwich":  # the sandwich rule's digests stay as they were before there was a choice
            basis["rule"] = self.rule()
        return hashlib.sha256(json.dumps(basis, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def rule(self) -> str:
        """How the supernet trains: sandwich, or progressive (shrinking)."""
        return self.pipeline_json["search"].get("supernet_rule") or "sandwich"

    def path(self) -> Path:
        return Path(self.pipeline_json["search"]["runs_dir"]) / ".supernets" / f"mobile-{self.digest()}.pt"

    def trained(self) -> Any:
        from edgenas.evaluators.jobs import WORKER
        from edgenas.spaces.mobile_supernet import ElasticMobileNet

        space, device = WORKER["space"], WORKER["device"]
        with torch.random.fork_rng(devices=[]):  # the same initial weights whatever ran before
            torch.manual_seed(int(self.pipeline_json["search"].get("seed") or 0))
            net = ElasticMobileNet(space).to(device)
        final = self.path()
        if final.is_file():
            net.load_state_dict(torch.load(final, map_location=device, weights_only=True))
            print(f"supernet: trained by an earlier search with these settings, reused ({final})", file=sys.stderr,
                  flush=True)  # fmt: skip
            return net
        final.parent.mkdir(parents=True, exist_ok=True)
        partial = final.with_suffix(".partial.pt")
        epochs = int(self.pipeline_json["search"].get("supernet_epochs") or 1)
        recipe = WORKER["pipeline"].training
        opt = torch.optim.SGD(net.parameters(), lr=recipe.learning_rate, momentum=recipe.momentum,
                              weight_decay=recipe.weight_decay, nesterov=recipe.momentum > 0)  # fmt: skip
        start = 0
        if partial.is_file():
            state = torch.load(partial, map_location=device, weights_only=True)
            net.load_state_dict(state["net"])
            opt.load_state_dict(state["optimizer"])
            start = int(state["epoch"])
        print(f"supernet: training {epochs} epochs ({'progressive shrinking' if self.rule() == 'progressive' else 'sandwich rule'})"
              f" on {len(WORKER['data'].y_train):,} images"
              + (f", from epoch {start + 1} (the earlier epochs were kept)" if start else "")
              + "; once: later searches with the same data, space, recipe and seed reuse it, for any profile or limit",
              file=sys.stderr, flush=True)  # fmt: skip
        t0 = time.perf_counter()
        for epoch in range(start, epochs):
            loss = self._epoch(net, opt, epoch, epochs)
            buf = io.BytesIO()
            torch.save({"net": net.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch + 1}, buf)
            atomic_write_bytes(partial, buf.getvalue(), fault_point="supernet-epoch")
            left = (time.perf_counter() - t0) / (epoch + 1 - start) * (epochs - epoch - 1)
            print(f"supernet: epoch {epoch + 1}/{epochs}, loss {loss:.4f}"
                  + (f", about {left:.0f} s left" if left < 90 else f", about {left / 60:.0f} min left") * (left > 0) + f" ({final})",
                  file=sys.stderr, flush=True)  # fmt: skip
        buf = io.BytesIO()
        torch.save(net.state_dict(), buf)
        atomic_write_bytes(final, buf.getvalue())
        partial.unlink(missing_ok=True)
        return net

    def _epoch(self, net: nn.Module, opt: torch.optim.Optimizer, epoch: int, epochs: int) -> float:
        """One epoch of the rule (sandwich, or progressive shrinking's phase of this epoch); its order,
        augmentation and subnetworks from (seed, epoch) alone."""
        from edgenas.evaluators.jobs import WORKER
        from edgenas.training.trainer import augment_batch

        data, space, device, recipe = WORKER["data"], WORKER["space"], WORKER["device"], WORKER["pipeline"].training
        seed = int(self.pipeline_json["search"].get("seed") or 0)
        gen = torch.Generator().manual_seed(seed * 100_003 + epoch)
        rng = np.random.default_rng([seed, epoch])
        progressive, now = self.rule() == "progressive", phase(epoch, epochs)
        elastic = PHASES[now]
        # the cosine schedule's span: the run, or (progressive) this epoch's phase
        start, end = _phase_starts(epochs)[now : now + 2] if progressive else (0, epochs)
        for group in opt.param_groups:  # cosine schedule, set per epoch (nothing else to restore on resume)
            group["lr"] = recipe.learning_rate * 0.5 * (1 + math.cos(math.pi * (epoch - start) / (end - start)))
        net.train()
        order = torch.randperm(len(data.y_train), generator=gen)
        total, steps = 0.0, 0
        for i in range(0, len(order), recipe.batch_size):
            idx = order[i : i + recipe.batch_size]
            x = augment_batch(data.x_train[idx], recipe.crop_padding, recipe.horizontal_flip, gen).to(device)
            y = data.y_train[idx].to(device)
            opt.zero_grad()
            if not progressive:  # the sandwich rule
                archs = [space.smallest(), _sample(space, rng), _sample(space, rng)]
                big = net(x, net.largest())
                target = big.detach().softmax(1) if DISTILL else y
                loss = F.cross_entropy(big, y) + sum(F.cross_entropy(net(x, a), target) for a in archs)
                loss.backward()
                total += float(loss.detach()) / (1 + len(archs))
            elif elastic == ():  # progressive shrinking's first phase: the largest network alone
                loss = F.cross_entropy(net(x, net.largest()), y)
                loss.backward()
                total += float(loss.detach())
            else:  # one subnetwork of the part opened so far: the labels, and the largest's predictions
                sub = _sample(space, rng) if elastic is None else _sample_part(space, rng, elastic)
                out = net(x, sub)
                loss = F.cross_entropy(out, y)
                if DISTILL:  # (the labels too: distilled alone, the shared weights drift to a constant output)
                    with torch.no_grad():
                        target = net(x, net.largest()).softmax(1)
                    loss = loss + F.cross_entropy(out, target)
                loss.backward()
                total += float(loss.detach()) / (1 + DISTILL)
            opt.step()
            steps += 1
        return total / max(1, steps)

    def warm_up(self) -> None:
        """The supernet, trained (or read from RUNS_DIR/.supernets) before the search's clock starts."""
        from edgenas.evaluators.jobs import setup

        if self.net is None:
            setup(self.pipeline_json, self.threads, None)
            self.net = self.trained()

    # -- scoring candidates --------------------------------------------------------------------
    def run(self, jobs: Iterable[TrainJob]) -> Iterator[TrainOutcome]:
        from edgenas.evaluators.jobs import WORKER

        self.warm_up()
        for job in jobs:
            if job.not_after is not None and time.time() > job.not_after:
                yield TrainOutcome(job.key, False, not_started=True)
                continue
            t0 = time.perf_counter()
            try:
                acc, model = self.score(WORKER["space"].arch_from_json(job.arch), job.seed)
            except Exception as exc:  # a bad candidate is a failed child, never a dead search
                yield TrainOutcome(job.key, False, error=f"{type(exc).__name__}: {exc}")
                continue
            state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            yield TrainOutcome(job.key, True, acc, time.perf_counter() - t0, state, curve=(acc,))

    def score(self, arch: Any, seed: int) -> tuple[float, nn.Module]:
        """Validation accuracy of `arch` with inherited weights, BatchNorm recalibrated on
        CALIBRATION_BATCHES batches of training images (chosen by `seed`)."""
        from edgenas.evaluators.jobs import WORKER
        from edgenas.spaces.mobile_supernet import extract
        from edgenas.training.trainer import accuracy

        data, device, batch = WORKER["data"], WORKER["device"], WORKER["pipeline"].training.batch_size
        model = extract(self.net, arch).to(device)
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.reset_running_stats()
                m.momentum = None  # a cumulative average over the calibration batches
        gen = torch.Generator().manual_seed(seed)
        idx = torch.randperm(len(data.y_train), generator=gen)[: CALIBRATION_BATCHES * batch]
        model.train()
        with torch.no_grad():
            for i in range(0, len(idx), batch):
                model(data.x_train[idx[i : i + batch]].to(device))
        model.eval()
        with torch.no_grad():
            acc = accuracy(model, data.x_val.to(device), data.y_val.to(device))
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.momentum = 0.1
        return acc, model.cpu()
