"""Datasets as tensors with a fixed, seeded train / validation / test split.

The test split is only for reporting the final winner; it never enters a reward.
Normalisation statistics come from the train split and travel with the run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch

from edgenas.errors import ConfigError, DataError

if TYPE_CHECKING:
    from edgenas.settings.pipeline import Pipeline


@dataclass
class Dataset:
    name: str
    x_train: torch.Tensor  # float32, N x C x H x W, normalised
    y_train: torch.Tensor  # int64
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: list[str]
    mean: list[float]  # per channel, in the raw pixel scale given by `pixel_scale`
    std: list[float]
    pixel_scale: str  # how raw pixels map to the values normalised by mean/std

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])  # type: ignore[return-value]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.y_train), "val": len(self.y_val), "test": len(self.y_test)}


def _split(n: int, y: np.ndarray, val_fraction: float, test_fraction: float, seed: int):
    """Stratified, seeded split indices (train, val, test)."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(n)
    rest, test = train_test_split(idx, test_size=test_fraction, random_state=seed, stratify=y)
    val_of_rest = val_fraction / (1.0 - test_fraction)
    train, val = train_test_split(rest, test_size=val_of_rest, random_state=seed, stratify=y[rest])
    return np.sort(train), np.sort(val), np.sort(test)


def from_arrays(
    name: str,
    x: np.ndarray,
    y: np.ndarray,
    classes: list[str],
    val_fraction: float,
    test_fraction: float,
    seed: int,
    pixel_scale: str,
    test: tuple[np.ndarray, np.ndarray] | None = None,
    val: tuple[np.ndarray, np.ndarray] | None = None,
) -> Dataset:
    """x: N x C x H x W float in the raw scale; normalised with train-split statistics.

    With `test` (an official test split), only train and validation are cut from x, and
    `val_fraction` is the share of x held out for validation (`test_fraction` is unused).
    With `val` (a given validation split) and no `test`, the test split is cut from x
    (`test_fraction` of it); with both, x is all training data."""
    if val is not None:
        return _with_val(name, x, y, classes, val, test, test_fraction, seed, pixel_scale)
    if test is not None and not 0 < val_fraction < 1:
        raise ConfigError(f"val_fraction ({val_fraction}) must be between 0 and 1")
    if test is None and not (0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ConfigError(
            f"val_fraction ({val_fraction}) and test_fraction ({test_fraction}) must each be "
            "between 0 and 1 and leave room for a train split"
        )
    counts = np.bincount(np.asarray(y, dtype=np.int64), minlength=len(classes))
    need = 3 if test is None else 2  # a stratified split puts each class in every part
    if counts.min() < need:
        few = [f"'{c}' ({n})" for c, n in zip(classes, counts) if n < need]
        raise DataError(
            f"{name}: class(es) {', '.join(few)} have fewer than {need} images; every class needs at least {need} "
            "for the train / validation" + (" / test" if test is None else "") + " split: add images or remove them"
        )
    if test is None:
        train, val, test_idx = _split(len(y), y, val_fraction, test_fraction, seed)
        x_test, y_test = x[test_idx], y[test_idx]
    else:
        from sklearn.model_selection import train_test_split

        train, val = train_test_split(np.arange(len(y)), test_size=val_fraction, random_state=seed, stratify=y)
        train, val = np.sort(train), np.sort(val)
        x_test, y_test = test
    return _normalised(name, (x[train], y[train]), (x[val], y[val]), (x_test, y_test), classes, pixel_scale)


def _normalised(name, train, val, test, classes, pixel_scale) -> Dataset:  # type: ignore[no-untyped-def]
    """The three splits (x, y) normalised with the train split's per-channel statistics."""
    mean = train[0].mean(axis=(0, 2, 3))
    std = train[0].std(axis=(0, 2, 3)) + 1e-8
    norm = lambda a: ((a - mean[None, :, None, None]) / std[None, :, None, None]).astype(np.float32)  # noqa: E731
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
    labels = lambda a: t(np.asarray(a).astype(np.int64))  # noqa: E731
    return Dataset(
        name=name,
        x_train=t(norm(train[0])),
        y_train=labels(train[1]),
        x_val=t(norm(val[0])),
        y_val=labels(val[1]),
        x_test=t(norm(test[0])),
        y_test=labels(test[1]),
        classes=classes,
        mean=[float(m) for m in mean],
        std=[float(s) for s in std],
        pixel_scale=pixel_scale,
    )


def _with_val(name, x, y, classes, val, test, test_fraction, seed, pixel_scale) -> Dataset:  # type: ignore[no-untyped-def]
    if test is None:
        from sklearn.model_selection import train_test_split

        if not 0 < test_fraction < 1:
            raise ConfigError(f"test_fraction ({test_fraction}) must be between 0 and 1")
        counts = np.bincount(np.asarray(y, dtype=np.int64), minlength=len(classes))
        if counts.min() < 2:
            few = [f"'{c}' ({n})" for c, n in zip(classes, counts) if n < 2]
            raise DataError(
                f"{name}: class(es) {', '.join(few)} have fewer than 2 training images; every class needs at least 2 "
                "for the train / test split: add images or give a test split too"
            )
        train, test_idx = train_test_split(np.arange(len(y)), test_size=test_fraction, random_state=seed, stratify=y)
        train, test_idx = np.sort(train), np.sort(test_idx)
        return _normalised(name, (x[train], y[train]), val, (x[test_idx], y[test_idx]), classes, pixel_scale)
    return _normalised(name, (x, y), val, test, classes, pixel_scale)


ARRAY_SPLITS = ("train", "val", "test")
UINT8_SCALE = "value / 255 (8-bit pixels to [0, 1])"


def check_arrays(
    name: str, splits: dict[str, tuple[Any, Any]], classes: Sequence[str] | None = None
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], list[str], str]:
    """Images and labels given as arrays, checked: `splits` maps train (required), val and test
    (optional) to (x, y), x an N x C x H x W (or N x H x W) array of uint8 pixels (scaled by
    1/255 when loaded) or floats (taken as given), y N integer labels 0..K-1. Returns the splits
    as numpy (x uint8 or float32 N x C x H x W, y int64), the class names and the pixel scale.
    Raises DataError naming the split and the problem."""
    unknown = sorted(set(splits) - set(ARRAY_SPLITS))
    if unknown:
        raise DataError(f"{name}: unknown split(s) {', '.join(unknown)}; give train and optionally val and test")
    if "train" not in splits:
        raise DataError(f"{name}: no training split; give at least train images and labels")
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    scales = set()
    for split in ARRAY_SPLITS:
        if split not in splits:
            continue
        x, y = (np.asarray(a.detach().cpu() if isinstance(a, torch.Tensor) else a) for a in splits[split])
        if x.ndim == 3:
            x = x[:, None]
        if x.ndim != 4 or min(x.shape) < 1:
            raise DataError(
                f"{name}: x_{split} has shape {tuple(x.shape)}; give images as N x C x H x W (or N x H x W)"
            )
        if x.shape[1] > 4 and x.shape[3] in (1, 3, 4):
            raise DataError(
                f"{name}: x_{split} has shape {tuple(x.shape)}, which looks channels-last (N x H x W x C); "
                "edgenas takes N x C x H x W: pass x.transpose(0, 3, 1, 2)"
            )
        if x.dtype == np.uint8:
            scales.add(UINT8_SCALE)
        elif np.issubdtype(x.dtype, np.floating):
            scales.add("values as given (float arrays)")
            x = x.astype(np.float32)
            if not np.isfinite(x).all():
                raise DataError(f"{name}: x_{split} holds NaN or infinite values; clean them first")
        else:
            raise DataError(f"{name}: x_{split} has dtype {x.dtype}; give uint8 pixels or floating-point values")
        if y.ndim != 1 or len(y) != len(x):
            raise DataError(
                f"{name}: y_{split} has shape {tuple(y.shape)}; give one label per image ({len(x)} for x_{split})"
            )
        if not (np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.bool_)) or (len(y) and y.min() < 0):
            raise DataError(f"{name}: y_{split} must hold integer class labels 0, 1, 2, ... (got dtype {y.dtype})")
        if x.shape[1:] != out.get("train", (x,))[0].shape[1:]:
            raise DataError(
                f"{name}: x_{split} images are {tuple(x.shape[1:])}, the training images "
                f"{tuple(out['train'][0].shape[1:])}; every split needs the same image shape"
            )
        out[split] = (x, y.astype(np.int64))
    if len(scales) > 1:
        raise DataError(f"{name}: mix of uint8 and float splits; give every split in the same scale")
    n_classes = int(max(int(y.max()) for _, y in out.values())) + 1
    names = [str(c) for c in classes] if classes is not None else [str(c) for c in range(n_classes)]
    if len(names) < n_classes:
        raise DataError(f"{name}: labels go up to {n_classes - 1} but only {len(names)} class names were given")
    if len(names) < 2:
        raise DataError(f"{name}: only one class; a classifier needs at least two")
    return out, names, scales.pop()


