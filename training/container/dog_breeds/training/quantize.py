"""int8 at export, behind an accuracy guard: NNCF post-training quantization of the fp32 IR.

    record = quantize.export_int8_form(model_dir, data, max_drop_points=0.5)

Runs after ``cpu_export.export_cpu_form`` wrote ``model_dir/openvino/``. Calibration: up to
``CALIBRATION_LIMIT`` training images, spread evenly over the (class-sorted) split, preprocessed
as the endpoint preprocesses them (no augmentation). Guard: the fp32 and the int8 IR each classify
the validation split through OpenVINO; the int8 IR ships (``model-int8.xml``/``.bin`` beside the
fp32 one) only when its top-1 accuracy is at most ``max_drop_points`` percentage points below
fp32's. Either way export.json's ``"int8"`` record (``cpu_form.Int8Record``) says what happened and
why. Like the fp32 export it never raises: a failed quantization costs the int8 form, not the run.

Training-side only: nncf is imported here, lazily, and never by the serving code.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dog_breeds.artifact import cpu_form, store
from dog_breeds.data import folders
from dog_breeds.serving import image_decode, preprocess, runtimes
from dog_breeds.training import cpu_export

log = logging.getLogger(__name__)

DEFAULT_MAX_DROP_POINTS = 0.5
CALIBRATION_LIMIT = 300
EVAL_BATCH = 16

# (fp32 OpenVINO model, calibration inputs (1, 3, H, W) float32) -> the int8 OpenVINO model
Quantizer = Callable[[Any, Sequence[np.ndarray]], Any]


# ---------------------------------------------------------------------------- pure decisions
def guard_verdict(
    fp32_accuracy: float, int8_accuracy: float, max_drop_points: float
) -> tuple[bool, float, str]:
    """(ships, drop in points, why): int8 ships when fp32 - int8 top-1 <= max_drop_points."""
    drop = round((fp32_accuracy - int8_accuracy) * 100, 4)
    compared = (
        f"validation top-1 int8 {int8_accuracy:.2%} vs fp32 {fp32_accuracy:.2%}: "
        f"drop {drop:g} points"
    )
    if drop <= max_drop_points:
        return True, drop, f"{compared} <= {max_drop_points:g} allowed"
    return False, drop, f"{compared} > {max_drop_points:g} allowed"


def calibration_indices(size: int, limit: int = CALIBRATION_LIMIT) -> list[int]:
    """min(limit, size) indices spread evenly over a split whose samples are sorted by class,
    so every class is represented; deterministic."""
    count = min(limit, size)
    if count <= 0:
        return []
    return sorted({int(i) for i in np.linspace(0, size - 1, count).round()})


# ---------------------------------------------------------------------------- images as served
def served_input(path: Path, image_size: int, mean: Sequence[float], std: Sequence[float]):
    """A dataset image as the endpoint sees it: upright RGB, resized, cropped, normalised."""
    with folders.open_dataset_image(path) as image:
        rgb = image_decode.to_upright_rgb(image)
        return preprocess.to_model_input(rgb, image_size, mean, std)


def calibration_inputs(
    samples: Sequence[tuple[Path, int]],
    image_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    limit: int = CALIBRATION_LIMIT,
) -> list[np.ndarray]:
    """(1, 3, H, W) float32 inputs of up to ``limit`` training images, spread over the classes."""
    picked = calibration_indices(len(samples), limit)
    return [served_input(samples[i][0], image_size, mean, std)[np.newaxis] for i in picked]


def top1_accuracy(
    runtime: Callable[[np.ndarray], np.ndarray],
    samples: Sequence[tuple[Path, int]],
    image_size: int,
    mean: Sequence[float],
    std: Sequence[float],
) -> float:
    """Top-1 accuracy of ``runtime`` over ``samples`` (path, label), in batches."""
    correct = 0
    for start in range(0, len(samples), EVAL_BATCH):
        chunk = samples[start : start + EVAL_BATCH]
        batch = np.stack([served_input(path, image_size, mean, std) for path, _ in chunk])
        predicted = runtime(batch).argmax(1)
        correct += int((predicted == np.array([label for _, label in chunk])).sum())
    return correct / len(samples)


# ---------------------------------------------------------------------------- quantization
def quantize_with_nncf(ov_model: Any, calibration: Sequence[np.ndarray]) -> Any:
    """NNCF's default post-training quantization (mixed preset, fast bias correction)."""
    import nncf

    # NNCF draws progress bars on stdout, which carries train.py's metric lines and summary.
    with contextlib.redirect_stdout(sys.stderr):
        return nncf.quantize(ov_model, nncf.Dataset(calibration), subset_size=len(calibration))


