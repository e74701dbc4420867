"""The Python API: `edgenas.search`, `edgenas.export`, `edgenas.bench`, `edgenas.load_run`,
`edgenas.report`, `edgenas.profiles`, `edgenas.calibrate`.

    import edgenas

    run = edgenas.search("digits", budget=20_000, children=20, epochs=2, runs_dir="runs")
    print(run.winner.params, run.winner.test_accuracy, run.winner.onnx_path)
    bundle = edgenas.export(run)[0]
    rows = edgenas.bench([run.winner.onnx_path], ["cpu-arm", "cpu-x86"])

The functions take the settings the CLI flags take (keyword arguments, the same names as the
pipeline file's keys) over a pipeline (a name from pipelines/ or a file), run the same code as
the CLI and raise the same `edgenas.errors` exceptions, with the same messages, on bad input.
Progress is shown with rich, as on the command line, unless `progress=False`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from edgenas.errors import ConfigError, DataError, RunDirError
from edgenas.run.rundir import ARRAYS_NAME, DB_NAME, MANIFEST_NAME, load_run_pipeline, make_run_dir
from edgenas.run.store import Store, Trial
from edgenas.settings.pipeline import Pipeline, api_settings, load_pipeline


@dataclass(frozen=True)
class Winner:
    """The best feasible child of a finished search (`manifest.json`'s winner)."""

    trial_id: int
    arch_key: str
    architecture: dict[str, Any]
    params: int
    macs: int | None
    val_accuracy: float | None
    test_accuracy: float | None
    latency_ms: float | None  # the profile's median (measured or predicted, see `latency_label`)
    latency_label: str | None
    onnx_path: Path | None  # winner.onnx, verified against torch (None for a table search)

    @classmethod
    def from_manifest(cls, run_dir: Path, w: dict[str, Any]) -> "Winner":
        lat = w.get("latency") or {}
        onnx = (w.get("onnx") or {}).get("path")
        return cls(
            w["trial_id"],
            w["arch_key"],
            w["architecture"],
            w["params"],
            w.get("macs"),
            w.get("val_accuracy"),
            w.get("test_accuracy"),
            lat.get("median_ms"),
            lat.get("label"),
            run_dir / onnx if onnx else None,
        )


@dataclass(frozen=True)
class Run:
    """A run directory: what a search wrote, read back (a finished or an interrupted one)."""

    path: Path
    pipeline: Pipeline
    manifest: dict[str, Any] | None  # None while the search has not finished

    @property
    def finished(self) -> bool:
        return self.manifest is not None

    @property
    def winner(self) -> Winner | None:
        w = (self.manifest or {}).get("winner")
        return Winner.from_manifest(self.path, w) if w else None

    @property
    def front(self) -> list[Trial]:
        """A multi-objective run's Pareto front (best validation accuracy first); [] otherwise."""
        objectives = self.pipeline.reward.objectives
        if not objectives:
            return []
        from edgenas.pareto import front

        return front(self.trials("ok"), objectives)

    def trials(self, status: str | None = None) -> list[Trial]:
        """Every trial (or those with `status`: ok, rejected, failed, stopped), in evaluation order."""
        with Store(self.path / DB_NAME, readonly=True) as store:
            return store.trials(status)

    def top(self, k: int = 5) -> list[Trial]:
        """The k best finished trials, best first (as `edgenas report` ranks them)."""
        with Store(self.path / DB_NAME, readonly=True) as store:
            return store.top(k)


def load_run(path: str | Path) -> Run:
    """A run directory written by `edgenas search` (or `edgenas.search`)."""
    path = Path(path)
    if not (path / DB_NAME).is_file():
        raise RunDirError(f"'{path}' is not an edgenas run directory (no {DB_NAME} in it)")
    manifest = None
    if (path / MANIFEST_NAME).is_file():
        import json

        manifest = json.loads((path / MANIFEST_NAME).read_text())
    return Run(path, load_run_pipeline(path), manifest)


DataArg = Any  # a dataset name, (x, y), {"train": (x, y), "val": ..., "test": ..., "classes": [...]}, or a Dataset


def make_pipeline(
    data: str | None = None,
    *,
    pipeline: str | Path | Pipeline | None = None,
    budget: int | None = None,
    no_budget: bool = False,
    epochs: int | None = None,
    space: str | type | None = None,
    controller: str | None = None,
    **settings: Any,
) -> Pipeline:
    """The pipeline a search with these settings runs: `pipeline` (a name from pipelines/, a
    file, or a Pipeline; without one, 'photos' for a dataset of photos, else 'default': see
    `setup_for`) with the dataset name `data` (digits, mnist,
    fashion-mnist, cifar10, folder:PATH, arrays:PATH.npz), `budget` (or `no_budget=True`),
    `epochs`, `space` (a registered name, 'module:Class', or a SearchSpace subclass),
    `controller` and every key of the pipeline's [search], [dataset], [training] and [reward]
    sections by name (children=..., profile=..., batch_size=...; see
    `edgenas.settings.pipeline.api_settings`). None means "as the pipeline says"."""
    import dataclasses

    from edgenas.settings.pipeline import ControllerSettings, SpaceSettings

    if budget is not None and no_budget:
        raise ConfigError("--budget and --no-budget contradict each other; give one of them")
    chosen, _ = setup_for(data, pipeline, settings)
    pipe = chosen if isinstance(chosen, Pipeline) else load_pipeline(chosen)
    keywords = api_settings()
    values: dict[str, dict[str, Any]] = {}
    if data is not None and not isinstance(data, str):
        raise ConfigError(f"data must be a dataset name here, got {type(data).__name__}")
    for key, value in {**settings, "data": data, "budget": budget, "epochs": epochs}.items():
        if key not in keywords:
            raise ConfigError(f"'{key}' is not a search setting; use one of: {', '.join(sorted(keywords))}")
        if value is not None:
            section, name = keywords[key]
            values.setdefault(section, {})[name] = str(value) if isinstance(value, Path) else value
    for section, vals in values.items():
        pipe = pipe.override(section, **vals)
    if no_budget:
        pipe = dataclasses.replace(pipe, reward=dataclasses.replace(pipe.reward, budget_params=None))
    if space is not None:
        from edgenas.spaces import space_name

        name = space_name(space)
        if name != pipe.space.name:
            pipe = dataclasses.replace(pipe, space=SpaceSettings(name, {}))
    if controller is not None and controller != pipe.controller.name:
        pipe = dataclasses.replace(pipe, controller=ControllerSettings(controller, {}))
    if pipe.search.finalists and settings.get("finalists") is None and pipe.search.why_no_finalists():
        # the pipeline's finalists (the photos setup's) give way to the way of searching asked for,
        # which picks its winner its own way; --finalists given with it is refused by `prepare`
        pipe = pipe.override("search", finalists=0)
    return pipe


def setup_for(
    data: Any, pipeline: str | Path | Pipeline | None, settings: dict[str, Any]
) -> tuple[str | Path | Pipeline, str | None]:
    """The pipeline a new search starts from, and why when it was chosen for the data: the one
    asked for; without one, `photos` (pipelines/photos.toml) for a dataset of photos (RGB, at
    least 16 px a side: `cifar10`, a folder or arrays of such images), `default` otherwise."""
    if pipeline is not None:
        return pipeline, None
    from edgenas.training.data import photos_reason

    x = data[0] if isinstance(data, tuple) and len(data) == 2 else None
    if isinstance(data, dict) and isinstance(data.get("train"), (tuple, list)):
        x = data["train"][0]
    shape = getattr(x, "shape", None)
    name = data if isinstance(data, str) else None
    why = photos_reason(name, settings.get("image_size"), settings.get("channels"), shape)
    return ("photos", why) if why else ("default", None)


def search(
    data: DataArg = None,
    *,
    pipeline: str | Path | None = None,
    budget: int | None = None,
    no_budget: bool = False,
    epochs: int | None = None,
    space: str | type | None = None,
    controller: str | None = None,
    name: str | None = None,
    resume: str | Path | None = None,
    progress: bool | Callable[[Any], None] = True,
    on_start: Callable[[Path, Any], None] | None = None,
    no_cache: bool = False,
    command: str = "edgenas.loop.run",
    **settings: Any,
) -> Run:
    """Run a search (as `edgenas search` does) and return its run directory, finished.

    `data`: a dataset name (digits, mnist, fashion-mnist, cifar10 with `data_dir=`, folder:PATH,
    arrays:PATH.npz), images in memory as `(x, y)` or `{"train": (x, y), "val": (x, y),
    "test": (x, y), "classes": [...]}` (numpy arrays or torch tensors, N x C x H x W uint8
    pixels or floats, integer labels; val and test optional, cut from train when missing), or a
    `torch.utils.data.Dataset` of (image, label) pairs (decoded once). Arrays are written to
    the run directory as data.npz, so `export` and `resume` find them.
    `space`: a registered name, 'module:Class', or a SearchSpace subclass (importable by that
    path, so worker processes can build it too).
    `progress`: True (a rich line per child on stderr), False (silent) or a callable that gets
    each `edgenas.search.Progress`. `on_start(run_dir, prepared)` is called once the settings
    are checked and the run directory exists, before anything is trained.
    `resume`: continue an interrupted search in that run directory with its own settings; any
    setting given with it must equal the stored one."""
    from edgenas.hardware.latency import Measurer, default_measurer
    from edgenas.loop.run import prepare, run_search

    on_progress = _progress(progress) if isinstance(progress, bool) else progress
    options = dict(budget=budget, no_budget=no_budget, epochs=epochs, space=space, controller=controller, **settings)
    if resume is not None:
        if name is not None:
            raise ConfigError("--resume continues an existing run directory; --name cannot rename it")
        run_dir = Path(resume)
        base = load_run_pipeline(run_dir)
        if pipeline is not None:
            _refuse_contradictions(run_dir, base, load_pipeline(pipeline))
        if data is not None and not isinstance(data, str):
            raise ConfigError("resume reads the run's own data; give no data with it")
        pipe = make_pipeline(data, pipeline=base, **options)
        _refuse_contradictions(run_dir, base, pipe)  # finished or not: a contradiction is refused
        if (run_dir / MANIFEST_NAME).is_file():
            return load_run(run_dir)
        prepared = prepare(pipe)
        arrays = None
    else:
        chosen, why = setup_for(data, pipeline, options)
        pipe = make_pipeline(data if isinstance(data, str) else None, pipeline=chosen, **options)
        arrays = None if data is None or isinstance(data, str) else _arrays_file(data, pipe)
        if arrays is not None:
            pipe = pipe.override("dataset", name=f"arrays:{arrays}")
    try:
        if resume is None:
            prepared = prepare(pipe)  # bad input fails here, before any directory or training
            prepared.setup = f"photos (pipelines/photos.toml), because {why}" if why else None
            run_dir = make_run_dir(pipe.search.runs_dir, prepared.profile.name, name)
            if arrays is not None:  # the run keeps its data: export and resume read it there
                import shutil

                kept = (run_dir / ARRAYS_NAME).resolve()
                shutil.move(arrays, kept)
                pipe = pipe.override("dataset", name=f"arrays:{kept}")
                prepared.data.name = pipe.dataset.name
        if on_start is not None:
            on_start(run_dir, prepared)
        measurer = Measurer(use_cache=False) if no_cache else default_measurer()
        run_search(
            pipe,
            run_dir=run_dir,
            on_progress=on_progress,
            command=command,
            prepared=prepared,
            resume=resume is not None,
            measurer=measurer,
        )
    finally:
        if arrays is not None:
            arrays.unlink(missing_ok=True)
    return load_run(run_dir)


def _arrays_file(data: DataArg, pipe: Pipeline) -> Path:
    """Images given in memory, checked and written to a temporary .npz (moved into the run
    directory once it exists)."""
    import os
    import tempfile

    from edgenas.training.data import check_arrays, save_arrays

    classes = None
    if isinstance(data, tuple) and len(data) == 2:
        splits = {"train": data}
    elif isinstance(data, dict):
        splits = {k: v for k, v in data.items() if k != "classes"}
        classes = data.get("classes")
        for split, pair in splits.items():
            if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
                raise DataError(f"data['{split}'] must be a pair (images, labels), got {type(pair).__name__}")
    elif hasattr(data, "__getitem__") and hasattr(data, "__len__"):
        splits = {"train": _decode_dataset(data)}
        classes = getattr(data, "classes", None)
    else:
        raise DataError(
            f"data of type {type(data).__name__} is not a dataset: give a name (digits, folder:PATH, ...), "
            "(x, y) arrays, a dict of splits or a torch Dataset"
        )
    checked, names, _ = check_arrays("data", splits, classes)
    fd, name = tempfile.mkstemp(prefix="edgenas-arrays-", suffix=".npz")
    os.close(fd)
    try:
        save_arrays(Path(name), checked, names)
    except OSError as exc:
        Path(name).unlink(missing_ok=True)
        raise RunDirError(f"cannot write the data arrays to {name}: {exc}") from exc
    return Path(name).resolve()


def _decode_dataset(ds: Any) -> tuple[Any, Any]:
    """A map-style Dataset of (image, label) pairs as two arrays; PIL images become C x H x W."""
    import numpy as np

    xs, ys = [], []
    for i in range(len(ds)):
        item = ds[i]
        if not (isinstance(item, (tuple, list)) and len(item) >= 2):
            raise DataError(f"data[{i}] is a {type(item).__name__}; a Dataset must give (image, label) pairs")
        x, y = item[0], item[1]
        if hasattr(x, "mode") and hasattr(x, "size"):  # a PIL image: H x W (x C)
            a = np.asarray(x)
            x = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
        xs.append(np.asarray(x.detach().cpu() if hasattr(x, "detach") else x))
        ys.append(int(y))
    if not xs:
        raise DataError("the Dataset is empty; give images")
    if len({a.shape for a in xs}) > 1:
        raise DataError("the Dataset's images have different shapes; resize them to one size (e.g. a transform)")
    return np.stack(xs), np.asarray(ys, dtype=np.int64)


def _refuse_contradictions(run_dir: Path, stored: Pipeline, requested: Pipeline) -> None:
    diffs = stored.differences(requested)
    if diffs:
        reuse = (
            " (with the same dataset, space and training settings it reuses this run's trained supernet: another "
            "profile or limit is searched without training it again)"
            if stored.search.executor == "supernet"
            else ""
        )
        raise ConfigError(
            f"these settings contradict the ones {run_dir} was started with (stored -> requested): "
            + "; ".join(diffs)
            + f". Resume without them, or start a new search{reuse}"
        )


def _progress(show: bool):
    """A rich progress line per finished child (None: silent)."""
    if not show:
        return None
    from rich.console import Console

    console = Console(stderr=True)
    seen = {"n": -1}

    def on_progress(p) -> None:  # type: ignore[no-untyped-def]
        if p.sampled == seen["n"] and p.phase == "search":
            return
        seen["n"] = p.sampled
        best = f"best {100 * p.best_val_accuracy:.2f} % ({p.best_params:,} params)" if p.best_params else "no best yet"
        console.print(
            f"[{p.phase}] {p.sampled}/{p.total} sampled: trained {p.trained}, rejected {p.rejected}, "
            f"failed {p.failed}, reused {p.reused}; {best}; {p.elapsed_seconds:.0f} s",
            highlight=False,
        )

    return on_progress


def export(
    run: Run | str | Path,
    *,
    progress: bool | Callable[[str], None] = True,
    **settings: Any,
) -> list[Any]:
    """Retrain the winner (or the `top` best, or what `pick` chooses: 'knee', 'latency_ms<=2',
    ... from the front of a multi-objective run) on train + validation and write deployable
    bundles (as `edgenas export`); returns one `BundleResult` (path, manifest) per bundle.
    `settings`: any of `edgenas.settings.pipeline.ExportSettings` by name (profile, int8, max_int8_drop,
    top, out, calibration_images, pick, tflite, max_tflite_diff); None means its default.
    `tflite` (needs `pip install 'edgenas[tflite]'`): also a fully int8 model.tflite and its C
    header for TFLite Micro, checked under LiteRT against the int8 ONNX model.
    `progress`: True (rich lines on stderr), False, or a callable given each step's message."""
    from edgenas.deploy.bundle import export_run

    path = run.path if isinstance(run, Run) else Path(run)
    step = progress if callable(progress) else None
    if progress is True:
        from rich.console import Console

        console = Console(stderr=True)

        def step(msg: str) -> None:
            console.print(msg, highlight=False)

    return export_run(path, on_step=step, **settings)


def bench(
    models: Sequence[str | Path],
    profiles: Sequence[str] = ("cpu-arm",),
    top: int | None = None,
    no_cache: bool = False,
) -> list[dict[str, Any]]:
    """Latency of ONNX files or of a run's candidates (its `top` best) under each profile (as
    `edgenas bench`): one dict per (model, profile) with the median and the rest of the
    statistics. `no_cache`: time again instead of reusing cached latencies."""
    from edgenas.deploy.bench import bench_models
    from edgenas.hardware.latency import Measurer

    if top is not None and top < 1:
        raise ConfigError(f"--top must be >= 1, got {top}")
    return bench_models([str(m) for m in models], list(profiles), top, Measurer(use_cache=False) if no_cache else None)


def report(run: Run | str | Path, out: str | Path | None = None) -> Path:
    """Write a run's HTML report (as `edgenas report`; plots embedded) and return its path;
    the numbers behind it are `load_run(run)`'s trials, top and front."""
    from edgenas.run.report import write_report

    path = run.path if isinstance(run, Run) else Path(run)
    return write_report(path, Path(out) if out is not None else None)


def profiles() -> dict[str, Any]:
    """Every hardware profile edgenas finds (as `edgenas profiles`), by name, loaded."""
    from edgenas.hardware.profiles import available_profiles, load_profile

    return {name: load_profile(str(path)) for name, path in available_profiles().items()}


def calibrate(
    pairs: str | Path,
    *,
    profile: str = "cpu-arm-host",
    graph_only: bool = False,
    name: str | None = None,
    out_dir: str | Path | None = None,
    limit: int | None = None,
    folds: int = 5,
    progress: Callable[[int, int], None] | None = None,
    board: str | None = None,
    framework: str | None = None,
    target: str | None = None,
) -> tuple[Any, list[Path], Any]:
    """Fit a latency predictor (and, where the file has energies, an energy predictor) from board
    timings and write the calibrated profile (as `edgenas calibrate`): returns (the fit with its
    cross-validated quality, the files written, the base profile). `board` / `framework` choose
    the rows of a boards file; `target` names the device in the profile written."""
    import re

    from edgenas.hardware.calibrate import calibrate as fit
    from edgenas.hardware.calibrate import write_calibrated_profile
    from edgenas.hardware.profiles import load_profile

    base = load_profile(profile)
    if folds < 2:
        raise ConfigError(f"--folds must be >= 2, got {folds}")
    if name is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise ConfigError(f"--name {name!r} is not a plain profile name; use letters, digits, '.', '_' and '-'")
    fitted = fit(
        profile, Path(pairs), limit, folds, on_progress=progress, host_timing=not graph_only, board=board,
        framework=framework,
    )  # fmt: skip
    where = Path(out_dir) if out_dir is not None else Path(base.source_path).parent
    written = write_calibrated_profile(base.source_path, fitted, where, name, target=target)
    return fitted, written, base
