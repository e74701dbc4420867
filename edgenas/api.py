"""The Python API: `edgenas.search`, `edgenas.export`, `edgenas.bench`, `edgenas.load_run`.

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
from typing import Any, Sequence

from edgenas.config import Pipeline, load_pipeline
from edgenas.errors import ConfigError, RunDirError
from edgenas.rundir import DB_NAME, MANIFEST_NAME, load_run_pipeline
from edgenas.store import Store, Trial


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


# settings keyword -> pipeline section, for the ones the CLI has flags for
_SECTIONS = {
    "search": (
        "children", "architectures_per_update", "seed", "profile", "device", "max_minutes", "max_evaluated",
        "runs_dir", "executor", "workers", "children_per_gpu", "early_stopping", "fidelity", "min_epochs",
        "reduction", "table", "table_metric", "ray_address",
    ),
    "dataset": ("val_fraction", "test_fraction", "split_seed", "data_dir", "download", "image_size", "channels",
                "max_images"),
    "reward": ("budget_params", "mode", "max_latency_ms", "latency_limit", "params_weight", "flops_weight",
               "params_threshold", "flops_threshold", "latency_threshold_ms", "latency_target_ms", "mnas_weight",
               "max_ram_kb", "max_flash_kb", "reject_reward"),
}  # fmt: skip


def make_pipeline(
    data: str | None = None,
    *,
    pipeline: str | Path | None = None,
    budget: int | None = None,
    epochs: int | None = None,
    space: str | None = None,
    controller: str | None = None,
    **settings: Any,
) -> Pipeline:
    """The pipeline a search with these settings runs: `pipeline` (default: 'default') with the
    dataset name `data` (digits, mnist, fashion-mnist, cifar10, folder:PATH), `budget`, `epochs`,
    `space`, `controller` and any of the pipeline's keys given by name (children=..., profile=...)."""
    import dataclasses

    from edgenas.config import ControllerSettings, SpaceSettings

    pipe = load_pipeline(pipeline or "default")
    values: dict[str, dict[str, Any]] = {section: {} for section in _SECTIONS}
    for key, value in settings.items():
        section = next((s for s, keys in _SECTIONS.items() if key in keys), None)
        if section is None:
            known = sorted(k for keys in _SECTIONS.values() for k in keys)
            raise ConfigError(f"'{key}' is not a search setting; use one of: {', '.join(known)}")
        values[section][key] = value
    if data is not None:
        if not isinstance(data, str):
            raise ConfigError(
                f"data must be a dataset name (digits, mnist, fashion-mnist, cifar10 or folder:PATH), got "
                f"{type(data).__name__}; arrays in memory are not supported yet"
            )
        values["dataset"]["name"] = data
    if budget is not None:
        values["reward"]["budget_params"] = budget
    for section, vals in values.items():
        pipe = pipe.override(section, **vals)
    pipe = pipe.override("training", epochs=epochs)
    if space is not None and space != pipe.space.name:
        pipe = dataclasses.replace(pipe, space=SpaceSettings(space, {}))
    if controller is not None and controller != pipe.controller.name:
        pipe = dataclasses.replace(pipe, controller=ControllerSettings(controller, {}))
    return pipe


def search(
    data: str | None = None,
    *,
    pipeline: str | Path | None = None,
    budget: int | None = None,
    epochs: int | None = None,
    space: str | None = None,
    controller: str | None = None,
    name: str | None = None,
    resume: str | Path | None = None,
    progress: bool = True,
    **settings: Any,
) -> Run:
    """Run a search (as `edgenas search` does) and return its run directory, finished.

    `resume`: continue an interrupted search in that run directory (its own settings; nothing
    else may be given then)."""
    from edgenas.search import run_search

    if resume is not None:
        if any(v is not None for v in (data, pipeline, budget, epochs, space, controller, name)) or settings:
            raise ConfigError("resume continues a run with its own settings; give nothing else with it")
        run_dir = Path(resume)
        pipe = load_run_pipeline(run_dir)
        if (run_dir / MANIFEST_NAME).is_file():
            return load_run(run_dir)
        run_search(pipe, run_dir=run_dir, resume=True, on_progress=_progress(progress), command="edgenas.search")
        return load_run(run_dir)
    pipe = make_pipeline(
        data, pipeline=pipeline, budget=budget, epochs=epochs, space=space, controller=controller, **settings
    )
    result = run_search(pipe, run_name=name, on_progress=_progress(progress), command="edgenas.search")
    return load_run(result.run_dir)


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
    profile: str | None = None,
    int8: bool = False,
    max_int8_drop: float = 0.01,
    top: int = 1,
    out: str | Path | None = None,
    progress: bool = True,
) -> list[Any]:
    """Retrain the winner (or the `top` best) on train + validation and write deployable bundles
    (as `edgenas export`); returns one `BundleResult` (path, manifest) per bundle."""
    from edgenas.export import export_run

    path = run.path if isinstance(run, Run) else Path(run)
    step = None
    if progress:
        from rich.console import Console

        console = Console(stderr=True)

        def step(msg: str) -> None:
            console.print(msg, highlight=False)

    return export_run(
        path,
        profile,
        int8=int8,
        max_int8_drop=max_int8_drop,
        top=top,
        out=Path(out) if out is not None else None,
        on_step=step,
    )


def bench(
    models: Sequence[str | Path], profiles: Sequence[str] = ("cpu-arm",), top: int | None = None
) -> list[dict[str, Any]]:
    """Latency of ONNX files or of a run's candidates under each profile (as `edgenas bench`):
    one dict per (model, profile) with the median and the rest of the statistics."""
    from edgenas.bench import bench_models

    return bench_models([str(m) for m in models], list(profiles), top)
