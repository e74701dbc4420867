"""Quality on real photos: the searched winner against hand-designed edge networks.

One dataset (a stratified subset of the CIFAR-10 JPEGs, split as `pipelines/photos.toml` says:
70 / 10 / 20 train / validation / test), one recipe (the photos pipeline's [final_training]:
random crops and flips on the device, label smoothing, EMA of the weights), one trainer.

Phases (each resumable: results are appended to --out, a JSON file, and finished rows are kept):

- `references`: ResNet-8 (MLPerf Tiny's image-classification topology: 16-32-64 channels,
  ~78k params), a MobileNetV2-style network scaled under the budget (inverted residuals,
  expansion 6, 3x3 depthwise; a point of `--space mobile`) and the 4-layer VGG-style network the
  earlier version of this benchmark used. Each is trained exactly as `edgenas export` trains a
  winner (train + validation, the final recipe, the same seed rule), scored once on the test split.
- `search`: `edgenas search` through the product's own code path (the photos pipeline, --space,
  the multi-fidelity schedule, --budget, --profile cpu-arm, --max-minutes; with `--start
  MobileNetV2-style`, that reference is the first network the search evaluates), then `edgenas
  export --int8` of its winner (the same final training as the references).
- `latency`: every row's `cpu-arm` latency again, `--latency-reps` rounds side by side (fresh
  measurer, no cache, every row in each round), with each row's median ratio to the
  MobileNetV2-style network per round: depthwise networks are timed on this host (outside the Pi 5
  fit), and one such measurement moves by tens of percent on a shared VM.
- `replicate`: one network (`--replicate NAME`, a reference's name or a mobile-space key) trained
  again exactly as the `references` phase trains, with another training seed
  (`--train-seed S`: initialisation and batch order; same data and split), scored on the test split:
  how much of a difference between two rows one training run's luck can make. Results go to
  `replicates` in --out.
- `table`: every row side by side: test accuracy (fp32 and int8), params, MACs, `cpu-arm`
  latency (Pi 5 prediction; `~` outside the calibration's fit), int8 model size, and compute
  (CPU minutes: wall seconds x torch threads; the search row adds its search).

    tar xzf ../shared/data/cifar10-jpg-train.tar.gz -C /tmp/data
    python benchmarks/cifar_quality.py --data /tmp/data/cifar10-jpg-train --max-images 12500 \
        --phase references --out cifar.json
    python benchmarks/cifar_quality.py --data /tmp/data/cifar10-jpg-train --max-images 12500 \
        --phase search --max-minutes 60 --runs-dir runs-cifar --out cifar.json
    python benchmarks/cifar_quality.py --out cifar.json --phase latency --latency-reps 7
    python benchmarks/cifar_quality.py --out cifar.json --phase table
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn as nn


class BasicBlock(nn.Module):
    """ResNet basic block as MLPerf Tiny's ResNet-8 has it (1x1 projection when the shape changes)."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = (
            nn.Identity()
            if stride == 1 and c_in == c_out
            else nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


def resnet8(in_channels: int, num_classes: int) -> nn.Module:
    """MLPerf Tiny image classification reference: stem 16, stacks 16 / 32 (s2) / 64 (s2), pool, dense."""
    return nn.Sequential(
        nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        BasicBlock(16, 16, 1),
        BasicBlock(16, 32, 2),
        BasicBlock(32, 64, 2),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(64, num_classes),
    )


def references(input_shape, num_classes):
    """name -> (builder, description). The MobileNetV2 and VGG networks are points of edgenas's own
    spaces (mobile, layerwise), built by their builders."""
    from edgenas.spaces.layerwise import Layer, LayerwiseArch, LayerwiseSpace
    from edgenas.spaces.mobile import MobileArch, MobileBlock, MobileSpace, MobileStage

    mobile = MobileSpace(input_shape, num_classes)

    def ir(t: int) -> MobileBlock:
        return MobileBlock(3, t, False)

    mbv2 = MobileArch(
        (
            MobileStage(16, (ir(1),)),
            MobileStage(24, (ir(6), ir(6))),
            MobileStage(32, (ir(6), ir(6), ir(6))),
            MobileStage(64, (ir(6), ir(6))),
        )
    )
    layerwise = LayerwiseSpace(input_shape, num_classes)
    vgg = LayerwiseArch((Layer(32, 3, 1, ()), Layer(64, 3, 2, (0,)), Layer(64, 3, 1, (1,)), Layer(128, 3, 2, (2,))))
    return {
        "ResNet-8 (MLPerf Tiny)": (lambda: resnet8(input_shape[0], num_classes), "16-32-64 basic blocks"),
        "MobileNetV2-style": (lambda: mobile.build(mbv2), str(mbv2)),
        "VGG-style 4-layer": (lambda: layerwise.build(vgg), str(vgg)),
    }


