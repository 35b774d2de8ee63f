"""Session fixtures shared by every test area: the small default dataset and a model trained on it
from random init (once per session, in this process through ``trainer.main`` as a user's
arguments would run it). Dataset and recipe are ``local.tiny``'s, the ones the demo uses."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile
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


def _free_gib(path: Path) -> float:
    return shutil.disk_usage(path).free / 2**30


def pytest_report_header(config: pytest.Config) -> str:
    """Free disk where the tests write their temporary folders, and at the repo."""
    tmp = Path(tempfile.gettempdir())
    repo = config.rootpath
    return f"disk free: {_free_gib(tmp):.1f} GiB under {tmp}, {_free_gib(repo):.1f} GiB at {repo}"


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    tmp = Path(tempfile.gettempdir())
    terminalreporter.write_line(f"disk free at the end: {_free_gib(tmp):.1f} GiB under {tmp}")
