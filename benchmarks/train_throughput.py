"""Training throughput: the edgenas trainer vs a plain DataLoader loop, same child, same data.

Baseline: torch.utils.data.DataLoader over a TensorDataset (default settings: num_workers=0,
shuffle), per-batch `.to(device)`, the same SGD + one-cycle recipe, contiguous tensors.
edgenas: edgenas.training.trainer.train_child (whole dataset on the device, indexed batches,
channels_last, bf16 autocast on CUDA). Both run the same child architecture for the same epochs
in this process, after one warm-up epoch each; prints images/s and the ratio.

    python benchmarks/train_throughput.py [--dataset digits|cifar10-folder:PATH] [--device auto]
"""

from __future__ import annotations

import argparse
import math
import time

import torch
import torch.nn.functional as F


def baseline_loop(model, x, y, epochs, batch_size, lr, device, seed):
    from torch.utils.data import DataLoader, TensorDataset

    torch.manual_seed(seed)
    model.to(device)
    loader = DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=True)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * math.ceil(len(y) / batch_size))
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="digits", help="digits, or folder:PATH (e.g. the CIFAR-10 ImageFolder)")
    ap.add_argument("--max-images", type=int, default=None)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    from edgenas.spaces.layerwise import Layer, LayerwiseArch, LayerwiseSpace
    from edgenas.training.data import load_dataset
    from edgenas.training.trainer import TrainRecipe, resolve_device, train_child

    data = load_dataset(args.dataset, 0.1, 0.1, 0, max_images=args.max_images)
    device = resolve_device(args.device)
    space = LayerwiseSpace(data.input_shape, data.num_classes)
    arch = LayerwiseArch((Layer(32, 3, 1, ()), Layer(64, 3, 2, (0,)), Layer(64, 3, 1, (1,)), Layer(64, 3, 2, (1, 2))))
    recipe = TrainRecipe(epochs=args.epochs, batch_size=64, learning_rate=0.05)
    n = len(data.y_train)
    # warm-up both paths
    train_child(space.build(arch), data.x_train, data.y_train, None, None, TrainRecipe(epochs=1), 0, device)
    baseline_loop(space.build(arch), data.x_train, data.y_train, 1, 64, 0.05, device, 0)
    results = {}
    for name in ("baseline DataLoader", "edgenas trainer"):
        torch.manual_seed(0)
        model = space.build(arch)
        t0 = time.perf_counter()
        if name == "edgenas trainer":
            train_child(model, data.x_train, data.y_train, None, None, recipe, 0, device)
        else:
            baseline_loop(model, data.x_train, data.y_train, args.epochs, 64, 0.05, device, 0)
        results[name] = n * args.epochs / (time.perf_counter() - t0)
    print(f"dataset {data.name} {data.input_shape}, {n} training images, {args.epochs} epochs, device {device}, "
          f"torch threads {torch.get_num_threads()}")
    for name, ips in results.items():
        print(f"{name:>20}: {ips:10.0f} images/s")
    print(f"ratio edgenas / baseline: {results['edgenas trainer'] / results['baseline DataLoader']:.2f}x")


if __name__ == "__main__":
    main()
