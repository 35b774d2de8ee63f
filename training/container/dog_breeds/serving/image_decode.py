"""Bytes in, model input out: the endpoint's image decoding, hardened against hostile uploads.

``decode_image`` turns request bytes into an RGB ``PIL.Image`` or raises ``BadImage`` with the HTTP
status the caller should see (400 not an image, 413 too large, 415 unsupported format).
Resizing and normalising is ``preprocess.to_model_input``, shared by training's evaluation
and serving.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from dog_breeds.serving import preprocess

# InvokeEndpoint's own request limit; nothing larger can reach a real endpoint.
MAX_BODY_BYTES = 6_291_456
# 64 megapixels (8192 x 8192) decodes in ~200 MB RGB: fine on an ml.t2.medium (4 GiB). Pillow's
# default allows ~179 MP and only warns above ~89 MP.
MAX_IMAGE_PIXELS = 64 * 1024 * 1024
# Formats a browser or phone produces. MPO is what Pillow calls many phone JPEGs.
SUPPORTED_FORMATS = frozenset({"JPEG", "MPO", "PNG", "WEBP", "GIF", "BMP"})
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N"})


class BadImage(ValueError):
    """The request body is not an image the model can take; ``status`` is the HTTP status."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


def lower_pixel_limit(limit: int = MAX_IMAGE_PIXELS) -> None:
    """Set Pillow's process-wide decompression-bomb limit (the endpoint does this at model load)."""
    Image.MAX_IMAGE_PIXELS = limit


def decode_image(data: bytes, resize_size: int | None = None) -> Image.Image:
    """Decode ``data`` into an upright RGB image (EXIF orientation applied, alpha on white,
    first frame of an animation). ``resize_size`` (the short side the model input is resized to)
    lets a large JPEG decode at a reduced scale."""
    if not data:
        raise BadImage(400, "empty request body: expected image bytes")
    if len(data) > MAX_BODY_BYTES:
        raise BadImage(413, f"request body of {len(data)} bytes exceeds {MAX_BODY_BYTES}")
    # Image.open reads only the header; the pixel count is checked before any pixel is decoded.
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data))
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise BadImage(413, f"image has too many pixels: {exc}") from exc
        except UnidentifiedImageError as exc:
            raise BadImage(400, "body is not a recognisable image") from exc
        except Exception as exc:  # a corrupt header can raise nearly anything in a plugin
            raise BadImage(400, f"image header cannot be read: {exc}") from exc
        if image.format not in SUPPORTED_FORMATS:
            raise BadImage(
                415,
                f"image format {image.format} is not supported; send one of "
                + ", ".join(sorted(SUPPORTED_FORMATS)),
            )
        width, height = image.size
        if width < 1 or height < 1:
            raise BadImage(400, f"image has no pixels ({width}x{height})")
        if width * height > MAX_IMAGE_PIXELS:
            raise BadImage(
                413,
                f"image has {width * height} pixels ({width}x{height}); limit {MAX_IMAGE_PIXELS}",
            )
        try:
            if getattr(image, "n_frames", 1) > 1:
                image.seek(0)  # animations: the first frame stands for the image
            if resize_size:
                preprocess.draft_for_resize(image, resize_size)
            image.load()
            return to_upright_rgb(image)
        except BadImage:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise BadImage(413, f"image has too many pixels: {exc}") from exc
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            # e.g. "image file is truncated", "broken data stream"
            raise BadImage(400, f"image data is corrupt or truncated: {exc}") from exc


def to_upright_rgb(image: Image.Image) -> Image.Image:
    """A loaded image as the model sees it: EXIF orientation applied, then 8-bit RGB. Training
    (dog_data) and the endpoint both call this, so neither sees a photo the other way up."""
    return to_rgb(_upright(image))


def _upright(image: Image.Image) -> Image.Image:
    try:
        return ImageOps.exif_transpose(image)
    except Exception:  # malformed EXIF must not cost the prediction: keep the stored orientation
        return image


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode to 8-bit RGB: alpha composited on white, 16-bit and float scaled down."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in _SIXTEEN_BIT_MODES or mode in ("I", "F"):
        values = np.asarray(image, dtype=np.float32)
        if mode in _SIXTEEN_BIT_MODES or (mode == "I" and values.max(initial=0) > 255):
            values = values / 257.0
        elif mode == "F" and values.max(initial=0) <= 1.0:
            values = values * 255.0
        gray = Image.fromarray(np.clip(values + 0.5, 0, 255).astype(np.uint8), mode="L")
        return gray.convert("RGB")
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        mode == "P" and "transparency" in image.info
    )
    if has_alpha or (mode == "L" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")  # L, 1, P, CMYK, YCbCr, LAB, HSV


# The endpoint's resize/crop/normalise is fast_preprocess's; re-exported for existing callers.
to_model_input = preprocess.to_model_input
