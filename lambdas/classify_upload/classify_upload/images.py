"""Making an object fit the endpoint's request limit; nothing else about images is judged here.

Whether the bytes are a usable image is the endpoint's call (it answers 4xx). The Lambda opens an
image only when it is too big to send, and then must: downscale with the EXIF orientation applied
(the re-encoded JPEG carries no EXIF) until it fits.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

from classify_upload.errors import PermanentFailure

# A real-time endpoint's InvokeEndpoint rejects larger request bodies (ValidationError); the
# function passes its own limit (settings.max_request_bytes: 4 MB for a serverless endpoint).
MAX_REQUEST_BYTES = 6_291_456
JPEG_QUALITY = 90
MAX_DOWNSCALE_ROUNDS = 12
# A decompression-bomb guard: above this many pixels Pillow refuses to decode.
MAX_PIXELS = 200_000_000
Image.MAX_IMAGE_PIXELS = MAX_PIXELS
# Decoding is what costs memory (3 bytes a pixel, plus a copy or two): a 200-megapixel phone photo
# would need about 1.8 GB. JPEGs are therefore decoded at 1/2, 1/4 or 1/8 scale where that still
# leaves at least this many pixels, far more than the model looks at.
DRAFT_MIN_PIXELS = 12_000_000


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
    try:
        image = open_upright(body)
    except (UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise PermanentFailure(
            "NotAnImage",
            f"{len(body)} bytes, over the {limit}-byte limit and not a decodable image: {exc}",
        ) from exc
    except (OSError, ValueError, SyntaxError) as exc:  # truncated or corrupt image data
        raise PermanentFailure("NotAnImage", f"cannot decode image to downscale it: {exc}") from exc

    scale = 1.0
    for _ in range(MAX_DOWNSCALE_ROUNDS):
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        candidate = image if scale == 1.0 else image.resize(size, Image.Resampling.LANCZOS)
        out = io.BytesIO()
        candidate.save(out, format="JPEG", quality=JPEG_QUALITY, optimize=True)
        encoded = out.getvalue()
        if len(encoded) <= limit:
            return encoded
        # Bytes scale roughly with pixel count: aim a little under the limit.
        scale *= min(0.9, (limit / len(encoded)) ** 0.5 * 0.95)
    raise PermanentFailure("ImageTooLarge", f"could not bring {len(body)} bytes under {limit}")


def open_upright(body: bytes) -> Image.Image:
    """Decode to RGB with the EXIF orientation applied; big JPEGs at a reduced scale."""
    with Image.open(io.BytesIO(body)) as opened:
        pixels = opened.width * opened.height
        if opened.format == "JPEG" and pixels > DRAFT_MIN_PIXELS:
            scale = math.sqrt(DRAFT_MIN_PIXELS / pixels)
            opened.draft("RGB", (math.ceil(opened.width * scale), math.ceil(opened.height * scale)))
        return ImageOps.exif_transpose(opened).convert("RGB")
