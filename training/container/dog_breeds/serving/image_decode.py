"""Bytes in, model input out: the endpoint's image decoding, hardened against hostile uploads.

``decode_image`` turns request bytes into an RGB ``PIL.Image`` or raises ``BadImage`` with the HTTP
status the caller should see (400 not an image, a corrupt one, or one too long and thin; 413 too
large; 415 unsupported format). Every failure is a ``BadImage``: never a 500.
Resizing and normalising is ``preprocess.to_model_input``, shared by training's evaluation
and serving.

Memory per request is bounded before any pixel is decoded, whatever a few kilobytes of PNG claim:

- the long side may be at most ``MAX_ASPECT_RATIO`` times the short one (400 beyond);
- at most ``MAX_IMAGE_PIXELS`` pixels (413);
- the decoded image (Pillow's storage for its mode, ``pixel_bytes``; WebP about four times) plus the
  RGB image handed on must fit ``MAX_DECODE_BYTES`` (413), computed after a JPEG's ``draft``.

After the pixels are loaded, the image is converted to RGB in strips of rows, and with
``resize_size`` reduced by an integer factor at the same time (``preprocess.reduction_factor``:
the short side keeps at least twice ``resize_size``), before the EXIF rotation: no full-size
copy beside the decoded image is ever made. Without a reduction the result is the same image,
pixel for pixel, as converting the whole image at once (``to_upright_rgb``, which training also
calls).
"""

from __future__ import annotations

import io
import math
import warnings

import numpy as np
from PIL import ExifTags, Image, UnidentifiedImageError

from dog_breeds import contract
from dog_breeds.serving import preprocess

# InvokeEndpoint's own request limit; nothing larger can reach a real endpoint.
MAX_BODY_BYTES = contract.MAX_REQUEST_BYTES
# 64 megapixels (8192 x 8192): a 64 MP L or P image decodes in 64 MiB. Pillow's default allows
# ~179 MP and only warns above ~89 MP.
MAX_IMAGE_PIXELS = 64 * 1024 * 1024
# Long side / short side. Phone panoramas are about 4:1 to 9:1; past 20:1 an image is a strip
# the model cannot see a dog in (its centre crop would hold 1/20 of it, or less).
MAX_ASPECT_RATIO = 20
# The decoded image plus its RGB result. A worker's peak growth stays near 256 MiB: an
# ml.t2.medium holds two workers and TorchServe's Java in 4 GiB. 192 MiB is a 48 MP RGB or RGBA
# PNG, 64 MP of L, P or 1, a 12 MP WebP, or a 64 MP JPEG (decoded at a reduced scale).
MAX_DECODE_BYTES = 192 * 1024 * 1024
# Pillow keeps 1, L and P in a byte a pixel, I;16 in two, and everything else (RGB included) in 4.
_ONE_BYTE_MODES = frozenset({"1", "L", "P"})
# Pillow's WebP plugin holds libwebp's canvas, the frame's bytes and its own image: measured at
# about four times the decoded size.
_DECODED_COPIES = {"WEBP": 4}
# Conversions run on strips of about this many decoded bytes.
STRIP_BYTES = 4 * 1024 * 1024
# Formats a browser or phone produces. MPO is what Pillow calls many phone JPEGs.
SUPPORTED_FORMATS = frozenset({"JPEG", "MPO", "PNG", "WEBP", "GIF", "BMP"})
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N"})
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


class BadImage(ValueError):
    """The request body is not an image the model can take; ``status`` is the HTTP status."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


def lower_pixel_limit(limit: int = MAX_IMAGE_PIXELS) -> None:
    """Set Pillow's process-wide decompression-bomb limit (the endpoint does this at model load).
    ``decode_image`` checks its own limits anyway; this one also guards Pillow's other paths."""
    Image.MAX_IMAGE_PIXELS = limit


def pixel_bytes(mode: str) -> int:
    """Bytes a pixel of ``mode`` takes in Pillow's memory (RGB is stored as 4)."""
    if mode in _ONE_BYTE_MODES:
        return 1
    return 2 if mode in _SIXTEEN_BIT_MODES else 4


def decode_bytes(mode: str, size: tuple[int, int], factor: int = 1, image_format: str = "") -> int:
    """Memory ``decode_image`` budgets for an image: decoded pixels, then the RGB result."""
    width, height = size
    decoded = width * height * pixel_bytes(mode) * _DECODED_COPIES.get(image_format, 1)
    return decoded + 4 * math.ceil(width / factor) * math.ceil(height / factor)


