"""Pipeline files: the whole recipe of a search in one TOML file (pipelines/*.toml).

Sections: [search], [dataset], [space], [controller], [training], [final_training], [reward]. Every key is
checked: an unknown key or a value of the wrong type is a ConfigError naming the file, the
section and the key. Command-line flags override single values after loading.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgenas.errors import ConfigError
from edgenas.reward import RewardConfig
from edgenas.settings import schema

S = schema.setting
AT_LEAST_0: dict[str, Any] = {"check": lambda v: v >= 0, "allowed_text": ">= 0"}  # a count where 0 means off


@dataclass(frozen=True)
class SearchSettings:
    seed: int = S(0, "Seed of the controller and of every child.", flag=True)
    children: int = S(160, "Architectures the controller samples (trained, rejected or reused).", flag=True, short="-n")
    architectures_per_update: int = S(
        8, "Architectures per controller update (m, the controller's minibatch).", flag="--per-update"
    )
    max_minutes: float | None = S(
        None,
        "Start no child's training after this many minutes (also inside a batch); the search then picks its "
        "winner from what finished (--finalists: their training included). With --executor supernet the limit covers the scoring: the supernet's "
        "one-off training comes before the clock starts, and the --retrain-top finalists train after it.",
        flag=True,
    )
    max_evaluated: int | None = S(
        None, "Stop sampling new batches once this many children were trained (or looked up).", flag=True
    )
    profile: str = S("cpu-arm", "Hardware profile name (see `edgenas profiles`) or .toml path.", flag=True, short="-p")
    device: str = S(
        "auto",
        "Where children train: auto (CUDA when available, else CPU), cpu, cuda or cuda:N.",
        flag=True,
        check=lambda v: v in ("auto", "cpu") or v.startswith("cuda"),
        allowed_text="auto, cpu, cuda or cuda:N",
    )
    runs_dir: str = S("runs", "Parent folder of run directories.", flag=True)
    abort_failed_fraction: float = S(
        0.5, "Stop the search when more than this share of evaluated children failed (in (0, 1])..."
    )
    abort_min_evaluated: int = S(8, "...once at least this many were evaluated (trained or failed).")
    measure_timeout_s: float = S(60.0, "A child whose latency measurement takes longer than this (seconds) fails.")
    executor: str = S(
        "local",
        "Where children train: local (this process), process (a pool of worker processes), ray, or supernet "
        "(mobile space: one weight-sharing supernet trained once, candidates scored with inherited weights).",
        flag=True,
    )
    workers: int = S(1, "Worker processes of --executor process, each pinned to its share of the cores.", flag=True)
    supernet_epochs: int = S(
        30,
        "--executor supernet: epochs the weight-sharing supernet trains (--supernet-rule), once per dataset, space "
        "and recipe; kept under RUNS_DIR/.supernets and reused by later searches.",
        flag=True,
        check=lambda v: v >= 1,
        allowed_text=">= 1",
    )
    supernet_rule: str = S(
        "sandwich",
        "--executor supernet: how the supernet trains. sandwich: each batch trains the largest, the smallest and "
        "two random subnetworks; progressive: Once-for-All's progressive shrinking (the largest alone, then "
        "kernel, depth, expansion and width made elastic in turn; without its channel sorting; measured no "
        "better than the sandwich rule: docs/benchmarks/photos.md).",
        flag=True,
        choices=("sandwich", "progressive"),
    )
    retrain_top: int = S(
        3,
        "--executor supernet: after the search, the K best candidates by inherited-weight score (and the "
        "templates that fit) are trained stand-alone with [training], as any child is, and the winner is chosen "
        "among them by that validation "
        "accuracy (0: off, the winner is the best inherited score). They train even past --max-minutes.",
        flag=True,
        **AT_LEAST_0,
    )
    finalists: int = S(
        0,
        "Trained children (executor local, process or ray; fidelity none): after the search the K best children "
        "that are not templates, and the best template, are trained again for --finalist-epochs with [training] "
        "and the winner is chosen among them by that validation accuracy (0: off). Under --max-minutes their "
        "time is kept inside the limit: no child starts unless its training (a child's median) and theirs (each "
        "one's own training time, scaled by the epochs) fit in the time left.",
        flag=True,
        **AT_LEAST_0,
    )
    finalist_epochs: int = S(
        0,
        "Epochs each --finalists network trains (0: twice [training] epochs).",
        flag=True,
        **AT_LEAST_0,
    )
    ray_address: str | None = S(
        None, "Ray executor: HOST:PORT of a running Ray cluster (none: a local instance).", flag=True
    )
    gpus_per_job: float = S(0.0, "Ray executor: GPUs (fractions allowed) each child asks for.")
    threads_per_job: int = S(0, "Torch threads per training job (0: the cores divided by the workers).")
    children_per_gpu: int = S(
        1, "CUDA: children that train at once on each GPU (process executor: workers; ray: 1/k GPU each).", flag=True
    )
    early_stopping: str = S(
        "none",
        "none, or median: stop a child below the median curve of earlier children.",
        flag=True,
        choices=("none", "median"),
    )
    early_stop_min_children: int = S(5, "The median rule needs this many earlier curves at an epoch.")
    fidelity: str = S(
        "none",
        "none, or asha: children train min_epochs first; the best 1/reduction of each rung continue (from where "
        "they stopped) to reduction x the epochs, up to training.epochs.",
        flag=True,
        choices=("none", "asha"),
    )
    min_epochs: int = S(1, "asha: epochs of the first rung (every new child trains this long).", flag=True)
    reduction: int = S(
        3, "asha: eta, the epochs ratio between rungs; the top 1/eta of a rung go on to the next.", flag=True
    )
    curriculum_start: int = S(0, "Depth curriculum (Zoph & Le): the maximum number of layers at first (0: off)...")
    curriculum_every: int = S(5, "...raised by one every this many controller updates.")
    start: tuple[str, ...] = S(
        (),
        "Networks to evaluate first, as reports print their keys (e.g. the network you have, "
        "'mobile|w16:k3e1/...'); the controller goes on from the results. Repeat the flag for several.",
        flag=True,
    )
    templates: bool = S(
        True,
        "Evaluate the space's known-good networks first (MobileNetV2-style and MCUNet-like in the mobile space, "
        "VGG-style in the layer-wise one, NB201's ResNet cell), each scaled by width and depth multipliers (down or "
        "up) to the largest that fits the hard limits; the search's answer is never worse than the best of them. "
        "Off under the depth curriculum.",
        flag=True,
    )
    table: str | None = S(
        None,
        "CSV of precomputed results (architecture strings + metrics): evaluate by lookup instead of training, "
        "e.g. a NAS-Bench-201 table with --space nb201.",
        flag=True,
    )
    table_metric: str | None = S(
        None,
        "The table's validation column (the reward's accuracy); none: the first column ending in 'val'.",
        flag=True,
    )
    table_test_metric: str | None = S(None, "The table's test column (report only); none: the *test twin.")
    table_input: str = S("3x32x32", "CxHxW the table's networks take (params, FLOPs and latency are of this).")
    table_classes: int = S(10, "Classes of the table's task.")

    def __post_init__(self) -> None:
        schema.check_fields(self, "search")
        if not 0 < self.abort_failed_fraction <= 1:
            raise ConfigError(f"search.abort_failed_fraction must be in (0, 1], got {self.abort_failed_fraction}")
        if self.seed < 0:
            raise ConfigError(f"--seed / search.seed must be >= 0, got {self.seed}")
        if self.abort_min_evaluated < 1:
            raise ConfigError(f"search.abort_min_evaluated must be >= 1, got {self.abort_min_evaluated}")
        if self.gpus_per_job < 0:
            raise ConfigError(f"search.gpus_per_job must be >= 0, got {self.gpus_per_job}")
        if self.workers < 1:
            raise ConfigError(f"--workers must be >= 1, got {self.workers}")
        if self.early_stop_min_children < 1:
            raise ConfigError(f"search.early_stop_min_children must be >= 1, got {self.early_stop_min_children}")
        if self.children_per_gpu < 1:
            raise ConfigError(f"--children-per-gpu must be >= 1, got {self.children_per_gpu}")
        if self.threads_per_job < 0:
            raise ConfigError(f"search.threads_per_job must be >= 0, got {self.threads_per_job}")
        if self.measure_timeout_s <= 0:
            raise ConfigError(f"search.measure_timeout_s must be > 0, got {self.measure_timeout_s}")
        if self.min_epochs < 1 or self.reduction < 2:
            raise ConfigError(
                f"search.min_epochs must be >= 1 and search.reduction >= 2, got {self.min_epochs} and {self.reduction}"
            )
        if self.fidelity == "asha" and self.early_stopping != "none":
            raise ConfigError(
                "search.fidelity = asha and early_stopping = median both decide which children train on; use one"
            )
        if self.curriculum_start < 0 or self.curriculum_every < 1:
            raise ConfigError("search.curriculum_start must be >= 0 and search.curriculum_every >= 1")
        if self.table_classes < 2:
            raise ConfigError(f"search.table_classes must be >= 2, got {self.table_classes}")
        self.table_input_shape  # raises on a malformed value
        if self.children < 1:
            raise ConfigError(f"search.children must be >= 1, got {self.children}")
        if self.architectures_per_update < 1:
            raise ConfigError(f"search.architectures_per_update must be >= 1, got {self.architectures_per_update}")
        if self.max_evaluated is not None and self.max_evaluated < 1:
            raise ConfigError(f"search.max_evaluated must be >= 1, got {self.max_evaluated}")
        if self.max_minutes is not None and self.max_minutes <= 0:
            raise ConfigError(f"search.max_minutes must be > 0, got {self.max_minutes}")

    def why_no_finalists(self) -> str | None:
        """Why this way of searching picks its winner without --finalists (None: it can use them)."""
        if self.table:
            return "a --table looks results up"
        if self.executor == "supernet":
            return "--executor supernet trains its finalists with --retrain-top"
        if self.fidelity == "asha":
            return "--fidelity asha already trains the best children longer"
        return None

    @property
    def table_input_shape(self) -> tuple[int, int, int]:
        parts = str(self.table_input).lower().split("x")
        try:
            shape = tuple(int(p) for p in parts)
        except ValueError:
            shape = ()
        if len(shape) != 3 or min(shape) < 1:
            raise ConfigError(f"search.table_input must be CxHxW such as 3x32x32, got '{self.table_input}'")
        return shape  # type: ignore[return-value]


@dataclass(frozen=True)
class DatasetSettings:
    name: str = S(
        "digits",
        "digits (embedded), mnist, fashion-mnist, cifar10 (need --data-dir) or folder:PATH (one sub-folder of "
        "images per class) or arrays:PATH.npz (numpy arrays x_train, y_train and optionally x_val, y_val, x_test, "
        "y_test, classes).",
        flag="--dataset",
        api="data",
    )
    val_fraction: float = S(
        0.15, "Share held out for the reward's accuracy (of the training pool where the set has its own test split)."
    )
    test_fraction: float = S(
        0.2, "Share held out to score the final winner only (unused where the set has an official test split)."
    )
    split_seed: int = S(0, "Seed of the train / validation / test split.")
    data_dir: str | None = S(
        None, "Folder holding the torchvision dataset files (MNIST/raw, cifar-10-batches-py, ...).", flag=True
    )
    download: bool = S(False, "Let torchvision download the dataset into data_dir (needs network).", flag=True)
    image_size: int | None = S(
        None, "folder datasets: resize images to this square size (none: the first image's).", flag=True
    )
    channels: int | None = S(None, "folder datasets: 1 (grey) or 3 (RGB) (none: from the first image).", flag=True)
    max_images: int | None = S(
        None, "Use a stratified, seeded subset of this many images (e.g. for CPU runs on CIFAR-10).", flag=True
    )

    def __post_init__(self) -> None:
        schema.check_fields(self, "dataset")
        if self.channels not in (None, 1, 3):
            raise ConfigError(f"dataset.channels must be 1 or 3, got {self.channels}")
        if self.image_size is not None and not 1 <= self.image_size <= 1024:
            raise ConfigError(
                f"dataset.image_size (--image-size) must be between 1 and 1024 pixels, got {self.image_size}"
            )


@dataclass(frozen=True)
class TrainRecipe:
    epochs: int = S(12, "Training epochs per child.", flag=True, api="epochs")
    batch_size: int = S(64, "Images per training step.")
    optimizer: str = S(
        "sgd",
        "sgd (Nesterov momentum, one-cycle schedule peaking at learning_rate) or adam (Adam at a constant "
        "learning_rate, e.g. 0.001, as Arora & Krone trained their children; momentum is then unused).",
        choices=("sgd", "adam"),
    )
    learning_rate: float = S(0.1, "Peak of the one-cycle schedule (SGD), or Adam's constant learning rate.")
    momentum: float = S(0.9, "SGD momentum, in [0, 1).")
    weight_decay: float = S(5e-4, "L2 weight decay.")
    label_smoothing: float = S(0.0, "Label smoothing of the cross-entropy, in [0, 1).")
    crop_padding: int = S(0, "Random crops after zero-padding by this many pixels per side (0: off).")
    horizontal_flip: bool = S(False, "Random left-right flips (off where a flip changes the class, e.g. digits).")
    ema_decay: float = S(0.0, "Exponential moving average of the weights per step, used as the result (0: off).")
    channels_last: bool = S(True, "NHWC memory format (faster convolutions on GPUs and recent CPUs).")
    bf16_autocast: bool = S(True, "bfloat16 autocast on CUDA only; CPU training stays fp32.")
    compile: bool = S(False, "torch.compile the child (pays off only for long trainings).")
    grad_clip_norm: float = S(
        0.0,
        "Clip the gradients' global norm to this before each step (0: off).",
        check=lambda v: v >= 0,
        allowed_text=">= 0 (0: off)",
    )

    def __post_init__(self) -> None:
        schema.check_fields(self, "training")
        if self.epochs < 1 or self.batch_size < 2:
            raise ConfigError(
                f"training needs epochs >= 1 and batch_size >= 2, got {self.epochs} and {self.batch_size}"
            )
        if self.learning_rate <= 0 or self.weight_decay < 0 or not 0 <= self.momentum < 1:
            raise ConfigError("training learning_rate must be > 0, weight_decay >= 0 and momentum in [0, 1)")
        if not 0 <= self.label_smoothing < 1:
            raise ConfigError(f"training label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.crop_padding < 0:
            raise ConfigError(f"training crop_padding must be >= 0 pixels, got {self.crop_padding}")
        if not 0 <= self.ema_decay < 1:
            raise ConfigError(f"training ema_decay must be in [0, 1) (0: off), got {self.ema_decay}")


@dataclass(frozen=True)
class ExportSettings:
    """`edgenas export`: how a run's winner becomes a deployable bundle."""

    profile: str | None = S(None, "Profile to time the bundle under (none: the run's).", flag=True, short="-p")
    int8: bool = S(False, "Also write a static int8 model (onnxruntime quantization).", flag=True)
    max_int8_drop: float = S(
        0.01,
        "Refuse the int8 model if its test accuracy drops by more than this fraction.",
        flag=True,
        check=lambda v: 0 <= v <= 1,
        allowed_text="between 0 and 1 (a fraction of accuracy)",
    )
    top: int = S(
        1, "Bundle the k best children (rank-1 ... rank-k).", flag=True, check=lambda v: v >= 1, allowed_text=">= 1"
    )
    out: str | None = S(None, "Bundle directory (none: RUN_DIR/bundle).", flag=True)
    calibration_images: int = S(
        512, "Training images that calibrate the int8 model.", check=lambda v: v >= 1, allowed_text=">= 1"
    )
    pick: str | None = S(
        None,
        "Choose from the Pareto front of an --objectives run: 'knee', 'latency_ms<=2', 'params<=50000', "
        "conditions joined by ',' (with --top K: the K best that satisfy it).",
        flag=True,
    )
    tflite: bool = S(
        False,
        "Also write a fully int8 model.tflite and model_data.h for TFLite Micro, checked under LiteRT (implies "
        "--int8; needs pip install 'edgenas[tflite]').",
        flag=True,
    )
    max_tflite_diff: float = S(
        0.01,
        "Refuse model.tflite if its test accuracy is more than this fraction below model.int8.onnx's.",
        flag=True,
        check=lambda v: 0 <= v <= 1,
        allowed_text="between 0 and 1 (a fraction of accuracy)",
    )

    def __post_init__(self) -> None:
        schema.check_fields(self, "export")


