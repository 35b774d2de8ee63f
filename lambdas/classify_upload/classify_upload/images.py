"""Making an object fit the endpoint's request limit; nothing else about images is judged here.

Whether the bytes are a usable image is the endpoint's call (it answers 4xx). The Lambda opens an
image only when it is too big to send, and then must: downscale with the EXIF orientation applied
(the re-encoded JPEG carries no EXIF) until it fits.

Memory stays bounded whatever the object (up to MaxObjectBytes): before any pixel is decoded the
header's size is checked (aspect ratio, pixel count, and the bytes the decoded image and its RGB
result will take, by mode, after a JPEG's ``draft``). The decoded image is converted to RGB (alpha
on white) and reduced in strips of rows, so no full-size copy of it is ever made; the EXIF rotation
and the encoder then work on the reduced image.

Every way decoding or encoding can fail is a ``PermanentFailure``: the same bytes fail the same
way, so none is retried. Its ``error_type``:

- ``NotAnImage``: not an image, or its data is corrupt or truncated (any decoder error).
- ``ImageAspectRatio``: the long side is over ``MAX_ASPECT_RATIO`` times the short one (the
  endpoint refuses those too).
- ``ImageTooManyPixels``: over ``MAX_PIXELS`` pixels (or Pillow's own decompression-bomb check).
- ``ImageTooLargeToDecode``: decoding would need more than ``MAX_DECODE_BYTES``, or ran out of
  memory.
- ``ImageEncodeFailed``: resizing or the JPEG encoder failed (e.g. a side over 65,500 px).
- ``ImageTooLarge``: still over the limit after ``MAX_DOWNSCALE_ROUNDS`` re-encodings.

Limits are checked here, explicitly; Pillow's process-wide ``MAX_IMAGE_PIXELS`` (which another
module may set) is set to ``MAX_PIXELS`` only while a header is read, and restored.
"""

from __future__ import annotations

import contextlib
import io
import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

from PIL import ExifTags, Image

from classify_upload.errors import PermanentFailure

# A real-time endpoint's InvokeEndpoint rejects larger request bodies (ValidationError); the
# function passes its own limit (settings.max_request_bytes: 4 MB for a serverless endpoint).
MAX_REQUEST_BYTES = 6_291_456
JPEG_QUALITY = 90
MAX_DOWNSCALE_ROUNDS = 12
# A decompression-bomb guard: above this many pixels the function refuses to decode. JPEGs this
# large (a 200 MP phone photo) decode at a reduced scale; other formats meet MAX_DECODE_BYTES first.
MAX_PIXELS = 200_000_000
# Long side / short side; the endpoint refuses more (dog_breeds.serving.image_decode, 400).
MAX_ASPECT_RATIO = 20
# The decoded image plus its reduced RGB copy: with the encoder's buffers the peak stays under
# half the function's 1024 MB. 384 MiB is a 10000 x 8000 RGBA PNG, or 64 MP of RGB or RGBA.
MAX_DECODE_BYTES = 384 * 1024 * 1024
# Pillow stores 1, L and P in one byte a pixel, I;16 in two, everything else (RGB too) in four.
_ONE_BYTE_MODES = frozenset({"1", "L", "P"})
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N"})
# Pillow's WebP plugin holds libwebp's canvas, the frame's bytes and its image: about 4 copies.
_DECODED_COPIES = {"WEBP": 4}
# Decoding is what costs memory: JPEGs are therefore decoded at 1/2, 1/4 or 1/8 scale, and other
# formats reduced after decoding, where that still leaves at least this many pixels, far more than
# the model looks at.
DRAFT_MIN_PIXELS = 12_000_000
# RGB conversion and reduction run on strips of about this many decoded bytes.
STRIP_BYTES = 8 * 1024 * 1024
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


@dataclass(frozen=True)
class RequestBody:
    body: bytes
    content_type: str
    downscaled: bool
    original_bytes: int


def sniff_content_type(body: bytes) -> str:
    """The endpoint's content type for these bytes, from their magic number."""
    if body.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if body.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if body[:4] == b"RIFF" and body[8:12] == b"WEBP":
        return "image/webp"
    return "application/x-image"


def fit_request(body: bytes, limit: int = MAX_REQUEST_BYTES) -> RequestBody:
    """The bytes to send: unchanged when under ``limit``, else an upright, smaller JPEG."""
    if len(body) <= limit:
        return RequestBody(body, sniff_content_type(body), False, len(body))
    return RequestBody(downscale_jpeg(body, limit), "image/jpeg", True, len(body))


def downscale_jpeg(body: bytes, limit: int = MAX_REQUEST_BYTES) -> bytes:
    """Re-encode as JPEG, EXIF orientation applied, shrinking until the result is <= ``limit``."""
    image = open_upright(body)
    scale = 1.0
    for _ in range(MAX_DOWNSCALE_ROUNDS):
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        encoded = encode_jpeg(image, size)
        if len(encoded) <= limit:
            return encoded
        # Bytes scale roughly with pixel count: aim a little under the limit.
        scale *= min(0.9, (limit / len(encoded)) ** 0.5 * 0.95)
    raise PermanentFailure("ImageTooLarge", f"could not bring {len(body)} bytes under {limit}")


