"""Hostile image bodies, built in code, and what the endpoint and the function must do with each.

Every entry is small on the wire (kilobytes, at most a few megabytes) and large, oddly shaped or
broken once decoded: extreme aspect ratios, sides past the JPEG encoder's 65,500 px, every mode a
supported format can carry at the endpoint's 64-megapixel limit, animations, truncated files, and
an RGBA PNG padded past the 6 MiB request limit with an ancillary chunk. ``Hostile.endpoint`` is
the HTTP status ``decode_image`` + ``to_model_input`` must end in (200: a model input comes out)
and ``endpoint_reason`` a fragment of the 4xx message. ``Hostile.function`` is what
``classify_upload.images.fit_request`` must do with ``function_body(entry)`` (the body padded past
the request limit, so the function has to decode it): ``"downscaled"`` or the
``PermanentFailure.error_type`` it raises.

The PNGs are written here row by row (zlib fed one row at a time), so even a 10000 x 8000 RGBA
body costs this process a row, not 320 MB. Bodies are built once per process (``body``).
"""

from __future__ import annotations

import functools
import io
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image

# InvokeEndpoint's request limit (the function's default MAX_REQUEST_BYTES).
REQUEST_LIMIT = 6_291_456
ACCEPTED = 200
DOWNSCALED = "downscaled"


@dataclass(frozen=True)
class Hostile:
    name: str
    cls: str  # aspect, codec_limit, pixel_limit, animated, truncated, padded, ordinary
    build: Callable[[], bytes]
    endpoint: int  # 200, or the 4xx status decode_image must raise
    endpoint_reason: str  # a fragment of the 4xx message ("" when accepted)
    function: str  # DOWNSCALED, or the PermanentFailure error_type fit_request must raise

    @property
    def body(self) -> bytes:
        return _built(self.name)


# ---------------------------------------------------------------------------- encoders
_PNG_TYPES = {  # mode -> (colour type, bit depth, samples)
    "1": (0, 1, 1),
    "L": (0, 8, 1),
    "I;16": (0, 16, 1),
    "RGB": (2, 8, 3),
    "P": (3, 8, 1),
    "LA": (4, 8, 2),
    "RGBA": (6, 8, 4),
}


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(width: int, height: int, mode: str, *, value: int = 0, truncate_at: float = 1.0) -> bytes:
    """A ``width`` x ``height`` PNG of one value per byte, encoded one row at a time.
    ``truncate_at`` < 1 keeps only that fraction of the compressed pixel data."""
    colour, depth, samples = _PNG_TYPES[mode]
    row = b"\0" + bytes([value]) * ((width * samples * depth + 7) // 8)
    compressor = zlib.compressobj(1)
    parts = [compressor.compress(row) for _ in range(height)]
    data = b"".join(parts) + compressor.flush()
    data = data[: max(1, int(len(data) * truncate_at))]
    header = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    chunks = [_chunk(b"IHDR", header)]
    if mode == "P":
        chunks.append(_chunk(b"PLTE", bytes(range(256)) * 3))
    chunks.append(_chunk(b"IDAT", data))
    if truncate_at >= 1.0:
        chunks.append(_chunk(b"IEND", b""))
    return b"\x89PNG\r\n\x1a\n" + b"".join(chunks)


def encode(image: Image.Image, fmt: str, **save) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **save)
    return out.getvalue()


def _frames(size: tuple[int, int], count: int, mode: str = "RGB") -> list[Image.Image]:
    colours = [(255, 0, 0), (0, 0, 255), (0, 160, 0)]
    return [Image.new(mode, size, colours[i % 3]) for i in range(count)]


def animated(fmt: str, size=(64, 64), count: int = 3, **save) -> bytes:
    frames = _frames(size, count, "RGBA" if fmt == "WEBP" else "RGB")
    return encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=40, **save)


