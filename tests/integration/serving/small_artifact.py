"""A small real model and its artifact files, for the serving tests.

The artifact files follow the model-artifact contract (model.pth state_dict, config.json with
image_size, num_classes, model_version = sha256(model.pth)[:12]); written here directly so these
tests depend only on the network definition, not on the training run.
(A uniquely named module, not conftest: several test folders have a conftest.py.)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import torch

from dog_breeds.model import network

IMAGE_SIZE = 64
NUM_CLASSES = 4


def small_model(seed: int = 0) -> torch.nn.Module:
    """A real DogBreedNet with non-trivial BatchNorm statistics, so logits are not degenerate."""
    torch.manual_seed(seed)
    model = network.build_model(NUM_CLASSES, hidden_size=16, dropout=0.0)
    # A few train-mode forwards give BatchNorm running statistics that are not the identity.
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(4, 3, IMAGE_SIZE, IMAGE_SIZE))
    return model.eval()


def write_artifact(model_dir: Path, model: torch.nn.Module, image_size: int = IMAGE_SIZE) -> Path:
    model_dir.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), model_dir / "model.pth")
    version = hashlib.sha256((model_dir / "model.pth").read_bytes()).hexdigest()[:12]
    config = {
        "architecture": network.ARCHITECTURE,
        "num_classes": NUM_CLASSES,
        "hidden_size": 16,
        "dropout": 0.0,
        "image_size": image_size,
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        "model_name": "fast-serving-test",
        "model_version": version,
    }
    (model_dir / "config.json").write_text(json.dumps(config))
    return model_dir


def loader_for(model_dir: Path) -> Callable[[], torch.nn.Module]:
    """The ``build_torch_model`` callable that model_fn would pass: rebuild and load model.pth."""

    def build() -> torch.nn.Module:
        build.calls += 1
        model = network.build_model(NUM_CLASSES, hidden_size=16, dropout=0.0)
        model.load_state_dict(torch.load(model_dir / "model.pth", weights_only=True))
        return model.eval()

    build.calls = 0
    return build