def encode_jpeg(image: Image.Image, size: tuple[int, int]) -> bytes:
    """``image`` resized to ``size`` (when it differs) as a JPEG; any failure is permanent."""
    try:
        candidate = image if size == image.size else image.resize(size, Image.Resampling.LANCZOS)
        out = io.BytesIO()
        candidate.save(out, format="JPEG", quality=JPEG_QUALITY, optimize=True)
        return out.getvalue()
    except MemoryError as exc:
        raise PermanentFailure("ImageEncodeFailed", f"out of memory encoding {size}") from exc
    except Exception as exc:  # OSError for a side over 65,500 px, ValueError, ...
        raise PermanentFailure("ImageEncodeFailed", f"cannot encode {size} as JPEG: {exc}") from exc


def open_upright(body: bytes) -> Image.Image:
    """Decode to RGB with the EXIF orientation applied, big images at a reduced scale (JPEGs while
    decoding, others right after), within the limits above."""
    with _decoding(len(body)):
        with _pillow_pixel_limit(MAX_PIXELS):
            image = Image.open(io.BytesIO(body))
        check_shape(*image.size)
        # An animation opens at its first frame, which stands for the image. (Asking whether it is
        # animated would read a GIF to its second frame: seconds for megabytes of comments.)
        pixels = image.width * image.height
        if image.format == "JPEG" and pixels > DRAFT_MIN_PIXELS:
            scale = math.sqrt(DRAFT_MIN_PIXELS / pixels)
            image.draft("RGB", (math.ceil(image.width * scale), math.ceil(image.height * scale)))
        factor = reduction_factor(image.size)
        needed = decode_bytes(image.mode, image.size, factor, image.format or "")
        if needed > MAX_DECODE_BYTES:
            raise PermanentFailure(
                "ImageTooLargeToDecode",
                f"{image.mode} {image.width}x{image.height} would need {needed >> 20} MiB to "
                f"decode; the limit is {MAX_DECODE_BYTES >> 20} MiB",
            )
        image.load()
        orientation = _orientation(image)
        rgb = _strips_to_rgb(image, factor)
        if rgb is not image:
            image.close()  # release the decoded pixels before rotating and encoding
        method = _TRANSPOSE.get(orientation)
        return rgb if method is None else rgb.transpose(method)


def check_shape(width: int, height: int) -> None:
    """Refuse, from the header alone, an image with no pixels, too many, or too long and thin."""
    if width < 1 or height < 1:
        raise PermanentFailure("NotAnImage", f"image has no pixels ({width}x{height})")
    if max(width, height) > MAX_ASPECT_RATIO * min(width, height):
        raise PermanentFailure(
            "ImageAspectRatio",
            f"{width}x{height} is longer than {MAX_ASPECT_RATIO}:1; the model takes photos",
        )
    if width * height > MAX_PIXELS:
        raise PermanentFailure(
            "ImageTooManyPixels", f"{width}x{height} is over {MAX_PIXELS} pixels"
        )


def reduction_factor(size: tuple[int, int], keep_pixels: int = DRAFT_MIN_PIXELS) -> int:
    """The largest integer factor ``Image.reduce`` may shrink ``size`` by while keeping at least
    ``keep_pixels`` pixels (as a JPEG draft keeps); 1 when none."""
    return max(1, math.isqrt(size[0] * size[1] // keep_pixels))


def decode_bytes(mode: str, size: tuple[int, int], factor: int = 1, image_format: str = "") -> int:
    """The memory budgeted for decoding: the decoded pixels, then the reduced RGB copy."""
    width, height = size
    per_pixel = 1 if mode in _ONE_BYTE_MODES else 2 if mode in _SIXTEEN_BIT_MODES else 4
    decoded = width * height * per_pixel * _DECODED_COPIES.get(image_format, 1)
    return decoded + 4 * math.ceil(width / factor) * math.ceil(height / factor)


@contextlib.contextmanager
def _decoding(size: int) -> Iterator[None]:
    """Every decoder failure as a PermanentFailure; Pillow's bomb warning as an error."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            yield
        except PermanentFailure:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise PermanentFailure("ImageTooManyPixels", str(exc)) from exc
        except MemoryError as exc:
            raise PermanentFailure("ImageTooLargeToDecode", "out of memory decoding") from exc
        except Exception as exc:  # UnidentifiedImageError, OSError, struct.error, EOFError, ...
            raise PermanentFailure(
                "NotAnImage", f"{size} bytes that cannot be decoded to downscale them: {exc}"
            ) from exc


@contextlib.contextmanager
def _pillow_pixel_limit(limit: int) -> Iterator[None]:
    previous = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = limit
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = previous


def _orientation(image: Image.Image) -> int:
    try:
        return int(image.getexif().get(ExifTags.Base.Orientation, 1))
    except Exception:  # malformed EXIF: keep the stored orientation
        return 1


def _strips_to_rgb(image: Image.Image, factor: int) -> Image.Image:
    """``image`` in RGB (alpha on white), reduced by ``factor``, one strip of rows at a time."""
    if image.mode == "RGB" and factor == 1:
        return image
    width, height = image.size
    result = Image.new("RGB", (math.ceil(width / factor), math.ceil(height / factor)))
    per_row = width * 4
    rows = max(1, STRIP_BYTES // per_row // factor) * factor  # whole blocks of factor rows
    for top in range(0, height, rows):
        strip = _to_rgb(image.crop((0, top, width, min(height, top + rows))))
        if factor > 1:
            strip = strip.reduce(factor)
        result.paste(strip, (0, top // factor))
    return result


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")
