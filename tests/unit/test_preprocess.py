"""The fast preprocessing gives the model the same tensor as the classic torchvision transform."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from dog_breeds.serving import preprocess


def photo(width: int, height: int, mode: str = "RGB", seed: int = 0) -> Image.Image:
    """A smooth, photo-like image (blocky noise upscaled), so resampling differences show."""
    rng = np.random.default_rng(seed)
    small = (rng.random((max(height // 8, 2), max(width // 8, 2), 3)) * 255).astype(np.uint8)
    return Image.fromarray(small).resize((width, height), Image.Resampling.BICUBIC).convert(mode)


def jpeg(image: Image.Image) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return Image.open(io.BytesIO(buffer.getvalue()))


def reference(image: Image.Image, size: int) -> np.ndarray:
    return preprocess.reference_transform(size)(image.convert("RGB")).numpy()


@pytest.mark.parametrize(
    "width, height",
    [(500, 375), (375, 500), (1024, 768), (256, 256), (300, 257), (257, 300), (640, 427), (99, 80)],
)
@pytest.mark.parametrize("size", [224, 64])
def test_same_tensor_as_torchvision_resize_crop_totensor_normalize(width, height, size):
    image = photo(width, height, seed=width + height)
    got = preprocess.to_model_input(image, size)
    expected = reference(image, size)
    assert got.shape == expected.shape == (3, size, size)
    assert got.dtype == np.float32 and got.flags["C_CONTIGUOUS"]
    np.testing.assert_allclose(got, expected, rtol=0, atol=2e-6)


@pytest.mark.parametrize("mode", ["L", "RGBA", "CMYK", "P"])
def test_other_modes_are_converted_to_rgb_like_the_reference(mode):
    image = photo(320, 240, mode=mode, seed=3)
    np.testing.assert_allclose(
        preprocess.to_model_input(image, 224), reference(image, 224), rtol=0, atol=2e-6
    )


def test_custom_normalisation_matches():
    image = photo(400, 300, seed=5)
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    got = preprocess.to_model_input(image, 224, mean, std)
    expected = preprocess.reference_transform(224, mean, std)(image).numpy()
    np.testing.assert_allclose(got, expected, rtol=0, atol=2e-6)


def test_resize_size_is_the_classic_256_for_224():
    assert preprocess.resize_size_for(224) == 256
    with pytest.raises(ValueError, match="smaller than the crop"):
        preprocess.to_model_input(photo(300, 300), 224, resize_size=200)


def test_draft_leaves_images_near_the_target_size_alone():
    image = jpeg(photo(1000, 750))  # short side 750 < 2 x 2 x 256: no reduction possible
    preprocess.draft_for_resize(image, 256)
    image.load()
    assert image.size == (1000, 750)


def test_draft_shrinks_a_large_jpeg_but_keeps_twice_the_resize_target():
    image = jpeg(photo(4032, 3024))
    preprocess.draft_for_resize(image, 256)
    image.load()
    assert image.size == (1008, 756)  # libjpeg's 1/4 scale; 756 >= 2 x 256
    full = jpeg(photo(4032, 3024))
    full.load()
    drafted = preprocess.to_model_input(image, 224)
    exact = reference(full, 224)
    # Not bit-identical (DCT-domain downscaling), but close: well under one 8-bit level on average.
    assert np.abs(drafted - exact).mean() < 0.02


def test_draft_ignores_formats_other_than_jpeg():
    buffer = io.BytesIO()
    photo(2048, 2048).save(buffer, "PNG")
    image = Image.open(io.BytesIO(buffer.getvalue()))
    preprocess.draft_for_resize(image, 256)
    image.load()
    assert image.size == (2048, 2048)
