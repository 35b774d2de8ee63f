"""Training-time export of the CPU form.

Training-time export of the CPU form: the OpenVINO IR of a trained model, checked against
PyTorch before it ships, and the int8 record quantization adds to it.

Interface (used by the trainer and ``dog_breeds.training.quantize``):
- ``export_cpu_form(model, model_dir) -> Path | None``
- ``write_int8_record(model_dir, record)``
The files and records are ``dog_breeds.artifact.cpu_form``'s; the endpoint serves them through
``dog_breeds.serving.runtimes`` and ships none of this module.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import shutil
import time
import warnings
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dog_breeds.artifact.cpu_form import (
    EXPORT_META,
    IR_XML,
    OPENVINO_DIR,
    Int8Record,
    artifact_identity,
)
from dog_breeds.serving.runtimes import OpenVINORuntime

log = logging.getLogger(__name__)

# The IR must reproduce the torch logits this closely at export time, or it is not shipped.
EXPORT_ATOL = 1e-3
EXPORT_RTOL = 1e-3


def write_int8_record(model_dir: Path, record: Int8Record) -> None:
    """Put ``record`` into the fp32 form's export.json (its other keys kept), atomically: the
    int8 files must already be in place when a record says shipped."""
    path = Path(model_dir) / OPENVINO_DIR / EXPORT_META
    meta = json.loads(path.read_text())
    meta["int8"] = asdict(record)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(meta, indent=2) + "\n")
    os.replace(tmp, path)


@contextlib.contextmanager
def _without_hooks(model: torch.nn.Module) -> Iterator[None]:
    """Detach module hooks (e.g. the smdebug hook's) so tracing neither records nor copies them."""
    saved = []
    for module in model.modules():
        for attr in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks"):
            hooks = getattr(module, attr, None)
            if hooks:
                saved.append((module, attr, hooks))
                setattr(module, attr, type(hooks)())
    try:
        yield
    finally:
        for module, attr, hooks in saved:
            setattr(module, attr, hooks)


def _cpu_fp32_eval_copy(model: torch.nn.Module) -> torch.nn.Module:
    params = list(model.parameters()) + list(model.buffers())
    on_cpu_fp32 = all(
        p.device.type == "cpu" and (p.dtype == torch.float32 or not p.is_floating_point())
        for p in params
    )
    if on_cpu_fp32 and not model.training:
        return model
    return copy.deepcopy(model).cpu().float().eval()


def export_cpu_form(model: torch.nn.Module, model_dir: Path) -> Path | None:
    """Write the CPU-optimised form of ``model`` into ``model_dir``; None when not available.

    Call it after the artifact (model.pth, config.json) is saved: the IR records the artifact's
    model_version and weights digest, and its input size is config.json's image_size. It never
    raises: training must not be lost because the optional fast form could not be made.
    """
    model_dir = Path(model_dir)
    try:
        import openvino as ov
    except ImportError as exc:
        log.warning("CPU form not exported: openvino does not import (%s)", exc)
        return None
    try:
        return _export_openvino(ov, model, model_dir)
    except Exception:
        log.exception("CPU form not exported: OpenVINO conversion failed; serving will use PyTorch")
        shutil.rmtree(model_dir / f".{OPENVINO_DIR}.tmp", ignore_errors=True)
        return None


def _export_openvino(ov: Any, model: torch.nn.Module, model_dir: Path) -> Path | None:
    started = time.perf_counter()
    identity = artifact_identity(model_dir)
    size = identity["image_size"]
    tmp_dir = model_dir / f".{OPENVINO_DIR}.tmp"
    shutil.rmtree(tmp_dir, ignore_errors=True)
    tmp_dir.mkdir(parents=True)

    with _without_hooks(model):
        was_training = model.training
        try:
            cpu_model = _cpu_fp32_eval_copy(model.eval())
            example = torch.zeros(1, 3, size, size)
            # convert_model traces with torch.jit.trace, which now warns that it is deprecated.
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                ov_model = ov.convert_model(
                    cpu_model,
                    example_input=example,
                    # Batch dimension left dynamic: one IR serves batch 1 and batched calls alike.
                    input=[ov.PartialShape([-1, 3, size, size])],
                )
            # save_model compresses weights to fp16 unless told not to (its default is True).
            ov.save_model(ov_model, tmp_dir / IR_XML, compress_to_fp16=False)

            # Refuse to ship an IR that does not reproduce the torch logits.
            probe = np.random.default_rng(0).standard_normal((2, 3, size, size), np.float32)
            with torch.no_grad():
                expected = cpu_model(torch.from_numpy(probe)).float().numpy()
        finally:
            model.train(was_training)

    got = OpenVINORuntime(tmp_dir / IR_XML, size)(probe)
    max_abs_diff = float(np.abs(got - expected).max())
    if not np.allclose(got, expected, atol=EXPORT_ATOL, rtol=EXPORT_RTOL):
        log.error("CPU form not exported: OpenVINO logits differ from torch by %.3g", max_abs_diff)
        shutil.rmtree(tmp_dir, ignore_errors=True)
        return None

    meta = {
        **identity,
        "format": "openvino-ir",
        "precision": "f32",
        "input_shape": [-1, 3, size, size],
        "openvino_version": ov.get_version(),
        "torch_version": torch.__version__,
        "export_max_abs_logit_diff": max_abs_diff,
    }
    (tmp_dir / EXPORT_META).write_text(json.dumps(meta, indent=2) + "\n")

    final_dir = model_dir / OPENVINO_DIR
    shutil.rmtree(final_dir, ignore_errors=True)
    tmp_dir.rename(final_dir)
    log.info(
        "CPU form exported: %s (OpenVINO %s, fp32, max logit diff %.2g, %.1f s)",
        final_dir,
        meta["openvino_version"],
        max_abs_diff,
        time.perf_counter() - started,
    )
    return final_dir