@dataclass(frozen=True)
class SpaceSettings:
    name: str = "layerwise"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ControllerSettings:
    name: str = "predictor"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Pipeline:
    search: SearchSettings = field(default_factory=SearchSettings)
    dataset: DatasetSettings = field(default_factory=DatasetSettings)
    space: SpaceSettings = field(default_factory=SpaceSettings)
    controller: ControllerSettings = field(default_factory=ControllerSettings)
    training: TrainRecipe = field(default_factory=TrainRecipe)  # low fidelity: every child
    final_training: TrainRecipe = field(default_factory=lambda: TrainRecipe(epochs=40))  # export: the winner
    reward: RewardConfig = field(default_factory=RewardConfig)
    source: str = "(built-in defaults)"

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data.pop("source")
        for section in _TYPED_SECTIONS:  # JSON has lists, not tuples (e.g. reward.objectives)
            data[section] = {k: list(v) if isinstance(v, tuple) else v for k, v in data[section].items()}
        return data

    def to_toml_dict(self) -> dict[str, Any]:
        """The pipeline as a pipeline file's tables (None values left out, as TOML has no null)."""
        data = self.to_json()
        for name in _FREE_SECTIONS:
            section = data[name]
            data[name] = {"name": section["name"], **section["options"]}
        # In typed sections None means "not set" (TOML has no null): left out where that is the
        # default, written as "none" where the default is a value (no budget: budget_params = "none").
        # A free-form option set to None cannot be written and makes `schema.to_toml` raise.
        out: dict[str, Any] = {}
        for k, v in data.items():
            if k in _FREE_SECTIONS:
                out[k] = v
                continue
            defaults = {f.name: f.default for f in dataclasses.fields(_TYPED_SECTIONS[k])}
            out[k] = {
                kk: "none" if vv is None else vv for kk, vv in v.items() if vv is not None or defaults[kk] is not None
            }
        return out

    def to_toml(self) -> str:
        """A pipeline file with exactly these settings."""
        return schema.to_toml(
            self.to_toml_dict(), "The resolved settings of a run: `edgenas search --pipeline THIS_FILE` repeats it."
        )

    @classmethod
    def from_json(cls, data: dict[str, Any], source: str) -> "Pipeline":
        """Inverse of `to_json` (as stored in a run's database)."""
        tables = {}
        for name, section in data.items():
            if name in _FREE_SECTIONS:
                tables[name] = {"name": section["name"], **section["options"]}
            else:
                tables[name] = dict(section)  # an explicit None (e.g. no budget) must survive
        return parse_pipeline(tables, source)

    def differences(self, other: "Pipeline") -> list[str]:
        """'section.key: mine -> other' for every setting that differs."""
        a, b = self.to_json(), other.to_json()
        out = []
        for section in a:
            keys = set(a[section]) | set(b[section])
            for key in sorted(keys):
                if a[section].get(key) != b[section].get(key):
                    out.append(f"{section}.{key}: {a[section].get(key)!r} -> {b[section].get(key)!r}")
        return out

    def override(self, section: str, **values: Any) -> "Pipeline":
        """A copy with `values` replacing keys of `section` (None values are ignored)."""
        values = {k: v for k, v in values.items() if v is not None}
        if not values:
            return self
        current = getattr(self, section)
        return dataclasses.replace(self, **{section: dataclasses.replace(current, **values)})


