"""Dataset loading from local files, in the formats torchvision and ImageFolder users have.

The files are written from scikit-learn's real handwritten digits: an ImageFolder of PNGs, MNIST
IDX files and CIFAR-10 pickle batches."""

import json
import pickle
import struct
import time

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits as sk_digits
from typer.testing import CliRunner

from edgenas.cli import app
from edgenas.errors import DataError
from edgenas.training.data import load_dataset


def _digits_u8(size):
    d = sk_digits()
    imgs = [
        np.asarray(Image.fromarray((im * 255 / 16).astype(np.uint8)).resize((size, size), Image.BILINEAR))
        for im in d.images
    ]
    return np.stack(imgs), d.target.astype(np.uint8)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("folder")
    x, y = _digits_u8(12)
    for i in range(600):
        cls = root / f"digit-{y[i]}"
        cls.mkdir(exist_ok=True)
        Image.fromarray(x[i]).save(cls / f"{i:04d}.png")
    return root


def test_image_folder_loads_splits_and_caches(folder):
    t0 = time.perf_counter()
    a = load_dataset(f"folder:{folder}", 0.15, 0.2, 0)
    first = time.perf_counter() - t0
    assert a.input_shape == (1, 12, 12) and a.classes == [f"digit-{i}" for i in range(10)]
    assert sum(a.sizes().values()) == 600 and a.sizes()["test"] == 120
    assert a.pixel_scale.startswith("value / 255") and len(a.mean) == 1
    t0 = time.perf_counter()
    b = load_dataset(f"folder:{folder}", 0.15, 0.2, 0)
    assert time.perf_counter() - t0 < first  # decoded once, then read from the cache
    assert np.array_equal(a.x_train.numpy(), b.x_train.numpy())
    rgb = load_dataset(f"folder:{folder}", 0.15, 0.2, 0, image_size=8, channels=3)
    assert rgb.input_shape == (3, 8, 8)
    sub = load_dataset(f"folder:{folder}", 0.15, 0.2, 0, max_images=200)
    assert sum(sub.sizes().values()) == 200


def test_folder_search_end_to_end(folder, tmp_path):
    res = CliRunner().invoke(
        app,
        [
            "search",
            "--dataset",
            f"folder:{folder}",
            "--image-size",
            "8",
            "-n",
            "3",
            "--epochs",
            "1",
            "--runs-dir",
            str(tmp_path),
            "--name",
            "f",
        ],
    )
    assert res.exit_code == 0, res.output
    import json

    m = json.loads((tmp_path / "f" / "manifest.json").read_text())
    assert m["dataset"]["input_shape"] == [1, 8, 8] and m["dataset"]["classes"][0] == "digit-0"


def _write_idx(path, arr):
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    code = 0x0800 | arr.ndim
    with open(path, "wb") as fh:
        fh.write(struct.pack(">I", code))
        fh.write(struct.pack(">" + "I" * arr.ndim, *arr.shape))
        fh.write(arr.tobytes())


def test_mnist_format_from_data_dir(tmp_path):
    x, y = _digits_u8(28)
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    _write_idx(raw / "train-images-idx3-ubyte", x[:1500])
    _write_idx(raw / "train-labels-idx1-ubyte", y[:1500])
    _write_idx(raw / "t10k-images-idx3-ubyte", x[1500:])
    _write_idx(raw / "t10k-labels-idx1-ubyte", y[1500:])
    d = load_dataset("mnist", 0.1, 0.2, 0, data_dir=str(tmp_path))
    assert d.input_shape == (1, 28, 28)
    assert d.sizes() == {"train": 1350, "val": 150, "test": 297}  # the official test split is the test split


def test_cifar10_format_from_data_dir(tmp_path):
    x, y = _digits_u8(32)
    rgb = np.repeat(x[:, None], 3, axis=1)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for i in range(5):
        part = slice(i * 300, (i + 1) * 300)
        with open(folder / f"data_batch_{i + 1}", "wb") as fh:
            pickle.dump({"data": rgb[part].reshape(300, -1), "labels": y[part].tolist()}, fh)
    with open(folder / "test_batch", "wb") as fh:
        pickle.dump({"data": rgb[1500:].reshape(len(rgb) - 1500, -1), "labels": y[1500:].tolist()}, fh)
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump({"label_names": [f"c{i}" for i in range(10)]}, fh)
    # torchvision checks file digests of the real CIFAR-10; edgenas reads what is there
    d = load_dataset("cifar10", 0.1, 0.2, 0, data_dir=str(tmp_path))
    assert d.input_shape == (3, 32, 32) and d.classes[0] == "c0" and d.sizes()["test"] == len(rgb) - 1500


@pytest.mark.parametrize(
    "args, match",
    [
        (("mnist",), "needs --data-dir"),
        (("mnist", "/nonexistent"), "expected /nonexistent/MNIST/raw/train-images-idx3-ubyte"),
        (("cifar10", "/nonexistent"), "cifar-10-batches-py/data_batch_1"),
        (("imagenet",), "unknown dataset 'imagenet'"),
        (("folder:/nonexistent",), "does not exist"),
    ],
)
def test_missing_datasets_name_the_expected_files(args, match):
    name, data_dir = args[0], args[1] if len(args) > 1 else None
    with pytest.raises(DataError, match=match):
        load_dataset(name, 0.15, 0.2, 0, data_dir=data_dir)


