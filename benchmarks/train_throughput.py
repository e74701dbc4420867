"""Training throughput: the edgenas trainer vs plain DataLoader loops, same children, same data.

Baselines (each one the same SGD + one-cycle recipe, batch 64, per-batch `.to(device)`):
- "torchvision ImageFolder" (folder datasets only): what a user writes without edgenas --
  `torchvision.datasets.ImageFolder(ROOT, transform=Compose([ToTensor(), Normalize(mean, std)]))`
  restricted to exactly the training images edgenas uses, `DataLoader(..., shuffle=True)` with
  default settings (num_workers=0). Decodes every JPEG every epoch.
- "DataLoader(TensorDataset)": a DataLoader over the already-decoded, normalised tensors (the
  part of the gain that is only the hot loop, without decoding).
edgenas: edgenas.training.trainer.train_child (the whole dataset on the device, indexed batches,
channels_last, bf16 autocast on CUDA); its one-time decode is cached on disk per run and reported
separately. Every path gets one warm-up epoch first; then each child is trained by each path
for the same epochs in this process, `--reps` times interleaved, and the ratios of the median
images/s are printed per child.

    python benchmarks/train_throughput.py --dataset folder:/tmp/data/cifar10-jpg-train --max-images 5000
    python benchmarks/train_throughput.py                     # digits (8x8; no decoding to save)
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch
import torch.nn.functional as F


def baseline_loop(model, loader, epochs, steps_per_epoch, lr, device, seed):
    torch.manual_seed(seed)
    model.to(device)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps_per_epoch)
    model.train()
    for _ in range(epochs):
        for xb, yb in loader:
            xb, yb = xb.to(device), yb.to(device)
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    if device.type == "cuda":
        torch.cuda.synchronize()


def image_folder_loader(root, data, seed, max_images, batch_size):
    """torchvision's ImageFolder over exactly the training images edgenas uses (same split code)."""
    import torchvision
    from torch.utils.data import DataLoader, Subset
    from torchvision import transforms

    from edgenas.training.data import _split, _subset

    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize(data.mean, data.std)])
    ds = torchvision.datasets.ImageFolder(root, transform=tf)
    y = np.asarray(ds.targets)
    keep = _subset(y, max_images, seed) if max_images else np.arange(len(y))
    train, _, _ = _split(len(keep), y[keep], 0.1, 0.1, seed)
    subset = Subset(ds, keep[train].tolist())
    assert len(subset) == len(data.y_train), (len(subset), len(data.y_train))
    return DataLoader(subset, batch_size=batch_size, shuffle=True)


def children(space_cls, shape, classes):
    from edgenas.spaces.layerwise import Layer, LayerwiseArch

    space = space_cls(shape, classes)
    archs = {
        "small (4 layers, 24-48 ch)": LayerwiseArch(
            (Layer(24, 3, 1, ()), Layer(24, 3, 2, (0,)), Layer(48, 3, 1, (1,)), Layer(48, 3, 2, (2,)))
        ),
        "medium (4 layers, 32-64 ch, skips)": LayerwiseArch(
            (Layer(32, 3, 1, ()), Layer(64, 3, 2, (0,)), Layer(64, 3, 1, (1,)), Layer(64, 3, 2, (1, 2)))
        ),
    }
    out = []
    for name, arch in archs.items():
        params = sum(p.numel() for p in space.build(arch).parameters())
        out.append((f"{name}, {params:,} params", lambda a=arch: space.build(a)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="digits", help="digits, or folder:PATH (e.g. the CIFAR-10 ImageFolder)")
    ap.add_argument("--max-images", type=int, default=None)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--reps", type=int, default=3, help="interleaved repetitions per path (median reported)")
    args = ap.parse_args()
    from torch.utils.data import DataLoader, TensorDataset

    from edgenas.spaces.layerwise import LayerwiseSpace
    from edgenas.training.data import load_dataset
    from edgenas.training.trainer import TrainRecipe, resolve_device, train_child

    t0 = time.perf_counter()
    data = load_dataset(args.dataset, 0.1, 0.1, 0, max_images=args.max_images)
    load_s = time.perf_counter() - t0
    device = resolve_device(args.device)
    batch, lr = 64, 0.05
    n = len(data.y_train)
    steps = math.ceil(n / batch)
    loaders = {
        "DataLoader(TensorDataset)": DataLoader(
            TensorDataset(data.x_train, data.y_train), batch_size=batch, shuffle=True
        )
    }
    if args.dataset.startswith("folder:"):
        loaders = {
            "torchvision ImageFolder": image_folder_loader(
                args.dataset.split(":", 1)[1], data, 0, args.max_images, batch
            ),
            **loaders,
        }
    recipe = TrainRecipe(epochs=args.epochs, batch_size=batch, learning_rate=lr)
    print(
        f"dataset {data.name} {data.input_shape}, {n} training images, {args.epochs} epochs, device {device}, "
        f"torch threads {torch.get_num_threads()}; edgenas load (decode or disk cache + split + normalise): {load_s:.1f} s"
    )
    for child_name, build in children(LayerwiseSpace, data.input_shape, data.num_classes):
        # warm-up: one epoch per path
        train_child(build(), data.x_train, data.y_train, None, None, TrainRecipe(epochs=1), 0, device)
        for loader in loaders.values():
            baseline_loop(build(), loader, 1, steps, lr, device, 0)
        runs: dict[str, list[float]] = {name: [] for name in ("edgenas trainer", *loaders)}
        for _ in range(args.reps):  # interleaved repetitions; the median is robust to a noisy host
            for name in runs:
                torch.manual_seed(0)
                model = build()
                t0 = time.perf_counter()
                if name == "edgenas trainer":
                    train_child(model, data.x_train, data.y_train, None, None, recipe, 0, device)
                else:
                    baseline_loop(model, loaders[name], args.epochs, steps, lr, device, 0)
                runs[name].append(n * args.epochs / (time.perf_counter() - t0))
        ips = {name: float(np.median(v)) for name, v in runs.items()}
        print(f"child {child_name}")
        for name, v in ips.items():
            ratio = "" if name == "edgenas trainer" else f"   edgenas / this = {ips['edgenas trainer'] / v:.2f}x"
            spread = f"(runs {', '.join(f'{r:.0f}' for r in runs[name])})"
            print(f"  {name:>26}: {v:9.0f} images/s {spread}{ratio}")


if __name__ == "__main__":
    main()
