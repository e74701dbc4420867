"""The run directory: where a search keeps everything, and how it is read back.

RUN_DIR/search.db        trials, samples, controller updates and run metadata (SQLite, the
                         single source of truth)
RUN_DIR/children/        each trained child's ONNX graph and weights
RUN_DIR/controller.ckpt  the controller's state before the next update (atomic)
RUN_DIR/pipeline.toml    the resolved settings: `edgenas search --pipeline` repeats the run
RUN_DIR/winner.onnx      the winner, checked against torch on the test images
RUN_DIR/data.npz         images given in memory through the Python API (edgenas.search(data=(x, y)))
RUN_DIR/manifest.json    written last: its presence means "finished"
"""

from __future__ import annotations

import io
import json
import platform
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from edgenas.constraints import Constraints
from edgenas.controllers.base import Controller
from edgenas.errors import EdgenasError, RunDirError
from edgenas.fsutil import atomic_write_bytes
from edgenas.hardware.latency import make_session
from edgenas.hardware.onnx import INPUT_NAME, OPSET, OUTPUT_NAME, export_onnx, onnx_logits
from edgenas.hardware.profiles import Profile
from edgenas.run.store import Store, Trial
from edgenas.settings.pipeline import Pipeline
from edgenas.spaces.base import SearchSpace
from edgenas.table import Table
from edgenas.training.data import Dataset
from edgenas.training.trainer import accuracy, predict
from edgenas.version import __version__

PARITY_TOLERANCE = 1e-4


DB_NAME = "search.db"
CHECKPOINT_NAME = "controller.ckpt"


PIPELINE_NAME = "pipeline.toml"
ARRAYS_NAME = "data.npz"  # images a Python caller gave in memory (edgenas.search(data=(x, y)))


MANIFEST_NAME = "manifest.json"


def versions() -> dict[str, str]:
    from importlib.metadata import version

    import onnx
    import onnxruntime
    import sklearn
    import thop  # noqa: F401

    return {
        "edgenas": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "thop": version("thop"),
        "scikit-learn": sklearn.__version__,
        "numpy": np.__version__,
    }


def make_run_dir(runs_dir: str | Path, profile: str, name: str | None = None) -> Path:
    """Create a fresh run directory; raises RunDirError when it cannot be written."""
    runs_dir = Path(runs_dir)
    if name is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise RunDirError(
            f"--name {name!r} is not a plain directory name; use letters, digits, '.', '_' and '-' "
            "(the run goes under --runs-dir)"
        )
    if name is None:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        name = f"{stamp}-{profile}"
    run_dir = runs_dir / name
    suffix = 1
    try:
        while True:
            try:
                run_dir.mkdir(parents=True, exist_ok=False)
                break
            except FileExistsError:
                suffix += 1
                run_dir = runs_dir / f"{name}-{suffix}"
        (run_dir / "children").mkdir()
        probe = run_dir / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise RunDirError(
            f"cannot create the run directory under '{runs_dir}': {exc.strerror or exc}; "
            "choose a writable place with --runs-dir"
        ) from exc
    return run_dir


def save_checkpoint(run_dir: Path, update_index: int, controller: Controller) -> None:
    """Atomically write the controller's whole state as it is before proposing `update_index`."""
    buf = io.BytesIO()
    torch.save({"format": 1, "update_index": update_index, "controller": controller.state_dict()}, buf)
    atomic_write_bytes(run_dir / CHECKPOINT_NAME, buf.getvalue(), fault_point="checkpoint-write")