def _nncf_version() -> str | None:
    try:
        import nncf
    except ImportError:
        return None
    return nncf.__version__


def export_int8_form(
    model_dir: Path,
    data: folders.DataSplits,
    max_drop_points: float = DEFAULT_MAX_DROP_POINTS,
    calibration_limit: int = CALIBRATION_LIMIT,
    quantize: Quantizer = quantize_with_nncf,
) -> cpu_form.Int8Record:
    """Quantize ``model_dir``'s fp32 IR, guard it on ``data.valid``, record the verdict in
    export.json; returns the record. Needs the fp32 IR in place; never raises."""
    model_dir = Path(model_dir)
    started = time.perf_counter()
    identity = cpu_form.artifact_identity(model_dir)
    try:
        record = _quantize_and_guard(model_dir, data, max_drop_points, calibration_limit, quantize)
    except ImportError as exc:
        record = cpu_form.Int8Record(False, f"nncf or openvino does not import ({exc})")
    except Exception as exc:
        log.exception("int8 form not exported: quantization failed")
        record = cpu_form.Int8Record(False, f"quantization failed ({type(exc).__name__}: {exc})")
        _remove_int8_files(model_dir)
    record.model_version = identity["model_version"]
    record.weights_sha256_12 = identity["weights_sha256_12"]
    record.max_drop_points = max_drop_points
    record.seconds = round(time.perf_counter() - started, 2)
    record.nncf_version = _nncf_version()
    return record_int8(model_dir, record)


def record_int8(model_dir: Path, record: cpu_form.Int8Record) -> cpu_form.Int8Record:
    """Write ``record`` into export.json (when there is an fp32 form to add it to) and log it."""
    if (Path(model_dir) / cpu_form.OPENVINO_DIR / cpu_form.EXPORT_META).is_file():
        cpu_export.write_int8_record(model_dir, record)
    if record.shipped:
        log.info("int8 form exported: %s (%.1f s)", record.reason, record.seconds or 0.0)
    else:
        log.warning("int8 form not shipped: %s", record.reason)
    return record


def _quantize_and_guard(
    model_dir: Path,
    data: folders.DataSplits,
    max_drop_points: float,
    calibration_limit: int,
    quantize: Quantizer,
) -> cpu_form.Int8Record:
    import openvino as ov

    config = store.load_config(model_dir)
    size, mean, std = config["image_size"], config["mean"], config["std"]
    ir_dir = model_dir / cpu_form.OPENVINO_DIR

    calibration = calibration_inputs(data.train.samples, size, mean, std, calibration_limit)
    quantize_started = time.perf_counter()
    fp32_model = runtimes.openvino_core().read_model(ir_dir / cpu_form.IR_XML)
    int8_model = quantize(fp32_model, calibration)
    quantize_seconds = round(time.perf_counter() - quantize_started, 2)
    xml = ir_dir / cpu_form.INT8_IR_XML
    ov.save_model(int8_model, xml, compress_to_fp16=False)

    valid = data.valid.samples
    # The guard is the only work in the training process: every core, whatever the workers.
    threads = runtimes.available_cpus()
    fp32_runtime = runtimes.OpenVINORuntime(ir_dir / cpu_form.IR_XML, size, threads)
    fp32 = top1_accuracy(fp32_runtime, valid, size, mean, std)
    int8_runtime = runtimes.OpenVINORuntime(xml, size, threads, precision="int8")
    int8 = top1_accuracy(int8_runtime, valid, size, mean, std)
    ships, drop, reason = guard_verdict(fp32, int8, max_drop_points)
    if not ships:
        _remove_int8_files(model_dir)
    return cpu_form.Int8Record(
        shipped=ships,
        reason=reason,
        file=cpu_form.INT8_IR_XML if ships else None,
        fp32_valid_accuracy=fp32,
        int8_valid_accuracy=int8,
        drop_points=drop,
        valid_images=len(valid),
        calibration_images=len(calibration),
        quantize_seconds=quantize_seconds,
    )


def _remove_int8_files(model_dir: Path) -> None:
    xml = model_dir / cpu_form.OPENVINO_DIR / cpu_form.INT8_IR_XML
    for path in (xml, xml.with_suffix(".bin")):
        path.unlink(missing_ok=True)


def disabled(model_dir: Path, why: str) -> cpu_form.Int8Record:
    """Record that no int8 form was attempted (e.g. ``--int8 false``)."""
    return record_int8(model_dir, cpu_form.Int8Record(False, why))