def test_bad_image_folders(tmp_path):
    one = tmp_path / "one" / "cats"
    one.mkdir(parents=True)
    Image.new("L", (8, 8)).save(one / "a.png")
    with pytest.raises(DataError, match="at least two"):
        load_dataset(f"folder:{tmp_path / 'one'}", 0.15, 0.2, 0)
    two = tmp_path / "two"
    for c in ("a", "b"):
        (two / c).mkdir(parents=True)
        for i in range(10):
            Image.new("L", (8, 8), color=i * 20).save(two / c / f"{i}.png")
    (two / "b" / "broken.png").write_bytes(b"not a png at all")
    with pytest.raises(DataError, match="broken.png"):
        load_dataset(f"folder:{two}", 0.15, 0.2, 0)


def _class_means(ds):
    x = np.concatenate([ds.x_train.numpy(), ds.x_val.numpy(), ds.x_test.numpy()])
    y = np.concatenate([ds.y_train.numpy(), ds.y_val.numpy(), ds.y_test.numpy()])
    return [float(x[y == k].mean()) for k in range(2)], np.bincount(y, minlength=2).tolist()


def test_folder_cache_follows_relabelling(tmp_path, monkeypatch):
    """Swapping two class folders' names or moving an image to another class (how mislabels are
    fixed) must change the labels, not return the cached ones."""
    monkeypatch.setenv("EDGENAS_CACHE_DIR", str(tmp_path / "cache"))
    root = tmp_path / "photos"
    for cls, value in (("a", 20), ("b", 220)):
        (root / cls).mkdir(parents=True)
        for i in range(10):
            Image.fromarray(np.full((6, 6), value + i, dtype=np.uint8)).save(root / cls / f"{cls}{i}.png")
    (means, counts) = _class_means(load_dataset(f"folder:{root}", 0.2, 0.2, 0))
    assert means[0] < means[1] and counts == [10, 10]
    (root / "a").rename(root / "tmp")
    (root / "b").rename(root / "a")
    (root / "tmp").rename(root / "b")
    (means, counts) = _class_means(load_dataset(f"folder:{root}", 0.2, 0.2, 0))
    assert means[0] > means[1] and counts == [10, 10]  # labels follow the folders
    (root / "a" / "b3.png").rename(root / "b" / "b3.png")
    (means, counts) = _class_means(load_dataset(f"folder:{root}", 0.2, 0.2, 0))
    assert counts == [9, 11]


def _image_folder(root, size, mode):
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(10):
            shape = (size, size, 3) if mode == "RGB" else (size, size)
            Image.fromarray((rng.random(shape) * 255).astype("uint8"), mode).save(root / c / f"{i}.png")
    return f"folder:{root}"


def test_photos_get_the_photos_setup_without_flags(tmp_path):
    """A dataset of photos (RGB, at least 16 px a side) starts from pipelines/photos.toml without
    --pipeline, and the reason is given; grey or small images, --channels 1 and an explicit
    --pipeline keep what they had."""
    from edgenas import api

    rgb = _image_folder(tmp_path / "rgb", 32, "RGB")
    grey = _image_folder(tmp_path / "grey", 32, "L")
    small = _image_folder(tmp_path / "small", 8, "RGB")
    photos = api.make_pipeline(rgb)
    assert photos.source.endswith("photos.toml") and photos.space.name == "mobile"
    assert photos.training.crop_padding == 4 and photos.training.horizontal_flip and photos.dataset.name == rgb
    assert api.setup_for(rgb, None, {}) == ("photos", "the folder's images are RGB, 32x32 px")
    assert api.setup_for("cifar10", None, {})[0] == "photos"
    for data, settings in ((grey, {}), (small, {}), (rgb, {"channels": 1}), (rgb, {"image_size": 12}), ("digits", {})):
        assert api.setup_for(data, None, settings) == ("default", None), (data, settings)
        assert api.make_pipeline(data, **settings).source.endswith("default.toml")
    assert api.make_pipeline(rgb, pipeline="default").space.name == "layerwise"
    x = np.zeros((4, 3, 16, 16), dtype=np.uint8)
    assert api.setup_for((x, np.zeros(4)), None, {}) == ("photos", "the images are RGB, 16x16 px")
    assert api.setup_for({"train": (x[:, :1], np.zeros(4))}, None, {}) == ("default", None)


@pytest.mark.slow
def test_the_search_says_which_setup_it_chose(tmp_path):
    from typer.testing import CliRunner

    from edgenas.cli import app

    rgb = _image_folder(tmp_path / "rgb", 32, "RGB")
    res = CliRunner().invoke(
        app, ["search", "--dataset", rgb, "--children", "1", "--epochs", "1", "--runs-dir", str(tmp_path / "r")]
    )
    assert res.exit_code == 0, res.output
    assert "setup: photos (pipelines/photos.toml), because the folder's images are RGB, 32x32 px" in res.output
    (run,) = (tmp_path / "r").iterdir()
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["winner"]["arch_key"].startswith("mobile|")  # a network of the photos setup's space