_TYPED_SECTIONS = {
    "search": SearchSettings,
    "dataset": DatasetSettings,
    "training": TrainRecipe,
    "final_training": TrainRecipe,
    "reward": RewardConfig,
}
_FREE_SECTIONS = {"space": SpaceSettings, "controller": ControllerSettings}


def setting_sections() -> dict[str, type]:
    """The sections whose settings are declared in the schema and given by flag or API keyword
    ([final_training] has the same keys as [training]; it is set in a pipeline file)."""
    return {"search": SearchSettings, "dataset": DatasetSettings, "training": TrainRecipe, "reward": RewardConfig}


def api_settings() -> dict[str, tuple[str, str]]:
    """API keyword -> (section, key): every key of [search], [dataset], [training] (the children's
    recipe; [final_training] is set in a pipeline file) and [reward] by its own name, and each
    setting's `api` name where it declares one (budget -> reward.budget_params, epochs ->
    training.epochs, data -> dataset.name)."""
    out: dict[str, tuple[str, str]] = {}
    for section, cls in setting_sections().items():
        for f in dataclasses.fields(cls):
            if not (section == "dataset" and f.name == "name"):
                out[f.name] = (section, f.name)
            if f.metadata.get("api"):
                out[f.metadata["api"]] = (section, f.name)
    return out


