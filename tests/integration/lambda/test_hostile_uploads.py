"""A hostile object over the request limit ends as one FAILED item with its own error type, or is
downscaled, in bounded memory; no image error is ever taken for a transient one.

Each body of ``hostile_images``, padded past the 6 MiB request limit (so the function must decode
it), goes through ``classify_upload.images.fit_request`` in a child process whose address space is
capped at 1.5 GiB above its size at the start. Memory figures are ``make hostile``'s.
"""

from __future__ import annotations

import io
import struct

import hostile_images
import pytest
from PIL import Image, ImageFile

from classify_upload import images
from classify_upload.errors import PermanentFailure

CHILD_ADDRESS_SPACE = 3 << 29


@pytest.mark.parametrize("entry", hostile_images.CORPUS, ids=lambda e: e.name)
def test_each_hostile_object_is_downscaled_or_fails_permanently_in_bounded_memory(entry):
    body = hostile_images.function_body(entry)
    assert len(body) > images.MAX_REQUEST_BYTES
    got = hostile_images.run_in_child("function", body, CHILD_ADDRESS_SPACE)
    assert "killed" not in got, got
    assert got["outcome"] == entry.function, got


def test_a_side_the_jpeg_encoder_refuses_is_a_permanent_failure():
    with pytest.raises(PermanentFailure) as err:
        images.encode_jpeg(Image.new("L", (65_600, 1)), (65_600, 1))
    assert err.value.error_type == "ImageEncodeFailed"


@pytest.mark.parametrize(
    "raised, error_type",
    [
        (MemoryError(), "ImageTooLargeToDecode"),
        (struct.error("unpack requires a buffer"), "NotAnImage"),
        (ValueError("bad"), "NotAnImage"),
        (SyntaxError("bad"), "NotAnImage"),
        (EOFError(), "NotAnImage"),
        (OSError("broken data stream"), "NotAnImage"),
        (Image.DecompressionBombError("bomb"), "ImageTooManyPixels"),
    ],
)
def test_every_decoder_error_is_permanent_with_its_own_type(monkeypatch, raised, error_type):
    def load(self):
        raise raised

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)
    body = hostile_images.function_body(hostile_images.BY_NAME["png_rgb_20to1"])
    with pytest.raises(PermanentFailure) as err:
        images.fit_request(body)
    assert err.value.error_type == error_type


def test_pillows_bomb_warning_is_an_error_and_its_global_limit_is_left_alone(monkeypatch):
    monkeypatch.setattr(images, "MAX_PIXELS", 30_000)  # Pillow warns from 30,000 to 60,000
    monkeypatch.setattr(images, "check_shape", lambda width, height: None)
    before = Image.MAX_IMAGE_PIXELS
    body = hostile_images.pad_past(hostile_images.png(200, 200, "L"))  # 40,000 pixels
    with pytest.raises(PermanentFailure) as err:
        images.fit_request(body)
    assert err.value.error_type == "ImageTooManyPixels"
    assert before == Image.MAX_IMAGE_PIXELS


def test_transparency_is_composited_on_white_as_the_endpoint_does():
    body = hostile_images.pad_past(hostile_images.png(64, 64, "RGBA"))  # transparent black
    downscaled = images.fit_request(body)
    with Image.open(io.BytesIO(downscaled.body)) as image:
        assert min(image.convert("RGB").getpixel((32, 32))) > 240


def test_the_function_keeps_its_own_pixel_limit_after_the_endpoint_lowered_pillows(monkeypatch):
    """One process, both runtimes' code (as the e2e tests load them): the endpoint's model_fn sets
    Pillow's process-wide limit to 64 MP; the function still takes what its own limit allows."""
    from dog_breeds.serving import image_decode

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)  # restored after
    image_decode.lower_pixel_limit()
    # 144 MP of 8-bit grey: over twice the endpoint's limit (where Pillow's own check raises
    # instead of warning), within the function's pixel limit and byte budget.
    side = 12_000
    assert 2 * Image.MAX_IMAGE_PIXELS < side * side <= images.MAX_PIXELS
    body = hostile_images.pad_past(hostile_images.png(side, side, "L", value=90))
    request = images.fit_request(body)
    assert request.downscaled and len(request.body) <= images.MAX_REQUEST_BYTES