def load_checkpoint(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / CHECKPOINT_NAME
    if not path.exists():
        return None
    try:
        return torch.load(path, weights_only=True)
    except Exception as exc:
        raise RunDirError(f"the controller checkpoint {path} cannot be read ({exc})") from exc


def load_run_pipeline(run_dir: Path) -> Pipeline:
    """The settings a run was started with, from its database."""
    db = Path(run_dir) / DB_NAME
    stillborn = (
        f"the search in '{run_dir}' stopped before it saved its settings (nothing was trained, nothing to "
        "resume); start a new search, and delete that directory"
    )
    if not db.is_file() and (Path(run_dir) / "children").is_dir() and not any((Path(run_dir) / "children").iterdir()):
        raise RunDirError(stillborn)
    if not db.is_file():
        raise RunDirError(
            f"'{run_dir}' is not an edgenas run directory (no {DB_NAME} in it); give the directory "
            "that `edgenas search` printed"
        )
    with Store(db, readonly=True) as store:
        data = store.get_meta("pipeline")
        trials = store.status_counts() if data is None else None
    if data is None and trials is not None and not sum(trials.values()):
        raise RunDirError(stillborn)
    if data is None:
        raise RunDirError(f"{db} holds no pipeline settings; it was not written by edgenas search")
    pipeline = Pipeline.from_json(data, source=str(db))
    name = pipeline.dataset.name
    kept = Path(run_dir) / ARRAYS_NAME
    if name.startswith("arrays:") and not Path(name[7:]).is_file() and kept.is_file():  # the run dir moved
        pipeline = pipeline.override("dataset", name=f"arrays:{kept.resolve()}")
    return pipeline


def describe_dataset(data: Dataset) -> dict[str, Any]:
    return {
        "name": data.name,
        "sizes": data.sizes(),
        "input_shape": list(data.input_shape),
        "classes": data.classes,
        "normalisation": {"mean": data.mean, "std": data.std, "pixel_scale": data.pixel_scale},
    }


def write_verified_onnx(
    model: torch.nn.Module, data: Dataset, path: Path, metadata: dict[str, str], profile: Profile
) -> tuple[bytes, float, float]:
    """Export `model` with `metadata` to `path` and check it on the real test images: onnxruntime
    (as `profile` configures it) must give torch's logits within PARITY_TOLERANCE.

    Returns the ONNX bytes, the largest absolute difference and onnxruntime's test accuracy."""
    onnx_bytes = export_onnx(model, data.input_shape, metadata)
    atomic_write_bytes(path, onnx_bytes)
    session = make_session(str(path), profile)
    ort_logits = onnx_logits(session, data.x_test)
    torch_logits = predict(model, data.x_test).numpy()
    max_diff = float(np.abs(ort_logits - torch_logits).max())
    if max_diff > PARITY_TOLERANCE:
        raise EdgenasError(
            f"{path.name} differs from the torch model by {max_diff:.3g} (> {PARITY_TOLERANCE}); "
            "the export is not trustworthy, please report this with the run directory"
        )
    return onnx_bytes, max_diff, float((ort_logits.argmax(1) == data.y_test.numpy()).mean())


def onnx_metadata(
    data: Dataset,
    profile: Profile,
    arch: dict[str, Any],
    params: int,
    latency: dict[str, Any] | None,
    accuracy: dict[str, float | None],
) -> dict[str, str]:
    """Metadata properties of a deployable model: enough to use it without edgenas."""
    lat = latency or {}
    return {
        "edgenas_version": __version__,
        "architecture": json.dumps(arch),
        "classes": json.dumps(data.classes),
        "input_shape": json.dumps([-1, *data.input_shape]),
        "normalisation": json.dumps({"mean": data.mean, "std": data.std, "pixel_scale": data.pixel_scale}),
        "profile": profile.name,
        "latency_ms": json.dumps({"median": lat.get("median_ms"), "p90": lat.get("p90_ms"), "where": lat.get("label")}),
        "params": str(params),
        **{f"{k}_accuracy": f"{v:.6f}" for k, v in accuracy.items() if v is not None},
    }


def finalize(
    store: Store,
    run_dir: Path,
    space: SearchSpace,
    data: Dataset,
    profile: Profile,
    pipeline: Pipeline,
    wall_seconds: float,
    command: str | None,
    table: Table | None = None,
) -> dict[str, Any]:
    """Pick the best feasible child, score it on the test split, write and verify winner.onnx.
    In a tabular search the winner's test accuracy comes from the table and there is no
    winner.onnx (nothing was trained)."""
    manifest = _manifest(store, run_dir, data, profile, pipeline, wall_seconds, command)
    if pipeline.reward.objectives:  # the result is the front; it is kept in the database too
        manifest["front"] = _front(store, pipeline.reward.objectives)
    top = store.top(1)
    if not top:
        return manifest
    trial = top[0]
    arch = space.arch_from_json(trial.arch)
    winner = manifest["winner"] = _winner_entry(trial)
    if table is not None:
        manifest["table"] = {"path": str(table.path), "val_column": table.val_column, "test_column": table.test_column}
        winner["test_accuracy"] = table.lookup(space, arch)[1]
        return manifest
    model = space.build(arch)
    try:
        model.load_state_dict(torch.load(run_dir / str(trial.weights_path), weights_only=True))
    except (OSError, RuntimeError) as exc:
        raise RunDirError(
            f"the weights of the best child, trial {trial.id} ({run_dir / str(trial.weights_path)}), cannot be read "
            f"({exc}); the run directory is incomplete: restore children/ from a copy"
        ) from exc
    model.eval()
    test_acc = accuracy(model, data.x_test, data.y_test)
    metadata = onnx_metadata(
        data, profile, trial.arch, trial.params, trial.latency, {"val": trial.val_accuracy, "test": test_acc}
    )
    onnx_bytes, max_diff, test_acc_onnx = write_verified_onnx(model, data, run_dir / "winner.onnx", metadata, profile)
    winner.update(
        test_accuracy=test_acc,
        test_accuracy_onnx=test_acc_onnx,
        onnx={
            "path": "winner.onnx",
            "opset": OPSET,
            "input": INPUT_NAME,
            "output": OUTPUT_NAME,
            "bytes": len(onnx_bytes),
            "parity_max_abs_diff": max_diff,
            "parity_inputs": f"{len(data.y_test)} test-split images",
        },
    )
    return manifest


def _manifest(
    store: Store,
    run_dir: Path,
    data: Dataset,
    profile: Profile,
    pipeline: Pipeline,
    wall_seconds: float,
    command: str | None,
) -> dict[str, Any]:
    """The manifest's settings and counts (no winner yet)."""
    counts = store.status_counts()
    return {
        "edgenas_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(),
        "command": command,
        "run_dir": str(run_dir),
        "dataset": describe_dataset(data),
        "profile": {**profile.settings(), "fingerprint": profile.fingerprint(), "latency_label": profile.latency_label},
        "reward": pipeline.to_json()["reward"],
        "constraints": Constraints.build(pipeline.reward, profile).describe(),
        "pipeline": pipeline.to_json(),
        "search": {
            "samples": store.sample_count(),
            "trained": counts["ok"],
            "rejected": counts["rejected"],
            "failed": counts["failed"],
            "stopped_early": counts["stopped"],
            "reused": store.sample_count() - sum(counts.values()),
            "wall_seconds": wall_seconds,
        },
        "versions": versions(),
        "templates": template_results(store),
        "finalists": finalist_results(store, pipeline.search.finalists),
        "winner": None,
    }


def finalist_results(store: Store, k: int) -> list[dict[str, Any]]:
    """--finalists K: the children trained again for longer (rung 1: the K best and the best
    template), best first, with the epochs their accuracy is after and the template each is, if any."""
    if not k:
        return []
    names = {t["key"]: t["name"] for t in store.get_meta("templates") or []}
    out = []
    for trial in store.at_rung(1, k + 1):
        rung = store.rung_result(trial.id, 1)
        out.append(
            {
                "trial_id": trial.id,
                "template": names.get(trial.arch_key),
                "epochs": rung.epochs if rung else None,
                "val_accuracy": trial.val_accuracy,
                "params": trial.params,
            }
        )
    return out


def template_results(store: Store) -> list[dict[str, Any]]:
    """The templates the search evaluated first (`loop.templates`) with what each got."""
    out = []
    for t in store.get_meta("templates") or []:
        trial = store.trial_by_key(t["key"])
        out.append(
            {
                "name": t["name"],
                "key": t["key"],
                "trial_id": trial.id if trial else None,
                "status": trial.status if trial else "not evaluated",
                "val_accuracy": trial.val_accuracy if trial else None,
                "params": trial.params if trial else None,
                "reward": trial.reward if trial else None,
                "latency_ms": trial.latency_median_ms if trial else None,
                "epochs": rung.epochs
                if trial and trial.rung and (rung := store.rung_result(trial.id, trial.rung))
                else None,
            }
        )
    return out


def _front(store: Store, objectives: Sequence[str]) -> dict[str, Any]:
    """The Pareto front of a multi-objective search (also stored in the database's meta)."""
    from edgenas import pareto

    ok = store.trials("ok")
    result = pareto.summary(ok, objectives)
    store.set_meta("pareto", result)
    by_id = {t.id: t for t in ok}
    return {
        **result,
        "members": [
            {"trial_id": i, "arch_key": by_id[i].arch_key, **pareto.trial_values(by_id[i])} for i in result["trial_ids"]
        ],
    }


def _winner_entry(trial: Trial) -> dict[str, Any]:
    return {
        "trial_id": trial.id,
        "arch_key": trial.arch_key,
        "architecture": trial.arch,
        "params": trial.params,
        "macs": trial.macs,
        "flops": trial.flops,
        "val_accuracy": trial.val_accuracy,
        "test_accuracy": None,
        "latency": trial.latency,
        "memory": trial.memory,
        "fp32_val_accuracy": trial.fp32_val_accuracy,
        "reward": trial.reward,
        "reward_terms": trial.reward_terms,
        "onnx": None,
    }