def parse_pipeline(data: dict[str, Any], source: str) -> Pipeline:
    known = set(_TYPED_SECTIONS) | set(_FREE_SECTIONS)
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{source}: unknown section(s) {', '.join(unknown)}; allowed: {', '.join(sorted(known))}")
    parts: dict[str, Any] = {}
    for name, cls in _TYPED_SECTIONS.items():
        section = data.get(name, {})
        if not isinstance(section, dict):
            raise ConfigError(f"{source}: [{name}] must be a table")
        parts[name] = schema.from_table(cls, section, f"{source} [{name}]")
    for name, cls in _FREE_SECTIONS.items():
        section = data.get(name, {})
        if not isinstance(section, dict):
            raise ConfigError(f"{source}: [{name}] must be a table")
        section = dict(section)
        kind = section.pop("name", cls().name)
        if not isinstance(kind, str):
            raise ConfigError(f"{source} [{name}]: key 'name' must be a string")
        parts[name] = cls(name=kind, options=section)
    return Pipeline(**parts, source=source)


def pipeline_dirs() -> list[Path]:
    here = Path(__file__).resolve().parents[1]  # the edgenas package
    return [d for d in (here.parent / "pipelines", here / "_data" / "pipelines") if d.is_dir()]


def load_pipeline(name_or_path: str | os.PathLike[str] | None = None) -> Pipeline:
    """Load a pipeline by path, or by name from pipelines/ ('default' when None)."""
    name = str(name_or_path) if name_or_path is not None else "default"
    path = Path(name)
    if not (name.endswith(".toml") or os.sep in name):
        found = [d / f"{name}.toml" for d in pipeline_dirs() if (d / f"{name}.toml").is_file()]
        if not found:
            available = sorted({p.stem for d in pipeline_dirs() for p in d.glob("*.toml")})
            raise ConfigError(f"unknown pipeline '{name}'; available: {', '.join(available) or '(none)'}")
        path = found[0]
    return parse_pipeline(schema.read_toml(path, "pipeline"), str(path))