def save_arrays(path: Path, splits: dict[str, tuple[np.ndarray, np.ndarray]], classes: Sequence[str]) -> None:
    """Checked splits written as one .npz (x_train, y_train, ..., classes), atomically."""
    arrays: dict[str, np.ndarray] = {"classes": np.asarray(list(classes), dtype=str)}
    for split, (x, y) in splits.items():
        arrays[f"x_{split}"], arrays[f"y_{split}"] = x, y
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
    tmp.replace(path)


def _npz(path: str):  # type: ignore[no-untyped-def]
    """arrays:PATH, a .npz with x_train, y_train and optionally x_val, y_val, x_test, y_test, classes."""
    import zipfile

    p = Path(path).expanduser()
    if not p.is_file():
        raise DataError(f"array file '{p}' does not exist; give a .npz with x_train and y_train (arrays:PATH.npz)")
    try:
        with np.load(p, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"cannot read array file '{p}' ({exc}); give a .npz written by numpy.savez") from exc
    splits = {}
    for split in ARRAY_SPLITS:
        if (f"x_{split}" in arrays) != (f"y_{split}" in arrays):
            raise DataError(f"array file '{p}' has only one of x_{split} and y_{split}; give both or neither")
        if f"x_{split}" in arrays:
            splits[split] = (arrays[f"x_{split}"], arrays[f"y_{split}"])
    extra = sorted(set(arrays) - {f"{a}_{s}" for a in "xy" for s in ARRAY_SPLITS} - {"classes"})
    if extra:
        raise DataError(f"array file '{p}' has unknown arrays {', '.join(extra)}; use x_train, y_train, x_val, ...")
    classes = [str(c) for c in arrays["classes"]] if "classes" in arrays else None
    return check_arrays(f"arrays:{p}", splits, classes)


