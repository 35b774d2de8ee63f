"""Session fixtures shared by every test area: a tiny dogImages-layout dataset and a model
trained on it from random init (once per session, through ``trainer.main`` as a user runs it)."""

from __future__ import annotations

import contextlib
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("SAGEMAKER_SUPPRESS_V2_WARNING", "1")

# 4 classes x 24/6/6 images of 64 px: from random init, ~1-2 s an epoch on 2 cores, test accuracy
# 1.0 in every seed tried (chance would be 0.25).
TINY_CLASSES = 4
TINY_PER_CLASS = (24, 6, 6)
TINY_IMAGE_SIZE = 64
TINY_EPOCHS = 8


@dataclass(frozen=True)
class TrainingRun:
    model_dir: Path
    summary: dict[str, Any]
    stdout: str
    args: list[str]


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``train/ valid/ test/`` with ``NNN.Breed/*.jpg`` folders, 4 learnable classes."""
    from dog_breeds.data.synthetic import make_dataset

    root = tmp_path_factory.mktemp("tiny") / "dogImages"
    return make_dataset(root, TINY_CLASSES, TINY_PER_CLASS, TINY_IMAGE_SIZE, seed=0)


@pytest.fixture(scope="session")
def tiny_training(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> TrainingRun:
    """One training run from random init: its model dir, summary and stdout (metric lines)."""
    from dog_breeds.training import trainer

    model_dir = tmp_path_factory.mktemp("trained") / "model"
    args = [
        "--data-dir", str(tiny_dataset), "--model-dir", str(model_dir),
        "--pretrained", "false", "--epochs", str(TINY_EPOCHS), "--batch_size", "16",
        "--lr", "1e-3", "--image_size", str(TINY_IMAGE_SIZE), "--num_workers", "0",
        "--patience", "3", "--seed", "0",
    ]  # fmt: skip
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        summary = trainer.main(args)
    return TrainingRun(model_dir, summary, stdout.getvalue(), args)


@pytest.fixture(scope="session")
def trained_artifact(tiny_training: TrainingRun) -> Path:
    """A model dir as SM_MODEL_DIR holds it after training (model.pth, classes.json, ...)."""
    return tiny_training.model_dir