def photo_jpeg(size=(1024, 768)) -> bytes:
    """A smooth, photo-like JPEG (blocky noise, upscaled)."""
    import numpy as np

    rng = np.random.default_rng(0)
    small = (rng.random((size[1] // 16, size[0] // 16, 3)) * 255).astype(np.uint8)
    image = Image.fromarray(small).resize(size, Image.Resampling.BICUBIC)
    return encode(image, "JPEG", quality=90)


def noise_gif(size=(300, 300)) -> bytes:
    """A single-frame GIF of noise: its LZW data is long enough to be cut inside the frame."""
    import numpy as np

    pixels = np.random.default_rng(0).integers(0, 255, (size[1], size[0]), dtype=np.uint8)
    return encode(Image.fromarray(pixels, "L").convert("P"), "GIF")


def cut(body: bytes, fraction: float = 0.5) -> bytes:
    return body[: int(len(body) * fraction)]


# ---------------------------------------------------------------------------- padding
def pad_past(body: bytes, size: int = REQUEST_LIMIT) -> bytes:
    """``body`` grown past ``size`` bytes without changing its pixels: a private ancillary chunk
    before IDAT (PNG), comment segments (JPEG, GIF), an unknown RIFF chunk (WebP), else trailing
    zeros. A body already over ``size`` is returned as it is."""
    need = size + 1 - len(body)
    if need <= 0:
        return body
    if body.startswith(b"\x89PNG\r\n\x1a\n") and len(body) >= 33:
        return body[:33] + _chunk(b"prVt", b"\0" * need) + body[33:]  # after IHDR
    if body.startswith(b"\xff\xd8"):
        count = need // 65_533 + 1
        segment = b"\xff\xfe" + struct.pack(">H", 65_535) + b"\0" * 65_533
        return body[:2] + segment * count + body[2:]
    if body.startswith(b"GIF8") and body.endswith(b";"):
        blocks = b"".join(b"\xff" + b"\0" * 255 for _ in range(need // 255 + 1))
        return body[:-1] + b"\x21\xfe" + blocks + b"\0;"
    if body[:4] == b"RIFF" and body[8:12] == b"WEBP":
        need += need % 2  # RIFF chunks have an even size
        chunk = b"PADD" + struct.pack("<I", need) + b"\0" * need
        return body[:4] + struct.pack("<I", len(body) - 8 + len(chunk)) + body[8:] + chunk
    return body + b"\0" * need


def function_body(entry: Hostile, size: int = REQUEST_LIMIT) -> bytes:
    """What the function is given: the entry's body, padded past the request limit."""
    return pad_past(entry.body, size)


# ---------------------------------------------------------------------------- the corpus
MP64 = 8192  # 8192 x 8192 = the endpoint's 64-megapixel limit


def _corpus() -> list[Hostile]:
    aspect, pixels, budget = "aspect ratio", "too many pixels", "to decode"
    broken, body_limit = "corrupt or truncated", "exceeds"
    h = Hostile
    return [
        h("jpeg_photo_1024x768", "ordinary", photo_jpeg, 200, "", DOWNSCALED),
        h("jpeg_panorama_8to1", "ordinary", lambda: photo_jpeg((4096, 512)), 200, "", DOWNSCALED),
        h("png_rgb_20to1", "aspect", lambda: png(4000, 200, "RGB"), 200, "", DOWNSCALED),
        h("png_rgba_21to1", "aspect", lambda: png(2100, 100, "RGBA"), 400, aspect,
          "ImageAspectRatio"),
        h("png_L_2x40000", "aspect", lambda: png(2, 40_000, "L"), 400, aspect,
          "ImageAspectRatio"),
        h("png_L_40000x2", "aspect", lambda: png(40_000, 2, "L"), 400, aspect,
          "ImageAspectRatio"),
        h("png_1_1x65000", "aspect", lambda: png(1, 65_000, "1"), 400, aspect,
          "ImageAspectRatio"),
        h("gif_65000x1", "aspect", lambda: encode(Image.new("P", (65_000, 1)), "GIF"), 400,
          aspect, "ImageAspectRatio"),
        h("jpeg_60000x3", "aspect", lambda: encode(Image.new("RGB", (60_000, 3)), "JPEG"), 400,
          aspect, "ImageAspectRatio"),
        h("png_L_66000x2", "codec_limit", lambda: png(66_000, 2, "L"), 400, aspect,
          "ImageAspectRatio"),
        h("png_1_66000x4000", "codec_limit", lambda: png(66_000, 4_000, "1"), 413, pixels,
          "ImageTooManyPixels"),
        h("png_1_66000x66000_header", "codec_limit", lambda: png(66_000, 66_000, "1",
          truncate_at=0.001), 413, pixels, "ImageTooManyPixels"),
        h("png_1_64mp", "pixel_limit", lambda: png(MP64, MP64, "1"), 200, "", DOWNSCALED),
        h("png_L_64mp", "pixel_limit", lambda: png(MP64, MP64, "L"), 200, "", DOWNSCALED),
        h("png_P_64mp", "pixel_limit", lambda: png(MP64, MP64, "P"), 200, "", DOWNSCALED),
        h("png_I16_64mp", "pixel_limit", lambda: png(MP64, MP64, "I;16"), 200, "", DOWNSCALED),
        h("png_LA_64mp", "pixel_limit", lambda: png(MP64, MP64, "LA"), 413, budget, DOWNSCALED),
        h("png_RGB_64mp", "pixel_limit", lambda: png(MP64, MP64, "RGB"), 413, budget,
          DOWNSCALED),
        h("png_RGBA_64mp", "pixel_limit", lambda: png(MP64, MP64, "RGBA"), 413, budget,
          DOWNSCALED),
        h("png_RGBA_7000x9000", "pixel_limit", lambda: png(7000, 9000, "RGBA"), 413, budget,
          DOWNSCALED),
        h("png_RGB_6000x4000", "pixel_limit", lambda: png(6000, 4000, "RGB"), 200, "",
          DOWNSCALED),
        h("png_RGBA_6800x6800", "pixel_limit", lambda: png(6800, 6800, "RGBA"), 200, "",
          DOWNSCALED),
        h("gif_P_64mp", "pixel_limit", lambda: encode(Image.new("P", (MP64, MP64)), "GIF"), 200,
          "", DOWNSCALED),
        h("bmp_1_6000x6000", "pixel_limit", lambda: encode(Image.new("1", (6000, 6000)), "BMP"),
          200, "", DOWNSCALED),
        h("jpeg_L_64mp", "pixel_limit", lambda: encode(Image.new("L", (MP64, MP64), 90), "JPEG"),
          200, "", DOWNSCALED),
        h("jpeg_CMYK_4096", "pixel_limit", lambda: encode(Image.new("CMYK", (4096, 4096),
          (0, 90, 90, 0)), "JPEG"), 200, "", DOWNSCALED),
        h("webp_RGBA_3500", "pixel_limit", lambda: encode(Image.new("RGBA", (3500, 3500),
          (10, 200, 30, 128)), "WEBP", quality=10, method=0), 200, "", DOWNSCALED),
        h("webp_RGBA_4096", "pixel_limit", lambda: encode(Image.new("RGBA", (4096, 4096),
          (10, 200, 30, 128)), "WEBP", quality=10, method=0), 413, budget, DOWNSCALED),
        h("webp_RGB_5500", "pixel_limit", lambda: encode(Image.new("RGB", (5500, 5500),
          (10, 200, 30)), "WEBP", quality=10, method=0), 413, budget, "ImageTooLargeToDecode"),
        h("tiff_F_64x64", "pixel_limit", lambda: encode(Image.new("F", (64, 64), 0.5), "TIFF"),
          415, "TIFF", DOWNSCALED),
        h("gif_animated_3", "animated", lambda: animated("GIF"), 200, "", DOWNSCALED),
        h("gif_animated_500", "animated", lambda: animated("GIF", count=500), 200, "",
          DOWNSCALED),
        h("apng_animated_3", "animated", lambda: animated("PNG"), 200, "", DOWNSCALED),
        h("webp_animated_3", "animated", lambda: animated("WEBP"), 200, "", DOWNSCALED),
        h("png_RGB_truncated", "truncated", lambda: png(1000, 1000, "RGB", value=7,
          truncate_at=0.5), 400, broken, "NotAnImage"),
        h("png_RGBA_64mp_header_only", "truncated", lambda: png(MP64, MP64, "RGBA",
          truncate_at=0.001), 413, budget, "NotAnImage"),
        h("jpeg_truncated", "truncated", lambda: cut(photo_jpeg()), 400, broken, "NotAnImage"),
        h("gif_truncated", "truncated", lambda: cut(noise_gif()), 400, broken, "NotAnImage"),
        h("webp_truncated", "truncated", lambda: cut(animated("WEBP", (300, 300), 1)), 400,
          "", "NotAnImage"),
        h("png_RGBA_10000x8000_padded", "padded", lambda: pad_past(png(10_000, 8_000, "RGBA")),
          413, body_limit, DOWNSCALED),
    ]  # fmt: skip


CORPUS: list[Hostile] = _corpus()
BY_NAME: dict[str, Hostile] = {entry.name: entry for entry in CORPUS}


@functools.cache
def _built(name: str) -> bytes:
    return BY_NAME[name].build()


# ---------------------------------------------------------------------------- running one request
# A child process runs one request through the real code, so its peak RSS is that request's alone
# and a regression that eats memory ends in that child (MemoryError under RLIMIT_AS), not the
# machine. The endpoint request is what input_fn + predict_fn do before the model: decode_image
# with input_fn's draft size, then to_model_input for a 224 px model. The function request is
# fit_request on the padded body.
# dog_breeds.serving.inference.DRAFT_RESIZE_SIZE (importing inference loads torch).
ENDPOINT_DRAFT_SIZE = 256
MODEL_IMAGE_SIZE = 224


def endpoint_request(body: bytes) -> dict:
    """``{"status": 200 or 4xx, "reason": ...}``; 500 for anything that is not a BadImage."""
    from dog_breeds.serving import image_decode, preprocess

    try:
        image = image_decode.decode_image(body, resize_size=ENDPOINT_DRAFT_SIZE)
        pixels = preprocess.to_model_input(image, MODEL_IMAGE_SIZE)
        return {"status": 200, "reason": "", "shape": list(pixels.shape)}
    except image_decode.BadImage as exc:
        return {"status": exc.status, "reason": exc.reason}
    except BaseException as exc:  # what the toolkit would answer with a 500
        return {"status": 500, "reason": f"{type(exc).__name__}: {exc}"}


def function_request(body: bytes) -> dict:
    """``{"outcome": "downscaled" | "sent" | error_type | "transient: ...", "reason": ...}``."""
    from classify_upload.errors import PermanentFailure
    from classify_upload.images import fit_request

    try:
        request = fit_request(body)
        return {"outcome": DOWNSCALED if request.downscaled else "sent", "reason": ""}
    except PermanentFailure as exc:
        return {"outcome": exc.error_type, "reason": exc.message}
    except BaseException as exc:  # the function's handler would treat it as transient
        return {"outcome": f"transient: {type(exc).__name__}", "reason": str(exc)[:300]}


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise LookupError(field)


def _warm_up(run: Callable[[bytes], dict], path: str) -> None:
    """Load the codecs and numpy before the baseline, so they do not count as the request's."""
    tiny = [encode(Image.new("RGB", (600, 400), (9, 9, 9)), fmt) for fmt in ("JPEG", "PNG")]
    tiny += [encode(Image.new("RGBA", (32, 32)), fmt) for fmt in ("WEBP", "GIF", "BMP")]
    for body in tiny:
        run(pad_past(body) if path == "function" else body)


def child_main(path: str, body_file: str, address_space_bytes: int = 0) -> None:
    """In a fresh interpreter: one request, then a JSON line with its outcome and peak growth."""
    import json
    import resource
    from pathlib import Path

    run = endpoint_request if path == "endpoint" else function_request
    body = Path(body_file).read_bytes()
    _warm_up(run, path)
    if address_space_bytes:
        limit = _status_kib("VmSize") * 1024 + address_space_bytes
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    before = _status_kib("VmHWM")
    result = run(body)
    result["peak_growth_mib"] = round((_status_kib("VmHWM") - before) / 1024, 1)
    print(json.dumps(result))


def run_in_child(
    path: str, body: bytes, address_space_bytes: int = 0, pythonpath: str = "", timeout=300
) -> dict:
    """``child_main`` in a fresh ``sys.executable``; ``{"killed": signal}`` if it did not end
    normally. ``pythonpath`` goes first on the child's PYTHONPATH (an older copy of the code)."""
    import json
    import os
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    here = str(Path(__file__).resolve().parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (pythonpath, here, env.get("PYTHONPATH")) if p)
    with tempfile.NamedTemporaryFile(suffix=".body") as file:
        file.write(body)
        file.flush()
        code = "import sys, hostile_images as h; h.child_main(*sys.argv[1:3], int(sys.argv[3]))"
        done = subprocess.run(
            [sys.executable, "-c", code, path, file.name, str(address_space_bytes)],
            capture_output=True, text=True, env=env, timeout=timeout,
        )  # fmt: skip
    if done.returncode != 0:
        return {"killed": done.returncode, "stderr": done.stderr[-2000:]}
    return json.loads(done.stdout.strip().splitlines()[-1])