def network(name: str, shape, classes) -> nn.Module:
    """A table row's network, freshly initialised: a reference by its name, else a mobile-space key."""
    from edgenas.spaces.mobile import MobileSpace

    refs = references(shape, classes)
    if name in refs:
        return refs[name][0]()
    space = MobileSpace(shape, classes)
    return space.build(space.parse(name.removeprefix("mobile|")))


def train_final(build, seed: int, data, pipe):
    """`build()` initialised under `seed` and trained as `edgenas export` trains a winner: train +
    validation, the pipeline's final recipe. Returns the model and the trainer's result."""
    from edgenas.training.trainer import resolve_device, train_child

    x_all, y_all = torch.cat([data.x_train, data.x_val]), torch.cat([data.y_train, data.y_val])
    recipe, device = pipe.final_training, resolve_device(pipe.search.device)
    torch.manual_seed(seed)
    model = build()
    print(f"training {recipe.epochs} epochs on {len(y_all)} images ({device}) ...", flush=True)
    return model, train_child(model, x_all, y_all, None, None, recipe, seed, device)


def load_results(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {"rows": {}}


def save_results(path: Path, results: dict) -> None:
    from edgenas.fsutil import atomic_write_json

    atomic_write_json(path, results)


def pipeline_for(args):
    from edgenas.settings.pipeline import load_pipeline

    pipe = load_pipeline(args.pipeline).override(
        "dataset", name=f"folder:{args.data}", max_images=args.max_images, split_seed=args.split_seed
    )
    if args.final_epochs:
        pipe = pipe.override("final_training", epochs=args.final_epochs)
    return pipe


def describe(model: nn.Module, data, profile, seed: int, images: int = 512) -> dict:
    """params, MACs, cpu-arm latency and the int8 model's size and test accuracy of a trained model."""
    import onnxruntime as ort

    from edgenas.hardware.cost import static_cost
    from edgenas.hardware.latency import measure_latency, outside_fit_note
    from edgenas.hardware.onnx import INPUT_NAME, export_onnx, onnx_logits
    from edgenas.hardware.quantize import batched_feeds, calibration_images, quantize_int8

    model.eval()
    cost = static_cost(model, data.input_shape)
    graph = export_onnx(model, data.input_shape)
    lat = measure_latency(graph, profile)
    int8 = quantize_int8(graph, batched_feeds(calibration_images(data.x_train, images, seed), INPUT_NAME))
    session = ort.InferenceSession(int8, providers=["CPUExecutionProvider"])
    preds = onnx_logits(session, data.x_test.cpu()).argmax(1)
    return {
        "params": cost.params,
        "macs": cost.macs,
        "latency_ms": lat.median_ms,
        "latency_outside_fit": bool(outside_fit_note(lat)),
        "int8_bytes": len(int8),
        "int8_test_accuracy": float((preds == data.y_test.cpu().numpy()).mean()),
    }


def phase_references(args, out: Path) -> None:
    from edgenas.evaluate import child_seed
    from edgenas.hardware.profiles import load_profile
    from edgenas.training.data import load_pipeline_dataset
    from edgenas.training.trainer import accuracy

    pipe = pipeline_for(args)
    data = load_pipeline_dataset(pipe)
    profile = load_profile("cpu-arm")
    results = load_results(out)
    results["dataset"] = {
        "max_images": args.max_images,
        "train": len(data.y_train),
        "val": len(data.y_val),
        "test": len(data.y_test),
    }
    recipe = pipe.final_training
    for name, (build, text) in references(data.input_shape, data.num_classes).items():
        if name in results["rows"] and results["rows"][name].get("epochs") == recipe.epochs:
            print(f"{name}: kept from {out}")
            continue
        seed = child_seed(pipe.search.seed, name)
        print(f"{name}: ", end="")
        model, trained = train_final(build, seed, data, pipe)
        row = {
            "kind": "reference",
            "architecture": text,
            "epochs": recipe.epochs,
            "test_accuracy": accuracy(model, data.x_test, data.y_test),
            "train_seconds": trained.train_seconds,
            "cpu_minutes": trained.train_seconds * torch.get_num_threads() / 60,
            **describe(model, data, profile, seed),
        }
        results["rows"][name] = row
        save_results(out, results)
        print(f"{name}: test {100 * row['test_accuracy']:.2f} %, {row['params']:,} params", flush=True)


def phase_replicate(args, out: Path) -> None:
    from edgenas.evaluate import child_seed
    from edgenas.hardware.cost import static_cost
    from edgenas.training.data import load_pipeline_dataset
    from edgenas.training.trainer import accuracy

    pipe = pipeline_for(args)
    data = load_pipeline_dataset(pipe)
    name = args.replicate
    print(f"{name} (training seed {args.train_seed}): ", end="")
    model, trained = train_final(
        lambda: network(name, data.input_shape, data.num_classes), child_seed(args.train_seed, name), data, pipe
    )
    row = {
        "network": name,
        "train_seed": args.train_seed,
        "epochs": pipe.final_training.epochs,
        "test_accuracy": accuracy(model, data.x_test, data.y_test),
        "params": static_cost(model, data.input_shape).params,
        "train_seconds": trained.train_seconds,
    }
    results = load_results(out)
    results.setdefault("replicates", {})[f"{name} | seed {args.train_seed}"] = row
    save_results(out, results)
    print(f"{name} (training seed {args.train_seed}): test {100 * row['test_accuracy']:.2f} %", flush=True)


def phase_search(args, out: Path) -> None:
    """The search and the export as a user runs them: the `edgenas` CLI, in a subprocess."""
    import subprocess
    import sys

    if args.final_epochs:  # before an hour of search, not after it
        raise SystemExit("--final-epochs applies to references only; the search's pipeline file sets the export's")
    results = load_results(out)
    budget, max_latency_ms = args.budget, args.max_latency_ms
    if args.limits_of:  # the reference's own size and speed as the device's limits
        ref = results["rows"].get(args.limits_of)
        if ref is None:
            raise SystemExit(f"--limits-of {args.limits_of!r}: no such row in {out}; run --phase references first")
        budget, max_latency_ms = ref["params"], round(ref["latency_ms"], 3)
    path = ("plain" if args.plain else f"pipeline {args.pipeline}") + (
        f", {args.executor} executor" if args.executor else ""
    )
    row = args.row or f"edgenas, {path}, seed {args.seed}"
    name = "cifar-quality" if row == "edgenas winner" else "cq-" + "".join(c if c.isalnum() else "-" for c in row)
    run_dir = Path(args.runs_dir) / name
    search = [sys.executable, "-m", "edgenas", "search"] + ([] if args.plain else ["--pipeline", args.pipeline])
    search += [
        "--dataset", f"folder:{args.data}", "--max-images", str(args.max_images),
        "--budget", str(budget), "--profile", "cpu-arm", "--seed", str(args.seed),
        "--max-minutes", str(args.max_minutes), "--runs-dir", args.runs_dir,
    ]  # fmt: skip
    children = args.children if args.children is not None else (None if args.plain else 400)
    if children:  # 400 (bounded by --max-minutes) is what the recorded pipeline-file searches ran with
        search += ["--children", str(children)]
    if args.executor:
        search += ["--executor", args.executor]
    if args.space:
        search += ["--space", args.space]
    if args.search_epochs:
        search += ["--epochs", str(args.search_epochs)]
    if max_latency_ms:
        search += ["--max-latency-ms", str(max_latency_ms)]
    if args.fidelity:
        search += [
            "--fidelity",
            args.fidelity,
            "--min-epochs",
            str(args.min_epochs),
            "--reduction",
            str(args.reduction),
        ]
    for name in args.start:  # a reference of the mobile space as the search's first network
        search += ["--start", "mobile|" + references((3, 32, 32), 10)[name][1]]  # the text is shape-free
    search += [a for arg in args.search_arg for a in arg.split()]  # anything else, as typed
    search += ["--resume", str(run_dir)] if run_dir.is_dir() else ["--name", name]
    print("$", " ".join(search[2:]), flush=True)
    t0 = time.perf_counter()
    subprocess.run(search, check=True)
    search_s = time.perf_counter() - t0
    if (run_dir / "search_seconds").is_file():  # an earlier, interrupted part of the same search
        search_s += float((run_dir / "search_seconds").read_text())
    export = [sys.executable, "-m", "edgenas", "export", str(run_dir), "--int8", "--max-int8-drop", "1.0"]
    print("$", " ".join(export[2:]), flush=True)
    t0 = time.perf_counter()
    subprocess.run(export, check=True)
    export_s = time.perf_counter() - t0
    from edgenas.hardware.latency import outside_fit_note

    m = json.loads((run_dir / "bundle" / "manifest.json").read_text())
    manifest = json.loads((run_dir / "manifest.json").read_text())
    fp32, int8 = m["models"]["fp32"], m["models"]["int8"]
    results = load_results(out)
    threads = torch.get_num_threads()
    results["rows"][row] = {
        "kind": "search",
        "path": path,
        "seed": args.seed,
        "architecture": manifest["winner"]["arch_key"],
        "epochs": m["final_training"]["epochs"],
        "test_accuracy": m["test_accuracy"],
        "params": m["params"],
        "macs": m["macs"],
        "latency_ms": fp32["latency"]["median_ms"],
        "latency_outside_fit": bool(outside_fit_note(fp32["latency"])),
        "int8_bytes": int8["bytes"],
        "int8_test_accuracy": int8["test_accuracy"],
        "search_seconds": search_s,
        "export_seconds": export_s,
        "cpu_minutes": (search_s + export_s) * threads / 60,
        "counts": manifest["search"].get("counts") or {k: manifest["search"].get(k) for k in ("trained", "rejected")},
        "command": " ".join(search[2:]),
    }
    sizes = manifest["dataset"]["sizes"]  # the search's own split (a results file of its own has no other)
    results.setdefault("dataset", {"max_images": args.max_images, **{k: sizes[k] for k in ("train", "val", "test")}})
    save_results(out, results)


def phase_latency(args, out: Path) -> None:
    """Every row's `cpu-arm` latency again, side by side: `--latency-reps` rounds, each a fresh
    measurer without the cache timing every row in turn, so a change of the host's speed between
    rounds hits all rows alike. Depthwise networks are outside the Pi 5 fit, so their number is
    this host's time x one factor, and one measurement of it moves by tens of percent on a shared
    VM: the bar's "no higher latency than the reference" is decided on the per-round ratio."""
    import statistics

    from edgenas.hardware.latency import Measurer
    from edgenas.hardware.onnx import export_onnx
    from edgenas.hardware.profiles import load_profile

    results = load_results(out)
    shape, classes = (3, 32, 32), 10
    refs = references(shape, classes)
    graphs = {  # a searched winner is built from its mobile-space key
        name: export_onnx(network(name if name in refs else r["architecture"], shape, classes).eval(), shape)
        for name, r in results["rows"].items()
    }
    profile = load_profile("cpu-arm")
    rounds: dict[str, list[float]] = {name: [] for name in graphs}
    for _ in range(args.latency_reps):
        measurer = Measurer(use_cache=False)
        for name, graph in graphs.items():
            rounds[name].append(measurer.measure(graph, profile).median_ms)
        measurer.close()
    base = "MobileNetV2-style"
    print(f"cpu-arm latency, {args.latency_reps} rounds side by side (no cache), ratio to {base} per round:")
    for name, ms in rounds.items():
        ratio = statistics.median(a / b for a, b in zip(ms, rounds[base], strict=True))
        results["rows"][name]["latency_side_by_side_ms"] = ms
        results["rows"][name]["latency_ratio_to_mobilenetv2"] = ratio
        print(
            f"  {name:32s} median {statistics.median(ms):.3f} ms (min {min(ms):.3f}, max {max(ms):.3f}); "
            f"median ratio {ratio:.3f}"
        )
    save_results(out, results)


def spread(values: list[float], digits: int) -> str:
    """'mean ± sd (min-max)' of several seeds' values (sd: the sample standard deviation)."""
    import statistics

    return (f"{statistics.mean(values):,.{digits}f} ± {statistics.stdev(values):,.{digits}f} "
            f"({min(values):,.{digits}f}-{max(values):,.{digits}f})")  # fmt: skip


def phase_table(out: Path) -> None:
    results = load_results(out)
    ds, rows = results.get("dataset", {}), results.get("rows", {})
    if rows:  # a file of replicates alone has no table
        print(
            f"CIFAR-10 JPEGs, {ds.get('max_images')} images: {ds.get('train')} train / {ds.get('val')} val / "
            f"{ds.get('test')} test; every network trained on train + val with the photos pipeline's final recipe"
        )
        print(
            "| network | test % | int8 test % | params | MACs | cpu-arm ms | int8 KiB | CPU min |\n"
            "|---|---:|---:|---:|---:|---:|---:|---:|"
        )
    for name, r in sorted(rows.items(), key=lambda kv: -kv[1]["test_accuracy"]):
        mark = "~" if r.get("latency_outside_fit") else ""
        print(
            f"| {name} | {100 * r['test_accuracy']:.2f} | {100 * r['int8_test_accuracy']:.2f} | {r['params']:,} | "
            f"{r['macs'] / 1e6:.1f}M | {mark}{r['latency_ms']:.2f} | {r['int8_bytes'] / 1024:.0f} | "
            f"{r['cpu_minutes']:.0f} |"
        )
    groups: dict[str, list[dict]] = {}
    for r in rows.values():
        if "path" in r:
            groups.setdefault(r["path"], []).append(r)
    for path, rs in groups.items():
        if len(rs) > 1:  # several search seeds of one path: mean and spread (sample sd)
            print(f"edgenas, {path}, {len(rs)} seeds ({', '.join(str(r['seed']) for r in rs)}): " + ", ".join(
                f"{label} {spread([r[key] * scale for r in rs], digits)}" for label, key, scale, digits in (
                    ("test %", "test_accuracy", 100, 2), ("params", "params", 1, 0),
                    ("cpu-arm ms", "latency_ms", 1, 2), ("CPU min", "cpu_minutes", 1, 0))))  # fmt: skip
    for name, r in results.get("replicates", {}).items():
        print(f"replicate {name}: test {100 * r['test_accuracy']:.2f} %, {r['params']:,} params")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--phase", choices=("references", "search", "latency", "replicate", "table"), required=True)
    ap.add_argument("--replicate", help="replicate phase: a reference's name or a mobile-space key")
    ap.add_argument("--train-seed", type=int, default=1, help="replicate phase: the training seed")
    ap.add_argument("--latency-reps", type=int, default=7, help="latency phase: rounds of side-by-side timing")
    ap.add_argument("--data", help="CIFAR-10 ImageFolder (the extracted cifar10-jpg-train)")
    ap.add_argument("--out", default="cifar_quality.json", help="results file (JSON), kept between phases")
    ap.add_argument("--pipeline", default="photos")
    ap.add_argument("--max-images", type=int, default=12500)
    ap.add_argument("--final-epochs", type=int, default=0, help="override [final_training] epochs (0: the pipeline's)")
    ap.add_argument("--space", default="", help="search space (default: the pipeline's)")
    ap.add_argument("--children", type=int, default=None, help="search phase: --children (default: 400 with a "
                    "pipeline file, the setup's own with --plain)")  # fmt: skip
    ap.add_argument("--search-epochs", type=int, default=0, help="override [training] epochs (0: the pipeline's)")
    ap.add_argument("--max-minutes", type=float, default=60.0)
    ap.add_argument("--budget", type=int, default=150_000)
    ap.add_argument("--max-latency-ms", type=float, default=0.0, help="the search's hard cpu-arm latency limit")
    ap.add_argument("--fidelity", default="", help="asha (multi-fidelity) or none (default: the pipeline's)")
    ap.add_argument("--min-epochs", type=int, default=1)
    ap.add_argument("--reduction", type=int, default=3)
    ap.add_argument(
        "--start",
        action="append",
        default=[],
        choices=("MobileNetV2-style",),
        help="search phase: evaluate this reference first (--start; the controller goes on from it)",
    )
    ap.add_argument("--row", default="", help="search phase: the table row its result goes to (default: "
                    "'edgenas, <plain or pipeline P>[, <executor> executor], seed S')")  # fmt: skip
    ap.add_argument("--plain", action="store_true", help="search phase: no --pipeline, as a user types the command "
                    "(edgenas chooses the setup for the data)")  # fmt: skip
    ap.add_argument("--executor", default="", help="search phase: --executor (supernet: the weight-sharing path)")
    ap.add_argument("--limits-of", default="", help="search phase: a reference row whose params and cpu-arm "
                    "latency are the search's --budget and --max-latency-ms (the issue's 'the reference's size "
                    "and speed as the device's limits')")  # fmt: skip
    ap.add_argument("--search-arg", action="append", default=[], help="search phase: more `edgenas search` "
                    "options, as typed (repeatable)")  # fmt: skip
    ap.add_argument("--seed", type=int, default=0, help="search phase: the search's --seed")
    ap.add_argument("--split-seed", type=int, default=0, help="references / replicate: the dataset split's seed "
                    "(the photos pipeline's split_seed is 0, so searches of any --seed use the same split)")  # fmt: skip
    ap.add_argument("--runs-dir", default="runs-cifar-quality")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default, the cores)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    if args.phase in ("references", "search", "replicate") and not args.data:
        ap.error("--data is needed for the references, search and replicate phases")
    if args.phase == "replicate" and not args.replicate:
        ap.error("--replicate NAME is needed for the replicate phase")
    if args.phase == "references":
        phase_references(args, out)
    elif args.phase == "search":
        phase_search(args, out)
    elif args.phase == "latency":
        phase_latency(args, out)
    elif args.phase == "replicate":
        phase_replicate(args, out)
    phase_table(out)


if __name__ == "__main__":
    main()