def decode_image(data: bytes, resize_size: int | None = None) -> Image.Image:
    """Decode ``data`` into an upright RGB image (EXIF orientation applied, alpha on white,
    first frame of an animation). ``resize_size`` (the short side the model input is resized to)
    lets a large image decode (JPEG) or convert (any format) at a reduced scale."""
    if not data:
        raise BadImage(400, "empty request body: expected image bytes")
    if len(data) > MAX_BODY_BYTES:
        raise BadImage(413, f"request body of {len(data)} bytes exceeds {MAX_BODY_BYTES}")
    # Between Pillow's limit and twice it Pillow only warns: an error here.
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            return _decode(_open(data), resize_size)
        except BadImage:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise BadImage(413, f"image has too many pixels: {exc}") from exc
        except MemoryError as exc:
            raise BadImage(413, "image is too large: decoding it ran out of memory") from exc
        except Exception as exc:  # a decoder can raise nearly anything: OSError, struct.error...
            # e.g. "image file is truncated", "broken data stream"
            raise BadImage(400, f"image data is corrupt or truncated: {exc}") from exc


def _open(data: bytes) -> Image.Image:
    """Image.open reads only the header: its checks come before any pixel is decoded."""
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
    return image


def _decode(image: Image.Image, resize_size: int | None) -> Image.Image:
    check_shape(*image.size)
    # An animation opens at its first frame, which stands for the image. (Asking whether it is
    # animated would read a GIF to its second frame: seconds for megabytes of comments.)
    if resize_size:
        preprocess.draft_for_resize(image, resize_size)  # JPEG: size and mode change here
    factor = preprocess.reduction_factor(image.size, resize_size) if resize_size else 1
    needed = decode_bytes(image.mode, image.size, factor, image.format or "")
    if needed > MAX_DECODE_BYTES:
        width, height = image.size
        raise BadImage(
            413,
            f"image is too large to decode: {image.mode} {width}x{height} needs "
            f"{needed / 2**20:.0f} MiB, limit {MAX_DECODE_BYTES // 2**20} MiB",
        )
    image.load()
    rgb = upright_rgb(image, factor)
    if rgb is not image:
        image.close()  # the decoded pixels are released now, not when the request ends
    return rgb


def check_shape(width: int, height: int) -> None:
    """Refuse, from the header alone, an image with no pixels, too many, or too long and thin."""
    if width < 1 or height < 1:
        raise BadImage(400, f"image has no pixels ({width}x{height})")
    if max(width, height) > MAX_ASPECT_RATIO * min(width, height):
        raise BadImage(
            400,
            f"image of {width}x{height} has an aspect ratio over {MAX_ASPECT_RATIO}:1; "
            "send a photo, not a strip",
        )
    if width * height > MAX_IMAGE_PIXELS:
        raise BadImage(
            413,
            f"image has too many pixels: {width * height} ({width}x{height}); "
            f"limit {MAX_IMAGE_PIXELS}",
        )


def to_upright_rgb(image: Image.Image) -> Image.Image:
    """A loaded image as the model sees it: EXIF orientation applied, then 8-bit RGB. Training
    (dog_data) and the endpoint both call this, so neither sees a photo the other way up."""
    return upright_rgb(image, 1)


def upright_rgb(image: Image.Image, factor: int = 1) -> Image.Image:
    """A loaded image in 8-bit RGB, reduced by ``factor`` (box average), EXIF rotation applied.

    The conversion runs strip by strip, so besides ``image`` only the result is held in full.
    With ``factor`` 1 the pixels are those of ``to_rgb`` on the whole image; an RGB image is
    returned as it is (rotated: a new image)."""
    orientation = _orientation(image)
    rgb = image if image.mode == "RGB" and factor == 1 else _strips_to_rgb(image, factor)
    method = _TRANSPOSE.get(orientation)
    return rgb if method is None else rgb.transpose(method)


def _orientation(image: Image.Image) -> int:
    try:
        return int(image.getexif().get(ExifTags.Base.Orientation, 1))
    except Exception:  # malformed EXIF must not cost the prediction: keep the stored orientation
        return 1


def _strips_to_rgb(image: Image.Image, factor: int) -> Image.Image:
    width, height = image.size
    result = Image.new("RGB", (math.ceil(width / factor), math.ceil(height / factor)))
    # Strips start on multiples of factor, so each reduces exactly as that part of the whole.
    rows = max(1, STRIP_BYTES // (width * pixel_bytes(image.mode)) // factor) * factor
    high = _gray_high(image)
    for top in range(0, height, rows):
        strip = to_rgb(image.crop((0, top, width, min(height, top + rows))), high)
        if factor > 1:
            strip = strip.reduce(factor)
        result.paste(strip, (0, top // factor))
    return result


def _gray_high(image: Image.Image) -> float | None:
    """The brightest value of an I or F image, which decides how ``to_rgb`` scales it."""
    if image.mode not in ("I", "F"):
        return None
    return float(image.getextrema()[1])


def to_rgb(image: Image.Image, high: float | None = None) -> Image.Image:
    """Any Pillow mode to 8-bit RGB: alpha composited on white, 16-bit and float scaled down.
    ``high`` is the brightest value of the whole I or F image this is a part of (default: this
    image's own)."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in _SIXTEEN_BIT_MODES or mode in ("I", "F"):
        values = np.asarray(image, dtype=np.float32)
        if high is None:
            high = float(values.max(initial=0))
        if mode in _SIXTEEN_BIT_MODES or (mode == "I" and high > 255):
            values = values / 257.0
        elif mode == "F" and high <= 1.0:
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
