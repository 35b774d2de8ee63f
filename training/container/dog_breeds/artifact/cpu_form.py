"""The CPU form of an artifact: where its OpenVINO IRs live and what records them.

Written by training (``dog_breeds.training.cpu_export``, ``dog_breeds.training.quantize``), read by
serving (``dog_breeds.serving.runtimes``): both sides agree on these names and records, and
neither imports the other's engine code. Torch-free: the endpoint's ``code/`` carries it.

In ``model_dir/openvino/``: ``model.xml``/``.bin`` (fp32 weights, batch dimension dynamic) and
``export.json``, recording which weights the IR was made from (``artifact_identity``), with an
optional ``"int8"`` record (``Int8Record``) for ``model-int8.xml``/``.bin`` beside it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

OPENVINO_DIR = "openvino"
IR_XML = "model.xml"
EXPORT_META = "export.json"
INT8_IR_XML = "model-int8.xml"


@dataclass
class Int8Record:
    """export.json's ``"int8"`` record: whether an int8 IR ships beside the fp32 one, and why.

    Written at the end of training (``dog_breeds.training.quantize``), read by ``select_runtime``.
    Accuracies are validation top-1 fractions (0..1) of each IR on the images as served;
    ``drop_points`` is (fp32 - int8) x 100; the int8 IR ships when it is <= ``max_drop_points``.
    ``model_version``/``weights_sha256_12`` name the artifact it was quantized from.
    """

    shipped: bool
    reason: str
    file: str | None = None
    model_version: str | None = None
    weights_sha256_12: str | None = None
    fp32_valid_accuracy: float | None = None
    int8_valid_accuracy: float | None = None
    drop_points: float | None = None
    max_drop_points: float | None = None
    valid_images: int | None = None
    calibration_images: int | None = None
    quantize_seconds: float | None = None
    seconds: float | None = None
    nncf_version: str | None = None

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> Int8Record | None:
        raw = meta.get("int8")
        if not isinstance(raw, dict):
            return None
        known = {f.name for f in fields(cls)}
        try:
            return cls(**{k: v for k, v in raw.items() if k in known})
        except TypeError:  # a record without shipped/reason
            return None


def _read_config(model_dir: Path) -> dict[str, Any]:
    path = model_dir / "config.json"
    if not path.is_file():
        return {}
    return json.loads(path.read_text())


def _weights_digest(model_dir: Path) -> str | None:
    """sha256 (first 12 hex) of model.pth: catches weights replaced without a new config."""
    path = model_dir / "model.pth"
    if not path.is_file():
        return None
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:12]


def artifact_identity(model_dir: Path) -> dict[str, Any]:
    """What an exported IR must agree with to be served for this artifact."""
    config = _read_config(model_dir)
    return {
        "model_version": config.get("model_version"),
        "weights_sha256_12": _weights_digest(model_dir),
        "image_size": int(config.get("image_size", 224)),
        "num_classes": config.get("num_classes"),
    }


def read_export_meta(model_dir: Path) -> tuple[dict[str, Any] | None, str | None]:
    """export.json of the fp32 IR, or None and why it cannot serve."""
    ir_dir = model_dir / OPENVINO_DIR
    if not (ir_dir / IR_XML).is_file() or not (ir_dir / IR_XML).with_suffix(".bin").is_file():
        return None, f"no OpenVINO IR at {ir_dir / IR_XML}"
    try:
        return json.loads((ir_dir / EXPORT_META).read_text()), None
    except (OSError, ValueError) as exc:
        return None, f"OpenVINO IR has no readable {EXPORT_META} ({exc})"
