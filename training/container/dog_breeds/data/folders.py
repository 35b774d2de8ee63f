"""The dataset in the dogImages layout: ``train/ valid/ test/``, each ``NNN.Breed_name/*.jpg``.

Class names come from the folder names with the numeric prefix dropped; the class index is the
folders' sorted order (the same order in every split, checked).
"""

from __future__ import annotations

import io
import logging
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from dog_breeds.contract import IMAGENET_MEAN, IMAGENET_STD
from dog_breeds.serving import image_decode, preprocess

SPLITS = ("train", "valid", "test")
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif"})
_PREFIX = re.compile(r"^\d+[._-]")
JPEG_END = b"\xff\xd9"  # the end-of-image marker

log = logging.getLogger(__name__)


class DatasetError(ValueError):
    """The data folder is not in the dogImages layout: a user's fix, not a bug."""


def class_name(folder_name: str) -> str:
    """``001.Affenpinscher`` -> ``Affenpinscher`` (folders without a prefix keep their name)."""
    return _PREFIX.sub("", folder_name, count=1)


def class_folders(split_dir: Path) -> list[str]:
    folders = sorted(p.name for p in Path(split_dir).iterdir() if p.is_dir())
    if not folders:
        raise DatasetError(f"no class folders in {split_dir}")
    return folders


class ImageFolderDataset(Dataset):
    """(image tensor, class index) pairs from one split's class folders."""

    def __init__(self, split_dir: Path, folders: list[str], transform):
        self.transform = transform
        self.samples: list[tuple[Path, int]] = []
        for index, folder in enumerate(folders):
            folder_dir = Path(split_dir) / folder
            if not folder_dir.is_dir():
                continue  # a class may be absent from a small split
            for path in sorted(folder_dir.iterdir()):
                if path.suffix.lower() in IMAGE_SUFFIXES:
                    self.samples.append((path, index))
        if not self.samples:
            raise DatasetError(f"no images under {split_dir}")

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[index]
        with open_dataset_image(path) as image:
            return self.transform(image_decode.to_upright_rgb(image)), label

    @property
    def targets(self) -> list[int]:
        return [label for _, label in self.samples]


def open_dataset_image(path: Path) -> Image.Image:
    """A dataset file, loaded. A JPEG cut short (dogImages holds some) is decoded as far as its
    data goes, as Pillow's LOAD_TRUNCATED_IMAGES would, but without flipping that process-wide
    switch: the endpoint relies on it being off to reject truncated uploads."""
    image = Image.open(path)
    try:
        image.load()
        return image
    except OSError as exc:
        image.close()
        if "truncated" not in str(exc) or image.format not in ("JPEG", "MPO"):
            raise OSError(f"{path}: {exc}") from exc
    log.warning("%s is truncated: training on the part that is there", path)
    image = Image.open(io.BytesIO(Path(path).read_bytes() + JPEG_END))
    image.load()
    return image


def train_transform(image_size: int, mean=IMAGENET_MEAN, std=IMAGENET_STD):
    """Augmentation for training: scale/aspect crops and flips; no colour jitter (hue is signal)."""
    return transforms.Compose(
        [
            transforms.RandomResizedCrop(image_size, scale=(0.6, 1.0)),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize(mean, std),
        ]
    )


def eval_transform(image_size: int, mean=IMAGENET_MEAN, std=IMAGENET_STD):
    """Exactly the endpoint's preprocessing (preprocess.to_model_input)."""

    def transform(image: Image.Image) -> torch.Tensor:
        return torch.from_numpy(preprocess.to_model_input(image, image_size, mean, std))

    return transform


@dataclass
class DataSplits:
    classes: list[str]
    train: ImageFolderDataset
    valid: ImageFolderDataset
    test: ImageFolderDataset


def load_splits(data_dir: Path, image_size: int) -> DataSplits:
    data_dir = Path(data_dir)
    missing = [s for s in SPLITS if not (data_dir / s).is_dir()]
    if missing:
        raise DatasetError(
            f"{data_dir} lacks {', '.join(missing)}: "
            "expected train/ valid/ test/, each with NNN.Name/ folders"
        )
    folders = class_folders(data_dir / "train")
    for split in ("valid", "test"):
        extra = set(class_folders(data_dir / split)) - set(folders)
        if extra:
            raise DatasetError(f"{split}/ has classes that train/ lacks: {sorted(extra)}")
    return DataSplits(
        classes=[class_name(f) for f in folders],
        train=ImageFolderDataset(data_dir / "train", folders, train_transform(image_size)),
        valid=ImageFolderDataset(data_dir / "valid", folders, eval_transform(image_size)),
        test=ImageFolderDataset(data_dir / "test", folders, eval_transform(image_size)),
    )


def class_weights(targets: list[int], num_classes: int) -> torch.Tensor:
    """Inverse-frequency weights, mean 1 over the classes present: n / (classes * n_c)."""
    counts = Counter(targets)
    present = [c for c in range(num_classes) if counts[c]]
    total = sum(counts.values())
    weights = torch.ones(num_classes)
    for c in present:
        weights[c] = total / (len(present) * counts[c])
    return weights


def make_loader(dataset: Dataset, batch_size: int, shuffle: bool, num_workers: int) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        # A training batch of one image breaks BatchNorm in train mode: drop a lone remainder.
        drop_last=shuffle and len(dataset) % batch_size == 1,
        num_workers=num_workers,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=num_workers > 0,
    )
