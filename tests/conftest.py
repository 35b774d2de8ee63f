"""Session fixtures shared by every test area: the small default dataset and a model trained on it
from random init (once per session, in this process through ``trainer.main`` as a user's
arguments would run it). Dataset and recipe are ``local.tiny``'s, the ones the demo uses."""

from __future__ import annotations

import contextlib
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from local import tiny

os.environ.setdefault("SAGEMAKER_SUPPRESS_V2_WARNING", "1")


@dataclass(frozen=True)
class TrainingRun:
    model_dir: Path
    summary: dict[str, Any]
    stdout: str
    args: list[str]


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``train/ valid/ test/`` with ``NNN.Breed/*.jpg`` folders, 4 learnable classes."""
    return tiny.make_dataset(tmp_path_factory.mktemp("tiny") / "dogImages", seed=0)


@pytest.fixture(scope="session")
def tiny_training(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> TrainingRun:
    """One training run from random init: its model dir, summary and stdout (metric lines)."""
    from dog_breeds.training import trainer

    model_dir = tmp_path_factory.mktemp("trained") / "model"
    args = tiny.train_args(tiny_dataset, model_dir)
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        summary = trainer.main(args)
    return TrainingRun(model_dir, summary, stdout.getvalue(), args)


@pytest.fixture(scope="session")
def trained_artifact(tiny_training: TrainingRun) -> Path:
    """A model dir as SM_MODEL_DIR holds it after training (model.pth, classes.json, ...)."""
    return tiny_training.model_dir