def load_digits(val_fraction: float = 0.15, test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """scikit-learn's digits: 1,797 real handwritten digits, 8x8, 17 grey levels, shipped
    inside scikit-learn (no download). Pixels are scaled to [0, 1] (value / 16) first."""
    from sklearn.datasets import load_digits as _load

    bunch = _load()
    x = (bunch.images.astype(np.float32) / 16.0)[:, None, :, :]
    y = bunch.target.astype(np.int64)
    return from_arrays(
        "digits",
        x,
        y,
        [str(c) for c in range(10)],
        val_fraction,
        test_fraction,
        seed,
        pixel_scale="value / 16 (digits grey levels 0-16 to [0, 1])",
    )


TORCHVISION = {
    "mnist": (
        "MNIST",
        "MNIST/raw",
        ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"],
    ),
    "fashion-mnist": (
        "FashionMNIST",
        "FashionMNIST/raw",
        ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"],
    ),
    "cifar10": (
        "CIFAR10",
        "cifar-10-batches-py",
        ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"],
    ),
}
NAMES = ("digits", *TORCHVISION, "folder:PATH", "arrays:PATH.npz")
GREY_MODES = ("L", "1", "I;16", "I")  # PIL modes read as one channel (the rest as RGB)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


def _cache_path(key: dict) -> Path:
    import hashlib
    import json as _json

    from edgenas.fsutil import cache_dir

    digest = hashlib.sha256(_json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    return cache_dir() / "datasets" / f"{digest}.pt"


def _cached_decode(key: dict, decode):
    """Decode once: (uint8 N x C x H x W, labels, classes, official test or None), cached on disk."""
    path = _cache_path(key)
    if path.is_file():
        try:
            return torch.load(path, weights_only=False)
        except Exception:
            path.unlink(missing_ok=True)  # a broken cache entry is only a cost
    value = decode()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save(value, tmp)
        tmp.replace(path)
    except OSError:
        pass
    return value


def _torchvision(name: str, data_dir: str | None, download: bool):
    cls_name, sub, files = TORCHVISION[name]
    if not data_dir:
        raise DataError(f"dataset '{name}' needs --data-dir DIR (the folder that holds {sub}/)")
    root = Path(data_dir).expanduser()
    missing = [f for f in files if not (root / sub / f).is_file()]
    if missing and not download:
        raise DataError(
            f"{name} is not under {root}: expected {', '.join(str(root / sub / f) for f in missing)}; "
            "put the files there (unpacked) or add --download where the network allows it"
        )
    import torchvision.datasets as tvd

    cls = getattr(tvd, cls_name)
    if missing:  # download was asked for
        try:
            cls(str(root), train=True, download=True)
        except Exception as exc:
            raise DataError(f"cannot download {name} into {root}: {exc}") from exc
    if name == "cifar10":
        return _cifar10(root / sub)

    def decode():
        try:
            parts = [cls(str(root), train=t, download=False) for t in (True, False)]
        except Exception as exc:  # corrupt files
            raise DataError(f"cannot load {name} from {root}: {exc}") from exc
        out = []
        for ds in parts:
            x = torch.as_tensor(np.asarray(ds.data))
            x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)
            out.append((x.contiguous(), torch.as_tensor(np.asarray(ds.targets), dtype=torch.int64)))
        return out[0][0], out[0][1], list(parts[0].classes), out[1]

    key = {"name": name, "root": str(root.resolve()), "files": [(root / sub / f).stat().st_size for f in files]}
    return _cached_decode(key, decode)


def _cifar10(folder):
    """The CIFAR-10 python batches (data_batch_1..5, test_batch, batches.meta), read directly."""
    import pickle

    def read(f):
        try:
            with open(folder / f, "rb") as fh:
                d = pickle.load(fh, encoding="latin1")
            data = np.asarray(d["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
            return torch.from_numpy(data.copy()), torch.as_tensor(
                d.get("labels", d.get("fine_labels")), dtype=torch.int64
            )
        except (OSError, KeyError, ValueError, pickle.UnpicklingError, EOFError) as exc:
            raise DataError(f"cannot read CIFAR-10 file {folder / f}: {exc}") from exc

    def decode():
        parts = [read(f"data_batch_{i}") for i in range(1, 6)]
        x = torch.cat([p[0] for p in parts])
        y = torch.cat([p[1] for p in parts])
        try:
            with open(folder / "batches.meta", "rb") as fh:
                classes = list(pickle.load(fh, encoding="latin1")["label_names"])
        except (OSError, KeyError, pickle.UnpicklingError, EOFError):
            classes = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
        return x, y, classes, read("test_batch")

    key = {
        "cifar10": str(folder.resolve()),
        "sizes": [(folder / f).stat().st_size for f in sorted(p.name for p in folder.iterdir())],
    }
    return _cached_decode(key, decode)


def _folder(path: str, image_size: int | None, channels: int | None):
    root = Path(path).expanduser()
    if not root.is_dir():
        raise DataError(f"image folder '{root}' does not exist; give a folder with one sub-folder per class")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    files = [
        (c, f)
        for i, c in enumerate(classes)
        for f in sorted((root / c).rglob("*"))
        if f.suffix.lower() in IMAGE_EXTENSIONS
    ]
    counts = {c: sum(1 for cc, _ in files if cc == c) for c in classes}
    classes = [c for c in classes if counts[c] > 0]
    if len(classes) < 2:
        raise DataError(
            f"image folder '{root}' has {len(classes)} class folder(s) with images; a classifier needs at least "
            "two (ROOT/<class>/<image>.jpg)"
        )
    files = [(c, f) for c, f in files if c in classes]

    def decode():
        from PIL import Image, UnidentifiedImageError

        first = files[0][1]
        try:
            with Image.open(first) as im:
                size = (image_size, image_size) if image_size else im.size
                chans = channels or (1 if im.mode in GREY_MODES else 3)
        except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
            raise DataError(f"cannot read image {first}: {exc}") from exc
        need = len(files) * chans * size[0] * size[1] * (1 + 4 + 4)  # uint8 decode, float32 copy, normalised
        if need > _memory_bytes() * 3 // 4:
            raise DataError(
                f"{len(files):,} images of {chans} x {size[0]} x {size[1]} need about {need / 2**30:.1f} GiB of memory, "
                f"more than this machine has to spare ({_memory_bytes() / 2**30:.1f} GiB); "
                "use a smaller --image-size or --max-images"
            )
        x = np.empty((len(files), chans, size[1], size[0]), dtype=np.uint8)
        y = np.empty(len(files), dtype=np.int64)
        index = {c: i for i, c in enumerate(classes)}
        for n, (c, f) in enumerate(files):
            try:
                with Image.open(f) as im:
                    im = im.convert("L" if chans == 1 else "RGB")
                    if im.size != size:
                        im = im.resize(size, Image.BILINEAR)
                    a = np.asarray(im)
            except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
                raise DataError(f"cannot read image {f}: {exc}; remove or replace it") from exc
            x[n] = a[None] if chans == 1 else a.transpose(2, 0, 1)
            y[n] = index[c]
        return torch.from_numpy(x), torch.from_numpy(y), classes, None

    key = {
        "folder": str(root.resolve()),
        "files": _listing_digest(root, files),
        "size": image_size,
        "channels": channels,
    }
    return _cached_decode(key, decode)


def _listing_digest(root: Path, files: list[tuple[str, Path]]) -> str:
    """What determines a folder dataset: every image's class, path, size and modification time.
    Renaming class folders, moving an image to another class or replacing one changes it."""
    import hashlib

    h = hashlib.sha256()
    for c, f in files:
        st = f.stat()
        h.update(f"{c}\0{f.relative_to(root).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _memory_bytes() -> int:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 16 * 2**30


def _subset(y: np.ndarray, n: int, seed: int) -> np.ndarray:
    from sklearn.model_selection import train_test_split

    if n >= len(y):
        return np.arange(len(y))
    try:
        keep, _ = train_test_split(np.arange(len(y)), train_size=n, random_state=seed, stratify=y)
    except ValueError as exc:  # a class too small to be kept in proportion
        raise DataError(f"cannot take a stratified subset of {n} images: {exc}; raise --max-images") from exc
    return np.sort(keep)


def load_dataset(
    name: str,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    data_dir: str | None = None,
    download: bool = False,
    image_size: int | None = None,
    channels: int | None = None,
    max_images: int | None = None,
) -> Dataset:
    """A dataset by name: digits (embedded), mnist / fashion-mnist / cifar10 (torchvision files in
    `data_dir`; their official test split is the test split) or folder:PATH (an ImageFolder of
    your images; the test split is cut from it). Decoded once and cached on disk. `max_images`
    keeps a stratified, seeded subset of the training pool (and of the test split)."""
    if max_images is not None and max_images < 10:
        raise ConfigError(f"max_images must be at least 10, got {max_images}")
    if name == "digits":
        if max_images is not None:
            raise ConfigError("max_images applies to mnist, fashion-mnist, cifar10 and folder datasets, not digits")
        return load_digits(val_fraction=val_fraction, test_fraction=test_fraction, seed=seed)
    if name.startswith("arrays:"):
        if max_images is not None:
            raise ConfigError("max_images applies to mnist, fashion-mnist, cifar10 and folder datasets, not arrays")
        splits, names, scale = _npz(name.split(":", 1)[1])
        if scale == UINT8_SCALE:
            splits = {k: (x.astype(np.float32) / 255.0, y) for k, (x, y) in splits.items()}
        (xa, ya), test_split, val_split = splits["train"], splits.get("test"), splits.get("val")
        return from_arrays(
            name, xa, ya, names, val_fraction, test_fraction, seed, scale, test=test_split, val=val_split
        )
    if name in TORCHVISION:
        x, y, classes, test = _torchvision(name, data_dir, download)
    elif name.startswith("folder:"):
        x, y, classes, test = _folder(name.split(":", 1)[1], image_size, channels)
    else:
        raise DataError(f"unknown dataset '{name}'; available: {', '.join(NAMES)}")
    x_np, y_np = x.numpy(), y.numpy()
    if max_images is not None:
        keep = _subset(y_np, max_images, seed)
        x_np, y_np = x_np[keep], y_np[keep]
    xf = x_np.astype(np.float32) / 255.0
    scale = "value / 255 (8-bit pixels to [0, 1])"
    if test is None:
        return from_arrays(name, xf, y_np, [str(c) for c in classes], val_fraction, test_fraction, seed, scale)
    # Official test split: validation comes out of the training pool only.
    xt, yt = test[0].numpy(), test[1].numpy()
    if max_images is not None:
        keep = _subset(yt, max(10, int(max_images * test_fraction)), seed)
        xt, yt = xt[keep], yt[keep]
    return from_arrays(
        name,
        xf,
        y_np,
        [str(c) for c in classes],
        val_fraction,
        test_fraction,
        seed,
        scale,
        test=(xt.astype(np.float32) / 255.0, yt),
    )


def load_pipeline_dataset(pipeline: "Pipeline") -> Dataset:
    """The dataset a pipeline's [dataset] section names, split as it says."""
    ds = pipeline.dataset
    return load_dataset(
        ds.name,
        ds.val_fraction,
        ds.test_fraction,
        ds.split_seed,
        ds.data_dir,
        ds.download,
        ds.image_size,
        ds.channels,
        ds.max_images,
    )


PHOTO_MIN_PIXELS = 16  # the smallest side of an image that gets the photos setup


def photos_reason(
    name: str | None,
    image_size: int | None = None,
    channels: int | None = None,
    shape: Sequence[int] | None = None,
) -> str | None:
    """Why a dataset is photos (RGB, at least PHOTO_MIN_PIXELS on a side), or None when it is not
    or cannot be told without loading it (the loader then reports any problem). `name` as
    `--dataset` takes it; `shape` (N x C x H x W) for images given in memory; `image_size` and
    `channels` as the folder loader would apply them. Reads one image at most."""
    if shape is not None:
        if len(shape) == 4 and shape[1] == 3 and min(shape[2], shape[3]) >= PHOTO_MIN_PIXELS:
            return f"the images are RGB, {shape[3]}x{shape[2]} px"
        return None
    if name == "cifar10":
        return "CIFAR-10 is RGB photos of 32x32 px"
    if name and name.startswith("arrays:"):
        try:
            with np.load(Path(name[len("arrays:") :]).expanduser()) as arrays:
                x = arrays["x_train"]
                return photos_reason(None, shape=x.shape)
        except Exception:  # the loader says what is wrong with the file
            return None
    if not (name and name.startswith("folder:")):
        return None
    root = Path(name[len("folder:") :]).expanduser()
    try:
        first = next(
            f
            for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
            for f in sorted(d.rglob("*"))
            if f.suffix.lower() in IMAGE_EXTENSIONS
        )
        from PIL import Image

        with Image.open(first) as im:
            grey = im.mode in GREY_MODES
            w, h = (image_size, image_size) if image_size else im.size
    except Exception:  # no images, not a folder, not an image: the loader says so
        return None
    if (channels or (1 if grey else 3)) == 3 and min(w, h) >= PHOTO_MIN_PIXELS:
        return f"the folder's images are RGB, {w}x{h} px"
    return None
