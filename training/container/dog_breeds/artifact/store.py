"""The model artifact: what ``SM_MODEL_DIR`` holds after training and ``model_fn`` loads.

model.pth     state_dict of network.DogBreedNet
classes.json  ordered class names (folder names without the numeric prefix)
config.json   enough to rebuild the network without train.py's arguments (CONFIG_KEYS)
openvino/     CPU-optimised form (artifact.cpu_form), written by training.cpu_export (optional)
code/         the serving code, only in a packaged model.tar.gz (serving_code.package_model)
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from dog_breeds.model import network

WEIGHTS_FILE = "model.pth"
CLASSES_FILE = "classes.json"
CONFIG_FILE = "config.json"
FORMAT_VERSION = 1
DEFAULT_MODEL_NAME = "dog-breeds-resnet50"
CONFIG_KEYS = (
    "format_version",
    "architecture",
    "num_classes",
    "hidden_size",
    "dropout",
    "image_size",
    "mean",
    "std",
    "model_name",
    "model_version",
)


def file_version(path: Path) -> str:
    """First 12 hex digits of the file's sha256: the model's version."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:12]


def save_artifact(
    model: torch.nn.Module,
    model_dir: Path,
    classes: list[str],
    *,
    hidden_size: int,
    dropout: float,
    image_size: int,
    mean: tuple[float, ...] | list[float],
    std: tuple[float, ...] | list[float],
    model_name: str = DEFAULT_MODEL_NAME,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write weights, classes and config into ``model_dir``; returns the config."""
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    torch.save(state, model_dir / WEIGHTS_FILE)
    (model_dir / CLASSES_FILE).write_text(json.dumps(list(classes), indent=1) + "\n")
    config = {
        "format_version": FORMAT_VERSION,
        "architecture": network.ARCHITECTURE,
        "num_classes": len(classes),
        "hidden_size": hidden_size,
        "dropout": dropout,
        "image_size": image_size,
        "mean": list(mean),
        "std": list(std),
        "model_name": model_name,
        "model_version": file_version(model_dir / WEIGHTS_FILE),
        **(extra or {}),
    }
    (model_dir / CONFIG_FILE).write_text(json.dumps(config, indent=1) + "\n")
    return config


def load_config(model_dir: Path) -> dict[str, Any]:
    config = json.loads((Path(model_dir) / CONFIG_FILE).read_text())
    missing = [k for k in CONFIG_KEYS if k not in config]
    if missing:
        raise ValueError(f"{model_dir}/{CONFIG_FILE} lacks {missing}")
    if config["architecture"] != network.ARCHITECTURE:
        raise ValueError(f"unknown architecture {config['architecture']!r}")
    return config


def load_classes(model_dir: Path) -> list[str]:
    return json.loads((Path(model_dir) / CLASSES_FILE).read_text())


def build_from_artifact(model_dir: Path) -> torch.nn.Module:
    """The trained network, on the CPU, in eval mode."""
    config = load_config(model_dir)
    model = network.build_model(
        config["num_classes"], config["hidden_size"], config["dropout"], pretrained=False
    )
    state = torch.load(Path(model_dir) / WEIGHTS_FILE, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model.eval()
