"""Image → model input without torchvision: the same tensor as the classic eval transform, faster.

The reference is torchvision's ``Resize(resize_size)`` → ``CenterCrop(image_size)`` →
``ToTensor()`` → ``Normalize(mean, std)`` on a PIL image (``reference_transform``).
``to_model_input`` does the same
with PIL (torchvision's PIL resize *is* ``Image.resize(..., BILINEAR)``) and one fused numpy pass
for scaling and normalisation, giving the same values within ~1e-6.

An image whose resized shape would be long and thin (over ``FULL_RESIZE_MAX_ASPECT``: a 2 x 40,000
strip would resize to 256 x 5.1 M pixels) is resized only where the centre crop lies, in source
coordinates (``Image.resize(box=...)``): the same crop within one 8-bit level, and memory follows
the crop, not the shape. Below that ratio the full resize is kept, bit for bit.

For large JPEGs, ``draft_for_resize`` (call it after ``Image.open`` and before the pixels are
loaded) lets libjpeg decode at 1/2, 1/4 or 1/8 scale while keeping at least ``min_factor`` × the
resize target, so a 12 MP photo decodes in a fraction of the time. That changes pixels slightly
(not bit-identical to a full decode); images already near the target size are left alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from PIL import Image

from dog_breeds.contract import IMAGENET_MEAN, IMAGENET_STD

# Resized long side / short side beyond which only the centre crop's region is resized.
FULL_RESIZE_MAX_ASPECT = 16


def resize_size_for(image_size: int) -> int:
    """The classic eval recipe's short-side resize: 256 for a 224 crop, same ratio otherwise."""
    return round(image_size * 256 / 224)


def resized_shape(width: int, height: int, resize_size: int) -> tuple[int, int]:
    """(width, height) after torchvision's ``Resize(resize_size)``: short side set, long cut."""
    if width <= height:
        return resize_size, int(resize_size * height / width)
    return int(resize_size * width / height), resize_size


def draft_for_resize(image: Image.Image, resize_size: int, min_factor: float = 2.0) -> None:
    """Ask libjpeg for a DCT-downscaled decode that keeps ≥ ``min_factor`` × the resize target.

    Only JPEGs are affected, and only when the image's short side is at least 2 × that bound.
    Must run before the image's pixels are loaded. EXIF orientation is unaffected.
    """
    if image.format not in ("JPEG", "MPO"):
        return
    keep = int(resize_size * min_factor)
    width, height = image.size
    scale = keep / min(width, height)
    if scale <= 0.5:
        # draft() picks the largest reduction whose result is still >= the requested size.
        image.draft(image.mode, (math.ceil(width * scale), math.ceil(height * scale)))


def reduction_factor(size: tuple[int, int], resize_size: int, min_factor: float = 2.0) -> int:
    """The integer factor an image of ``size`` can be shrunk by (``Image.reduce``) while its short
    side keeps at least ``min_factor`` × ``resize_size``, as ``draft_for_resize`` keeps; 1 if none.
    """
    return max(1, min(size) // int(resize_size * min_factor))


def to_model_input(
    image: Image.Image,
    image_size: int,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    resize_size: int | None = None,
) -> np.ndarray:
    """A decoded image → float32 CHW array (3, image_size, image_size), normalised, contiguous.

    Drop-in for ``image_decode.to_model_input`` (same arguments and shape); stack for a batch.
    """
    if image.mode != "RGB":
        image = image.convert("RGB")
    resize_size = resize_size or resize_size_for(image_size)
    if resize_size < image_size:
        raise ValueError(f"resize_size {resize_size} is smaller than the crop {image_size}")
    width, height = image.size
    new_w, new_h = resized_shape(width, height, resize_size)
    # torchvision's CenterCrop offsets: round half to even, as Python's round() does.
    top = round((new_h - image_size) / 2.0)
    left = round((new_w - image_size) / 2.0)
    if max(new_w, new_h) > FULL_RESIZE_MAX_ASPECT * min(new_w, new_h):
        # The crop's region in source coordinates, at the full resize's scale.
        scale_x, scale_y = width / new_w, height / new_h
        box = (left * scale_x, top * scale_y,
               (left + image_size) * scale_x, (top + image_size) * scale_y)  # fmt: skip
        crop = image.resize((image_size, image_size), Image.Resampling.BILINEAR, box=box)
        return normalise(np.asarray(crop), mean, std)
    if (new_w, new_h) != image.size:
        image = image.resize((new_w, new_h), Image.Resampling.BILINEAR)
    pixels = np.asarray(image.crop((left, top, left + image_size, top + image_size)))
    return normalise(pixels, mean, std)


def normalise(pixels: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """uint8 HWC RGB → float32 CHW: (x / 255 - mean) / std as one multiply-add per channel."""
    std_arr = np.asarray(std, dtype=np.float32)
    scale = (1.0 / (255.0 * std_arr)).astype(np.float32)
    offset = (np.asarray(mean, dtype=np.float32) / std_arr).astype(np.float32)
    chw = np.empty((3, *pixels.shape[:2]), dtype=np.float32)
    for channel in range(3):
        np.multiply(pixels[:, :, channel], scale[channel], out=chw[channel], dtype=np.float32)
        chw[channel] -= offset[channel]
    return chw


def reference_transform(
    image_size: int,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    resize_size: int | None = None,
):
    """The classic torchvision eval transform that ``to_model_input`` reproduces (tests, bench)."""
    from torchvision import transforms

    return transforms.Compose(
        [
            transforms.Resize(resize_size or resize_size_for(image_size)),
            transforms.CenterCrop(image_size),
            transforms.ToTensor(),
            transforms.Normalize(list(mean), list(std)),
        ]
    )
