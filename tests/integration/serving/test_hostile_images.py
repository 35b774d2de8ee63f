"""Hostile images sent to the endpoint get a 4xx or a model input, never a 500, in bounded memory.

Each body of ``hostile_images`` runs through the real decode (``decode_image`` with input_fn's
draft size, then ``to_model_input``) in a child process whose address space is capped at 1 GiB
above its size at the start: a change that lets a body eat memory again fails its test instead of
taking the machine. Memory figures are ``make hostile``'s, not asserted here.
"""

from __future__ import annotations

import hostile_images
import numpy as np
import pytest
from PIL import Image
from sagemaker_inference.errors import GenericInferenceToolkitError

from dog_breeds.serving import image_decode, preprocess
from dog_breeds.serving import inference as ei

CHILD_ADDRESS_SPACE = 1 << 30
REFUSED = [e for e in hostile_images.CORPUS if e.endpoint != 200]


@pytest.mark.parametrize("entry", hostile_images.CORPUS, ids=lambda e: e.name)
def test_each_hostile_body_gets_its_answer_in_a_memory_capped_worker(entry):
    got = hostile_images.run_in_child("endpoint", entry.body, CHILD_ADDRESS_SPACE)
    assert "killed" not in got, got
    assert got["status"] == entry.endpoint, got
    assert entry.endpoint_reason in got["reason"]
    if entry.endpoint == 200:
        assert got["shape"] == [3, 224, 224]


@pytest.mark.parametrize("entry", REFUSED, ids=lambda e: e.name)
def test_input_fn_answers_a_refused_body_with_the_same_4xx(entry):
    with pytest.raises(GenericInferenceToolkitError) as err:
        ei.input_fn(entry.body, "application/x-image")
    assert err.value.status_code == entry.endpoint
    assert entry.endpoint_reason in err.value.message


@pytest.mark.parametrize(
    "size, status", [((4000, 200), 200), ((200, 4000), 200), ((4020, 200), 400), ((1, 21), 400)]
)
def test_the_aspect_ratio_limit_is_twenty_to_one_either_way(size, status):
    body = hostile_images.png(*size, "L")
    if status == 200:
        assert image_decode.decode_image(body).size == size
    else:
        with pytest.raises(image_decode.BadImage, match="aspect ratio") as err:
            image_decode.decode_image(body)
        assert err.value.status == status


def test_the_decode_budget_counts_bytes_per_pixel_not_pixels():
    side = 7200  # 52 MP: fine as L (1 byte a pixel), too much as RGBA (4)
    factor = preprocess.reduction_factor((side, side), 256)
    assert image_decode.decode_bytes("L", (side, side), factor) < image_decode.MAX_DECODE_BYTES
    assert image_decode.decode_bytes("RGBA", (side, side), factor) > image_decode.MAX_DECODE_BYTES
    body = hostile_images.png(side, side, "RGBA", truncate_at=0.01)
    with pytest.raises(image_decode.BadImage, match="too large to decode") as err:
        image_decode.decode_image(body, resize_size=256)
    assert err.value.status == 413  # refused from the header: the cut data is never reached


@pytest.mark.parametrize("mode", ["L", "P", "LA", "RGBA", "I;16"])  # "1" is dither noise
@pytest.mark.parametrize("orientation", [1, 6])
def test_a_reduced_decode_gives_nearly_the_model_input_of_a_full_one(mode, orientation):
    """Large images of any format convert in strips and reduce before rotating: the model input
    stays within a few 8-bit levels of the full-size path's."""
    rng = np.random.default_rng(0)
    small = (rng.random((40, 30, 3)) * 255).astype(np.uint8)
    image = Image.fromarray(small).resize((1500, 2000), Image.Resampling.BICUBIC).convert(mode)
    exif = Image.Exif()
    exif[0x0112] = orientation
    body = hostile_images.encode(image, "PNG", exif=exif.tobytes())
    reduced = image_decode.decode_image(body, resize_size=256)
    full = image_decode.decode_image(body)
    assert reduced.size[0] * 2 == full.size[0] + 1 or reduced.size[0] * 2 == full.size[0]
    got, expected = (preprocess.to_model_input(i, 224) for i in (reduced, full))
    assert np.abs(got - expected).mean() < 0.02


def test_strip_conversion_is_pixel_for_pixel_the_whole_image_conversion(monkeypatch):
    image = Image.fromarray(
        (np.random.default_rng(1).random((300, 200, 4)) * 255).astype(np.uint8), "RGBA"
    )
    whole = image_decode.to_rgb(image)
    monkeypatch.setattr(image_decode, "STRIP_BYTES", 200 * 4 * 7)  # 7-row strips
    assert np.array_equal(np.asarray(image_decode.to_upright_rgb(image)), np.asarray(whole))


def test_a_long_thin_image_is_resized_only_where_the_crop_is():
    """What the model would get from a 20:1 strip, without the 256 x 5,120 intermediate."""
    strip = Image.fromarray(
        (np.random.default_rng(2).random((4000, 200, 3)) * 255).astype(np.uint8)
    )
    got = preprocess.to_model_input(strip, 224)
    expected = preprocess.reference_transform(224)(strip).numpy()
    assert got.shape == (3, 224, 224)
    assert np.abs(got - expected).max() <= 1 / 255 / 0.224 + 1e-6  # within one 8-bit level
