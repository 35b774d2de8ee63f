"""Request bodies a public upload bucket will see, and what the endpoint must answer to each."""

from __future__ import annotations

import functools
import io
from dataclasses import dataclass

import numpy as np
from PIL import Image


def jpeg_bytes(size=(80, 60), color=(200, 40, 40), **save) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "JPEG", quality=90, **save)
    return buf.getvalue()


def noisy_jpeg(size=(200, 150)) -> bytes:
    """A JPEG whose entropy-coded data is long enough to be cut in the middle."""
    pixels = np.random.default_rng(0).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buf, "JPEG", quality=95)
    return buf.getvalue()


def encode(image: Image.Image, fmt: str, **save) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **save)
    return buf.getvalue()


@functools.cache
def bomb_png() -> bytes:
    """12,000 x 12,000 one-bit PNG: 144 megapixels in a few hundred kilobytes."""
    return encode(Image.new("1", (12_000, 12_000)), "PNG", optimize=True)


@dataclass(frozen=True)
class BadRequest:
    name: str
    body: bytes
    content_type: str
    status: int
    reason: str  # a fragment of the message the caller sees


def bad_requests() -> list[BadRequest]:
    jpeg = noisy_jpeg()
    return [
        BadRequest("zero_bytes", b"", "image/jpeg", 400, "empty"),
        BadRequest("not_an_image", b"hello, I am a text file\n" * 10, "image/jpeg", 400,
                   "not a recognisable image"),
        BadRequest("truncated_jpeg", jpeg[: len(jpeg) // 2], "image/jpeg", 400, "truncated"),
        BadRequest("header_only_jpeg", jpeg[:300], "image/jpeg", 400, "cannot be read"),
        BadRequest("decompression_bomb", bomb_png(), "image/png", 413, "too many pixels"),
        BadRequest("body_over_6_mib", b"\xff\xd8" + b"\0" * 6_291_456, "image/jpeg", 413,
                   "exceeds"),
        BadRequest("unsupported_format_tiff", encode(Image.new("RGB", (40, 40)), "TIFF"),
                   "application/x-image", 415, "TIFF"),
        BadRequest("unsupported_content_type", jpeg_bytes(), "application/pdf", 415,
                   "not supported"),
        BadRequest("unsupported_text_content_type", b"a,b,c\n1,2,3\n", "text/csv", 415,
                   "not supported"),
        BadRequest("json_not_json", b"{not json", "application/json", 400, "not valid JSON"),
        BadRequest("json_without_image", b'{"top_k": 3}', "application/json", 400, '"image"'),
        BadRequest("json_bad_base64", b'{"image": "***"}', "application/json", 400, "base64"),
        BadRequest("json_bad_top_k", b'{"image": "", "top_k": 0}', "application/json", 400,
                   "top_k"),
    ]  # fmt: skip


def odd_but_valid_images() -> dict[str, tuple[bytes, str]]:
    """Bodies that look unusual but are images the endpoint must classify: name -> (body, type)."""
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned 90° clockwise
    transparent = Image.new("RGBA", (32, 32), (0, 0, 0, 0))
    transparent.putpixel((0, 0), (0, 0, 0, 255))
    palette = Image.new("P", (32, 32), 0)
    palette.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    frames = [Image.new("RGB", (32, 32), c) for c in ((255, 0, 0), (0, 0, 255))]
    gif = io.BytesIO()
    frames[0].save(gif, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    sixteen_bit = Image.fromarray(np.full((32, 32), 32896, dtype=np.uint16), "I;16")
    rgb = Image.new("RGB", (40, 30), (10, 200, 10))
    return {
        "cmyk_jpeg": (encode(Image.new("CMYK", (32, 32), (0, 255, 255, 0)), "JPEG"), "image/jpeg"),
        "16_bit_png": (encode(sixteen_bit, "PNG"), "image/png"),
        "rgba_png": (encode(transparent, "PNG"), "image/png"),
        "palette_png_with_transparency": (encode(palette, "PNG", transparency=0), "image/png"),
        "exif_rotated_jpeg": (jpeg_bytes((60, 30), exif=exif.tobytes()), "image/jpeg"),
        "animated_gif": (gif.getvalue(), "image/gif"),
        "webp": (encode(rgb, "WEBP"), "image/webp"),
        "png_sent_as_jpeg": (encode(rgb, "PNG"), "image/jpeg"),
        "grayscale_jpeg_as_x_image": (encode(rgb.convert("L"), "JPEG"), "application/x-image"),
    }
