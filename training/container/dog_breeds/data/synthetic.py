"""A small generated dataset in the dogImages layout, for offline tests and the demo.

Each class has its own hue and stripe orientation/frequency, with per-image jitter (hue, phase,
brightness, noise, framing), so a network trained from random init learns it in a few epochs.

    cd training/container && python -m dog_breeds.data.synthetic OUT --classes 4 \
        --per-class 24 6 6 --image-size 96
"""

from __future__ import annotations

import argparse
import colorsys
import math
from pathlib import Path

import numpy as np
from PIL import Image

# The first dogImages breeds, so the generated folders look like the real ones.
BREEDS = (
    "Affenpinscher",
    "Afghan_hound",
    "Airedale_terrier",
    "Akita",
    "Alaskan_malamute",
    "American_eskimo_dog",
    "American_foxhound",
    "American_staffordshire_terrier",
    "American_water_spaniel",
    "Anatolian_shepherd_dog",
)
SPLITS = ("train", "valid", "test")


def folder_names(classes: int) -> list[str]:
    names = [BREEDS[i] if i < len(BREEDS) else f"Breed_{i + 1}" for i in range(classes)]
    return [f"{i + 1:03d}.{name}" for i, name in enumerate(names)]


def render(
    class_index: int, classes: int, image_size: int, rng: np.random.Generator
) -> Image.Image:
    """One image of class ``class_index``: a striped field of the class's hue."""
    hue = (class_index / classes + rng.normal(0, 0.015)) % 1.0
    angle = math.pi * ((class_index * 0.618) % 1.0) + rng.normal(0, 0.08)
    period = image_size / (3 + (class_index % 3) * 2)  # 3, 5 or 7 stripes across
    phase = rng.uniform(0, 2 * math.pi)
    y, x = np.mgrid[0:image_size, 0:image_size].astype(np.float32)
    u = x * math.cos(angle) + y * math.sin(angle)
    stripes = 0.5 + 0.5 * np.sin(2 * math.pi * u / period + phase)  # 0..1
    base = np.array(colorsys.hsv_to_rgb(hue, 0.85, 0.95), dtype=np.float32)
    dark = base * 0.35
    pixels = dark + (base - dark) * stripes[..., None]
    pixels *= rng.uniform(0.85, 1.1)
    pixels += rng.normal(0, 0.04, pixels.shape)
    image = Image.fromarray((np.clip(pixels, 0, 1) * 255).astype(np.uint8), "RGB")
    # A random frame offset, as if the subject were not centred.
    shift = int(image_size * 0.1)
    dx, dy = rng.integers(-shift, shift + 1, size=2)
    return image.rotate(0, translate=(int(dx), int(dy)), fillcolor=(128, 128, 128))


def make_dataset(
    root: Path,
    classes: int = 4,
    per_class: tuple[int, int, int] = (24, 6, 6),
    image_size: int = 96,
    seed: int = 0,
) -> Path:
    """Write ``root/{train,valid,test}/NNN.Name/*.jpg`` and return ``root``."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    for split, count in zip(SPLITS, per_class, strict=True):
        for index, folder in enumerate(folder_names(classes)):
            out = root / split / folder
            out.mkdir(parents=True, exist_ok=True)
            for n in range(count):
                image = render(index, classes, image_size, rng)
                image.save(out / f"{folder.split('.', 1)[1]}_{n:05d}.jpg", quality=90)
    return root


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path, help="directory to create (dogImages layout)")
    parser.add_argument("--classes", type=int, default=4)
    parser.add_argument(
        "--per-class", type=int, nargs=3, default=(24, 6, 6), metavar=("TRAIN", "VALID", "TEST")
    )
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    root = make_dataset(args.out, args.classes, tuple(args.per_class), args.image_size, args.seed)
    print(root)
    return root


if __name__ == "__main__":
    main()
