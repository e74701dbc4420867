"""The deployable bundle of a finished (or interrupted) search: `edgenas export RUN_DIR`.

For the winner (or each of the top k): retrain at full fidelity on train + validation with the
pipeline's [final_training] recipe, score on the test split, write model.onnx (opset pinned, named
input/output, dynamic batch, metadata properties; parity with torch checked on the test images),
time it under the profile, optionally quantize it to int8 with onnxruntime's static quantization
(calibrated on training images) and compare, and write manifest.json and README.txt. The bundle
needs nothing but onnxruntime and numpy to run.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from edgenas.deploy import tflite as tfl
from edgenas.errors import ConfigError, EdgenasError, MeasurementError, RunDirError
from edgenas.evaluate import child_seed
from edgenas.fsutil import atomic_write_bytes, atomic_write_json
from edgenas.hardware.latency import make_session, measure_latency, outside_fit_note
from edgenas.hardware.memory import memory_estimate
from edgenas.hardware.onnx import INPUT_NAME, OPSET, OUTPUT_NAME, onnx_logits
from edgenas.hardware.profiles import Profile, load_profile
from edgenas.hardware.quantize import batched_feeds, quantize_int8
from edgenas.hardware.quantize import calibration_images as _calibration_images
from edgenas.pareto import Pick, front, goodness, knee_order, parse_pick, trial_values
from edgenas.run.rundir import DB_NAME, load_run_pipeline, onnx_metadata, versions, write_verified_onnx
from edgenas.run.store import Store, Trial
from edgenas.settings.pipeline import ExportSettings, Pipeline
from edgenas.spaces import from_pipeline
from edgenas.training.data import Dataset, load_pipeline_dataset
from edgenas.training.trainer import accuracy, resolve_device, train_child
from edgenas.version import __version__


class Int8Refused(EdgenasError):
    """Static int8 quantization lost more accuracy than allowed; the fp32 bundle is kept."""

    exit_code = 1


@dataclass
class BundleResult:
    path: Path
    manifest: dict[str, Any]


def _onnx_accuracy(path: Path, profile: Profile, data: Dataset) -> float:
    preds = onnx_logits(make_session(str(path), profile), data.x_test).argmax(1)
    return float((preds == data.y_test.numpy()).mean())


def quantize_bundle_int8(
    fp32_path: Path, int8_path: Path, data: Dataset, images: int, seed: int, calibration: np.ndarray | None = None
) -> int:
    """Write the static int8 version of `fp32_path` (the shared `measure.quantize` recipe),
    calibrated on `images` training images, or on `calibration` (normalised N x C x H x W float32)
    when given. Returns the number of calibration images."""
    if calibration is None:
        calibration = _calibration_images(data.x_train, images, seed)
    try:
        model = quantize_int8(fp32_path.read_bytes(), batched_feeds(calibration, INPUT_NAME))
    except MeasurementError as exc:
        raise EdgenasError(f"{fp32_path.name}: {exc}") from exc
    atomic_write_bytes(int8_path, model)
    return len(calibration)


def picked(store: Store, pipeline: Pipeline, pick: Pick, top: int) -> list[Trial]:
    """The `top` trials `pick` chooses (see `export_run`); ConfigError listing the candidates
    when none satisfies it."""
    objectives = pipeline.reward.objectives
    if objectives:
        candidates, what = front(store.trials("ok"), objectives), "front"
    elif pick.knee:
        raise ConfigError(
            "--pick knee needs a multi-objective run (edgenas search --objectives accuracy,latency); this run "
            "optimised one reward: pick by conditions instead, e.g. --pick 'latency_ms<=2'"
        )
    else:
        candidates, what = store.top(store.status_counts()["ok"]), "finished children"
    matches = [t for t in candidates if pick.accepts(trial_values(t))]
    if pick.knee and matches:
        vectors = [goodness(objectives or (), trial_values(t)) for t in matches]
        matches = [matches[i] for i in knee_order(vectors)]  # type: ignore[arg-type]
    if not matches:
        listing = "; ".join(_describe(t) for t in candidates[:12]) + (" ..." if len(candidates) > 12 else "")
        raise ConfigError(
            f"no member of the {what} satisfies --pick '{pick}'; the {what} ({len(candidates)}): "
            f"{listing or 'none'}. Loosen the pick"
        )
    return matches[:top]


def _describe(t: Trial) -> str:
    v = trial_values(t)
    lat = f", latency {v['latency']:.4g} ms" if v["latency"] is not None else ""
    acc = 100 * (v["accuracy"] or 0.0)
    return f"trial {t.id}: val {acc:.2f} %, {t.params:,} params, {v['flops'] or 0:,} FLOPs{lat}"


def export_run(
    run_dir: Path,
    settings: ExportSettings | None = None,
    on_step: Callable[[str], None] | None = None,
    calibration_data: np.ndarray | None = None,
    **overrides: Any,
) -> list[BundleResult]:
    """Write a bundle for the best finished child (or each of the `top` best) of `run_dir`, as
    `settings` say (`ExportSettings`; keyword `overrides` replace single values of it).

    `pick` ('knee', 'latency_ms<=2', 'params<=50000, accuracy>=0.95', ...) chooses among the
    front of a multi-objective run (`--objectives`), or among all finished children of a
    single-objective one (ranked by reward); with `top`, the `top` best that satisfy it (knee:
    closest to the ideal point first; conditions alone: best validation accuracy first).
    `calibration_data` (normalised, N x C x H x W) replaces the training images that calibrate
    the int8 model: use your own representative images.

    `tflite` (needs `pip install 'edgenas[tflite]'`) also writes model.tflite, fully int8 for
    TFLite Micro, and model_data.h (the same bytes as a C array): converted from the trained
    network by litert-torch, calibrated on the same images as model.int8.onnx (which it implies),
    checked on the test images under the LiteRT interpreter against model.int8.onnx (refused when
    its accuracy is more than `max_tflite_diff` below that model's), and run under TFLite Micro, when
    installed, for the tensor arena it needs."""
    cfg = _export_settings(settings, overrides)
    chosen = parse_pick(cfg.pick) if cfg.pick is not None else None
    if cfg.tflite:
        tfl.require()  # before any retraining: a missing extra is known at once
        cfg = dataclasses.replace(cfg, int8=True)
    step = on_step or (lambda msg: None)
    run_dir = Path(run_dir)
    pipeline = load_run_pipeline(run_dir)
    profile = load_profile(cfg.profile or pipeline.search.profile)
    # The bundle's files are timed as they are (fp32 and int8 side by side), whatever precision
    # the profile would convert a model to.
    profile = dataclasses.replace(profile, precision="fp32")
    if not profile.timing:
        raise EdgenasError(f"profile '{profile.name}' does not time models; give a timed one with --profile")
    data = load_pipeline_dataset(pipeline)
    space = from_pipeline(pipeline, data.input_shape, data.num_classes)
    with Store(run_dir / DB_NAME, readonly=True) as store:
        trials = store.top(cfg.top) if chosen is None else picked(store, pipeline, chosen, cfg.top)
        finished = store.get_meta("finished_at") is not None
    if not trials:
        raise RunDirError(f"{run_dir} has no finished child to export yet; let the search train at least one")
    out = Path(cfg.out) if cfg.out is not None else run_dir / "bundle"
    job = _Export(run_dir, cfg, pipeline, profile, data, space, step, calibration_data, finished)
    results = []
    for rank, trial in enumerate(trials, 1):
        bundle = out if cfg.top == 1 else out / f"rank-{rank}"
        result, refused = job.bundle(trial, bundle)
        if chosen is not None:
            result.manifest["pick"] = {"expression": str(chosen), "rank": rank,
                                       "from_front": bool(pipeline.reward.objectives)}  # fmt: skip
        atomic_write_json(bundle / "manifest.json", result.manifest)
        atomic_write_bytes(bundle / "README.txt", bundle_readme(result.manifest).encode("utf-8"))
        results.append(result)
        if refused:
            raise Int8Refused(refused)
    return results


def _export_settings(settings: ExportSettings | None, overrides: dict[str, Any]) -> ExportSettings:
    """`settings` with `overrides` (None values ignored); ConfigError for an unknown key."""
    known = [f.name for f in dataclasses.fields(ExportSettings)]
    unknown = sorted(set(overrides) - set(known))
    if unknown:
        raise ConfigError(f"{', '.join(unknown)}: not an export setting; use one of: {', '.join(known)}")
    values = {k: str(v) if isinstance(v, Path) else v for k, v in overrides.items() if v is not None}
    return dataclasses.replace(settings or ExportSettings(), **values)


@dataclass
class _Export:
    """One export's shared inputs; `bundle(trial, folder)` writes one bundle's models."""

    run_dir: Path
    cfg: ExportSettings
    pipeline: Pipeline
    profile: Any
    data: Dataset
    space: Any
    step: Callable[[str], None]
    calibration_data: np.ndarray | None
    finished: bool

    def bundle(self, trial: Trial, bundle: Path) -> tuple[BundleResult, str | None]:
        """Retrain `trial` on train + validation, write and check model.onnx (and the int8 and
        TFLite models asked for) in `bundle`; the result and why a model was refused (or None)."""
        data, profile, step, recipe = self.data, self.profile, self.step, self.pipeline.final_training
        try:
            bundle.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RunDirError(f"cannot create the bundle directory {bundle}: {exc.strerror or exc}") from exc
        seed = child_seed(self.pipeline.search.seed, trial.arch_key)
        step(f"retraining trial {trial.id} ({trial.params:,} params) for {recipe.epochs} epochs on train + validation")
        device = resolve_device(self.pipeline.search.device)
        if device.type == "cuda" and not torch.cuda.is_available():
            device = torch.device("cpu")
        torch.manual_seed(seed)
        model = self.space.build(self.space.arch_from_json(trial.arch))
        x_all, y_all = torch.cat([data.x_train, data.x_val]), torch.cat([data.y_train, data.y_val])
        trained = train_child(model, x_all, y_all, None, None, recipe, seed, device)
        model.eval()
        test_acc = accuracy(model, data.x_test, data.y_test)
        step(f"trial {trial.id}: test accuracy {test_acc:.4f}; writing and checking model.onnx")
        fp32_path = bundle / "model.onnx"
        metadata = onnx_metadata(data, profile, trial.arch, trial.params, None, {"test": test_acc})
        onnx_bytes, max_diff, onnx_acc = write_verified_onnx(model, data, fp32_path, metadata, profile)
        step(f"timing model.onnx under profile {profile.name}")
        fp32_lat = measure_latency(str(fp32_path), profile)
        # The measured latency goes into the model's own metadata too (a second, identical graph).
        metadata = onnx_metadata(data, profile, trial.arch, trial.params, fp32_lat.to_json(), {"test": test_acc})
        onnx_bytes, max_diff, onnx_acc = write_verified_onnx(model, data, fp32_path, metadata, profile)
        variants: dict[str, Any] = {
            "fp32": {
                "file": "model.onnx",
                "bytes": len(onnx_bytes),
                "test_accuracy": onnx_acc,
                "latency": fp32_lat.to_json(),
                "energy_mj": fp32_lat.energy_mj,  # predicted energy per inference (profiles with energy data)
                "parity_max_abs_diff": max_diff,
            }
        }
        refused, calib, int8_acc = None, None, None
        if self.cfg.int8:
            calib = self.calibration_data
            if calib is None:
                calib = _calibration_images(data.x_train, self.cfg.calibration_images, seed)
            variants["int8"], refused = self._int8(fp32_path, bundle, calib, seed, onnx_acc, trial.id)
            int8_acc = variants["int8"]["test_accuracy"]
        if self.cfg.tflite:
            variants["tflite"], tflite_refused = _tflite_bundle(
                model, bundle, data, calib, onnx_bytes, int8_acc, self.cfg.max_tflite_diff, trial.id, step
            )
            refused = refused or tflite_refused
        manifest = bundle_manifest(self.run_dir, trial, self.pipeline, profile, data, test_acc,
                                   trained.train_seconds, variants, self.finished)  # fmt: skip
        return BundleResult(bundle, manifest), refused

    def _int8(
        self, fp32_path: Path, bundle: Path, calib: np.ndarray, seed: int, onnx_acc: float, trial_id: int
    ) -> tuple[dict[str, Any], str | None]:
        """model.int8.onnx, calibrated on `calib`; kept only within `max_int8_drop` of the fp32 accuracy."""
        self.step("quantizing to int8 (static, calibrated on training images)")
        cfg, profile = self.cfg, self.profile
        int8_path = bundle / "model.int8.onnx"
        n_calib = quantize_bundle_int8(fp32_path, int8_path, self.data, cfg.calibration_images, seed, calib)
        int8_acc = _onnx_accuracy(int8_path, profile, self.data)
        drop = onnx_acc - int8_acc
        info = {
            "file": "model.int8.onnx",
            "bytes": int8_path.stat().st_size,
            "test_accuracy": int8_acc,
            "accuracy_drop": drop,
            "max_accuracy_drop": cfg.max_int8_drop,
            "latency": measure_latency(str(int8_path), profile).to_json(),
            "calibration_images": n_calib,
            "calibration_source": "training images" if self.calibration_data is None else "given by the caller",
        }
        if drop <= cfg.max_int8_drop:
            return info, None
        int8_path.unlink()
        info["file"] = None
        info["refused"] = True
        return info, (
            f"int8 quantization of trial {trial_id} lost {100 * drop:.2f} points of test accuracy "
            f"({100 * onnx_acc:.2f} % -> {100 * int8_acc:.2f} %), more than the allowed "
            f"{100 * cfg.max_int8_drop:.2f}; model.int8.onnx was not kept (the fp32 bundle in {bundle} is "
            "complete). Allow more with --max-int8-drop"
        )


TFLITE_HEADER_NAME = "edgenas_model"  # the C array's name in model_data.h
TFLM_CHECK_IMAGES = 100  # test images also run under TFLite Micro (its reference kernels are slow)


def _tflite_bundle(
    model,
    bundle: Path,
    data: Dataset,
    calib: np.ndarray,
    onnx_bytes: bytes,
    int8_acc: float,
    max_diff: float,
    trial_id: int,
    step: Callable[[str], None],
) -> tuple[dict[str, Any], str | None]:
    """Write model.tflite and model_data.h into `bundle`, check them, and return their manifest
    entry and, when refused, the reason (the files are then removed)."""
    step("converting to a fully int8 TFLite model (litert-torch), calibrated on the same images")
    tflite = tfl.convert_int8(model, calib)
    path = bundle / "model.tflite"
    atomic_write_bytes(path, tflite)
    step(f"checking model.tflite on {len(data.y_test)} test images under the LiteRT interpreter")
    x_test = data.x_test.numpy()
    y_test = data.y_test.numpy()
    lite_pred = tfl.litert_logits(tflite, x_test).argmax(1)
    acc = float((lite_pred == y_test).mean())
    micro = None
    if tfl.tflm_available():
        n = min(TFLM_CHECK_IMAGES, len(x_test))
        step(f"running model.tflite under TFLite Micro on {n} test images (tensor arena)")
        try:
            run = tfl.tflm_run(tflite, x_test[:n])
            micro = {
                "arena_bytes": run["arena_bytes"],
                "arena_head_bytes": run["arena_head_bytes"],
                "arena_tail_bytes": run["arena_tail_bytes"],
                "images": n,
                "agreement_with_litert": float((run["logits"].argmax(1) == lite_pred[:n]).mean()) if n else None,
            }
        except tfl.TfliteError as exc:  # kept: LiteRT ran it; the manifest says what TFLite Micro did
            step(f"warning: {exc}; the tensor arena was not measured")
            micro = {"error": str(exc)}
    estimate = memory_estimate(onnx_bytes, "int8")
    atomic_write_bytes(
        bundle / "model_data.h",
        tfl.c_header(tflite, TFLITE_HEADER_NAME, (micro or {}).get("arena_bytes")).encode("ascii"),
    )
    described = tfl.describe(tflite)
    ops = dict(Counter(described["ops"]))
    info: dict[str, Any] = {
        "file": "model.tflite",
        "header": "model_data.h",
        "bytes": len(tflite),
        "flash_bytes": len(tflite),
        "test_accuracy": acc,
        "int8_onnx_test_accuracy": int8_acc,
        "difference_from_int8_onnx": acc - int8_acc,
        "max_difference": max_diff,
        "input": {**described["input"], "layout": "NCHW", "normalise_first": "as the fp32 input: mean, std"},
        "output": {**described["output"], "meaning": "int8 logits; dequantize, argmax is the class"},
        "ops": ops,
        "fully_int8": not described["float_ops"],
        "float_ops": described["float_ops"],
        "tflite_micro": micro,
        "estimate": {
            "peak_ram_bytes": estimate.peak_ram_bytes,
            "best_peak_ram_bytes": estimate.best_peak_ram_bytes,
            "flash_bytes": estimate.flash_bytes,
        },
        "converter": "litert-torch (PT2E static int8: weights per channel, activations per tensor)",
    }
    if acc >= int8_acc - max_diff:  # one-sided: scoring above the ONNX int8 model is no fault of the conversion
        return info, None
    for name in ("model.tflite", "model_data.h"):
        (bundle / name).unlink(missing_ok=True)
    info.update(file=None, header=None, refused=True)
    return info, (
        f"model.tflite of trial {trial_id} scored {100 * acc:.2f} % on the test images under LiteRT, "
        f"{100 * (int8_acc - acc):.2f} points below model.int8.onnx ({100 * int8_acc:.2f} %), more than "
        f"the allowed {100 * max_diff:.2f}; it was not kept (the ONNX bundle in {bundle} is complete). "
        "Allow more with --max-tflite-diff"
    )


def bundle_manifest(
    run_dir, trial, pipeline, profile, data, test_acc, train_seconds, variants, finished
) -> dict[str, Any]:
    return {
        "edgenas_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(),
        "source": {
            "run_dir": str(run_dir),
            "trial_id": trial.id,
            "search_finished": finished,
            "search_val_accuracy": trial.val_accuracy,
        },
        "architecture": trial.arch,
        "params": trial.params,
        "macs": trial.macs,
        "final_training": {
            **pipeline.to_json()["final_training"],
            "data": f"train + validation ({len(data.y_train) + len(data.y_val)} images)",
            "seconds": train_seconds,
        },
        "test_accuracy": test_acc,
        "test_images": len(data.y_test),
        "input": {
            "name": INPUT_NAME,
            "shape": ["N", *data.input_shape],
            "dtype": "float32",
            "layout": "NCHW",
            "pixel_scale": data.pixel_scale,
            "mean": data.mean,
            "std": data.std,
        },
        "output": {"name": OUTPUT_NAME, "shape": ["N", data.num_classes], "meaning": "logits; argmax is the class"},
        "labels": data.classes,
        "opset": OPSET,
        "profile": {**profile.settings(), "fingerprint": profile.fingerprint()},
        "latency_measured_on": profile.latency_label,
        "models": variants,
        "versions": versions(),
    }


def bundle_readme(m: dict[str, Any]) -> str:
    fp32 = m["models"]["fp32"]
    lines = [
        f"edgenas bundle - {m['params']:,} parameters, test accuracy {100 * m['test_accuracy']:.2f} % "
        f"on {m['test_images']} held-out images",
        "",
        "Files",
        f"  model.onnx        fp32, opset {m['opset']}, input '{m['input']['name']}' float32 "
        f"{'x'.join(map(str, m['input']['shape']))} (NCHW, any batch), output '{m['output']['name']}' (logits)",
    ]
    int8 = m["models"].get("int8")
    if int8 and int8.get("file"):
        lines.append(f"  model.int8.onnx   int8 (static QDQ), test accuracy {100 * int8['test_accuracy']:.2f} %")
    lite = m["models"].get("tflite")
    if lite and lite.get("file"):
        micro = lite.get("tflite_micro") or {}
        arena = f", tensor arena {micro['arena_bytes']:,} bytes under TFLite Micro" if "arena_bytes" in micro else ""
        lines += [
            f"  model.tflite      fully int8 TFLite (int8 input and output, batch 1, NCHW) for TFLite Micro, "
            f"test accuracy {100 * lite['test_accuracy']:.2f} % under LiteRT; flash {lite['bytes']:,} bytes{arena}",
            f"  model_data.h      the same bytes as a C array ({TFLITE_HEADER_NAME}, {TFLITE_HEADER_NAME}_len"
            + (f", {TFLITE_HEADER_NAME.upper()}_ARENA_BYTES" if "arena_bytes" in micro else "")
            + ")",
        ]
        if lite.get("float_ops"):
            lines.append(
                f"                    not fully int8: {len(lite['float_ops'])} operators compute in float "
                f"({', '.join(sorted(set(lite['float_ops'])))}); TFLite Micro runs them with its float kernels"
            )
    lines += [
        "  manifest.json     everything below, machine-readable",
        "",
        "Input preprocessing",
        f"  1. pixels: {m['input']['pixel_scale']}",
        f"  2. per channel: (x - mean) / std, mean = {[round(v, 6) for v in m['input']['mean']]}, "
        f"std = {[round(v, 6) for v in m['input']['std']]}",
        f"  3. float32 array of shape N x {' x '.join(map(str, m['input']['shape'][1:]))}",
        "",
        f"Labels (output index -> label): {', '.join(f'{i}={l}' for i, l in enumerate(m['labels']))}",
        "",
        f"Latency under profile '{m['profile']['name']}' ({m['profile']['target'] or m['profile']['description']}), "
        f"measured on: {m['latency_measured_on']}",
        f"  fp32: median {fp32['latency']['median_ms']:.4f} ms, p90 {fp32['latency']['p90_ms']:.4f} ms "
        f"({fp32['latency']['runs']} runs, batch {fp32['latency']['batch_size']}, on {fp32['latency']['machine'].get('cpu')})",
    ]
    if int8 and int8.get("latency"):
        lines.append(f"  int8: median {int8['latency']['median_ms']:.4f} ms, p90 {int8['latency']['p90_ms']:.4f} ms")
    if m["latency_measured_on"] == "host-measured":
        lines.append("  host-measured: timed on the machine that ran edgenas, not on the target device.")
    if m["latency_measured_on"] == "predicted":
        host_ms = fp32["latency"].get("host_median_ms")
        lines.append(
            f"  predicted: the target's latency estimated by the calibration {fp32['latency'].get('calibration') or ''}"
            + (f" (the machine that ran edgenas measured {host_ms:.4f} ms)" if host_ms else "")
        )
    note = outside_fit_note(fp32["latency"])
    if note:
        lines.append(f"  {note}")
    if fp32.get("energy_mj") is not None:
        lines.append(f"  energy per inference (fp32, predicted from the graph): {fp32['energy_mj']:.4g} mJ")
    lines += [
        "",
        "Run it (needs only: pip install onnxruntime numpy)",
        "",
        "  import json, numpy as np, onnxruntime as ort",
        "  m = json.load(open('manifest.json'))",
        "  sess = ort.InferenceSession('model.onnx', providers=['CPUExecutionProvider'])",
        "  def predict(pixels):  # pixels: N x C x H x W, raw scale as described above",
        "      mean = np.array(m['input']['mean'], np.float32)[None, :, None, None]",
        "      std = np.array(m['input']['std'], np.float32)[None, :, None, None]",
        "      x = ((pixels - mean) / std).astype(np.float32)",
        "      logits = sess.run(None, {m['input']['name']: x})[0]",
        "      return [m['labels'][i] for i in logits.argmax(1)]",
        "",
    ]
    if lite and lite.get("file"):
        lines += [
            "On a microcontroller (TFLite Micro): normalise as above, then quantize with the input's",
            "scale and zero point (manifest.json models.tflite, or the interpreter's input tensor):",
            "  q = clamp(round(x / scale) + zero_point, -128, 127); the output dequantizes the same way.",
            f"Operators to register in the MicroMutableOpResolver: {', '.join(sorted(lite['ops']))}",
            "",
        ]
    return "\n".join(lines)
