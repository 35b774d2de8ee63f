"""The endpoint's handlers for the SageMaker PyTorch serving container (``SAGEMAKER_PROGRAM``).

Request: raw image bytes (image/jpeg, image/png, image/webp, application/x-image, ...) or
``application/json`` ``{"image": "<base64>", "top_k": 5}``; for raw bytes, top_k comes from the
``X-Amzn-SageMaker-Custom-Attributes: top_k=5`` header. Response (application/json):
``{"predictions": [{"breed", "index", "probability"}, ...best first], "top_k", "model": {...}}``.
Bad input raises ``GenericInferenceToolkitError`` with a 4xx status, which the toolkit turns into
that HTTP status (any other exception would become a 500).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from sagemaker_inference.errors import GenericInferenceToolkitError

from dog_breeds import contract
from dog_breeds.artifact import store
from dog_breeds.serving import image_decode, preprocess, runtimes

log = logging.getLogger(__name__)

DEFAULT_TOP_K = 5
JSON = contract.JSON_CONTENT_TYPE
IMAGE_CONTENT_TYPES = contract.IMAGE_CONTENT_TYPES
CUSTOM_ATTRIBUTES_HEADER = contract.CUSTOM_ATTRIBUTES_HEADER
# input_fn does not see the model, so large JPEGs are drafted for a 256 px short side; the draft
# keeps >= 2 x that (512 px), enough for any model image_size up to 448 without upscaling.
DRAFT_RESIZE_SIZE = 256


@dataclass
class ServedModel:
    """What model_fn loads: the runtime plus everything the response needs."""

    runtime: runtimes.Runtime
    classes: list[str]
    image_size: int
    mean: list[float]
    std: list[float]
    name: str
    version: str


@dataclass
class ImageRequest:
    """What input_fn hands predict_fn: the decoded RGB image and the requested top_k."""

    image: Image.Image
    top_k: int | None


# ---------------------------------------------------------------------------- handlers
def model_fn(model_dir: str) -> ServedModel:
    image_decode.lower_pixel_limit()  # decompression bombs: see image_decode.MAX_IMAGE_PIXELS
    model_dir = Path(model_dir)
    config = store.load_config(model_dir)
    runtime = runtimes.select_runtime(model_dir, lambda: store.build_from_artifact(model_dir))
    served = ServedModel(
        runtime=runtime,
        classes=store.load_classes(model_dir),
        image_size=config["image_size"],
        mean=config["mean"],
        std=config["std"],
        name=config["model_name"],
        version=config["model_version"],
    )
    log.info(
        "model %s %s (%d classes) served by %s",
        served.name,
        served.version,
        len(served.classes),
        runtime.name,
    )
    return served


def input_fn(request_body: bytes | str, content_type: str, context: Any = None) -> ImageRequest:
    """Decode the request. ``context`` is the model server's; it carries the request headers."""
    media_type = (content_type or "").split(";")[0].strip().lower()
    header_top_k = parse_custom_attributes(request_header(context, CUSTOM_ATTRIBUTES_HEADER))
    if media_type == JSON:
        image_bytes, json_top_k = parse_json_request(request_body)
        top_k = json_top_k if json_top_k is not None else header_top_k
    elif media_type in IMAGE_CONTENT_TYPES:
        # The toolkit decodes only JSON and CSV bodies to str; anything else stays bytes.
        image_bytes = (
            request_body.encode("utf-8") if isinstance(request_body, str) else request_body
        )
        top_k = header_top_k
    else:
        raise GenericInferenceToolkitError(
            415,
            f"content type {content_type!r} is not supported: send the image bytes as one of "
            f"{', '.join(sorted(IMAGE_CONTENT_TYPES))}, or {JSON} with a base64 'image' field",
        )
    return ImageRequest(image=decode(image_bytes), top_k=top_k)


def predict_fn(data: ImageRequest, model: ServedModel) -> dict[str, Any]:
    pixels = preprocess.to_model_input(data.image, model.image_size, model.mean, model.std)
    logits = model.runtime(pixels[np.newaxis])
    probabilities = softmax(logits)[0]
    top_k = resolve_top_k(data.top_k, len(model.classes))
    order = np.argsort(-probabilities, kind="stable")[:top_k]
    return {
        "predictions": [
            {"breed": model.classes[i], "index": int(i), "probability": float(probabilities[i])}
            for i in order
        ],
        "top_k": top_k,
        "model": {"name": model.name, "version": model.version, "runtime": model.runtime.name},
    }


def output_fn(prediction: dict[str, Any], accept: str | None) -> tuple[str, str]:
    accepted = {a.split(";")[0].strip().lower() for a in (accept or JSON).split(",")}
    if not accepted & {JSON, "*/*", "application/*", ""}:
        raise GenericInferenceToolkitError(406, f"accept {accept!r} is not supported: use {JSON}")
    return json.dumps(prediction), JSON


# ---------------------------------------------------------------------------- helpers
def decode(image_bytes: bytes) -> Image.Image:
    """image_decode.decode_image with its failures turned into the toolkit's 4xx errors."""
    try:
        return image_decode.decode_image(image_bytes, resize_size=DRAFT_RESIZE_SIZE)
    except image_decode.BadImage as exc:
        raise GenericInferenceToolkitError(exc.status, exc.reason) from exc


def parse_json_request(request_body: bytes | str) -> tuple[bytes, int | None]:
    """``{"image": "<base64>", "top_k": 5}`` -> (image bytes, top_k or None)."""
    try:
        payload = json.loads(request_body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise GenericInferenceToolkitError(400, f"body is not valid JSON: {exc}") from exc
    if not isinstance(payload, dict) or not isinstance(payload.get("image"), str):
        raise GenericInferenceToolkitError(
            400, 'JSON body must be an object with a base64 string field "image"'
        )
    encoded = payload["image"]
    if encoded.startswith("data:") and "," in encoded:  # a data: URL from a browser
        encoded = encoded.split(",", 1)[1]
    try:
        image_bytes = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise GenericInferenceToolkitError(400, f'"image" is not valid base64: {exc}') from exc
    return image_bytes, validate_top_k(payload.get("top_k"))


def validate_top_k(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise GenericInferenceToolkitError(400, f"top_k must be a positive integer, got {value!r}")
    try:
        top_k = int(value)
    except ValueError:
        raise GenericInferenceToolkitError(
            400, f"top_k must be a positive integer, got {value!r}"
        ) from None
    if top_k < 1:
        raise GenericInferenceToolkitError(400, f"top_k must be a positive integer, got {value!r}")
    return top_k


def parse_custom_attributes(value: str | None) -> int | None:
    """top_k from SageMaker's CustomAttributes, e.g. ``top_k=3`` or ``trace=abc;top_k=3``."""
    if not value:
        return None
    for part in value.replace(";", ",").split(","):
        key, sep, raw = part.partition("=")
        if sep and key.strip().lower() == "top_k":
            return validate_top_k(raw.strip())
    return None


def request_header(context: Any, name: str) -> str | None:
    """A request header from the model server's context (TorchServe's ``RequestProcessor``),
    matched case-insensitively; None when there is no context (direct calls, tests)."""
    try:
        headers = context.request_processor[0].get_request_properties()
    except (AttributeError, IndexError, TypeError):
        return None
    wanted = name.lower()
    for key, value in (headers or {}).items():
        key = key.decode() if isinstance(key, bytes) else key
        if isinstance(key, str) and key.lower() == wanted:
            return value.decode() if isinstance(value, bytes) else value
    return None


def resolve_top_k(requested: int | None, num_classes: int) -> int:
    return min(requested or DEFAULT_TOP_K, num_classes)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)
