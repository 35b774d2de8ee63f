"""Fixtures for the serving tests: a small real artifact (ResNet50 + head at 64 px, 4 classes),
exported to OpenVINO once per session."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from small_artifact import IMAGE_SIZE, small_model, write_artifact

from dog_breeds.training import cpu_export


@dataclass
class ExportObservations:
    """What the session's one export did to the model it was handed (see the export tests)."""

    hook_calls_during_export: int
    training_after_export: bool
    state_unchanged: bool
    hook_calls_after_forward: int


@pytest.fixture(scope="session")
def exported_session(tmp_path_factory) -> tuple[Path, ExportObservations]:
    """One export per session, of a model in train mode carrying a forward hook (as train.py's
    model does, with smdebug's hook on it)."""
    model = small_model()
    model_dir = write_artifact(tmp_path_factory.mktemp("artifact"), model)
    calls = []
    handle = model.register_forward_hook(lambda *_: calls.append(1))
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert cpu_export.export_cpu_form(model, model_dir) == model_dir / "openvino"
    during = len(calls)
    training = model.training
    unchanged = all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 3, IMAGE_SIZE, IMAGE_SIZE))
    handle.remove()
    return model_dir, ExportObservations(during, training, unchanged, len(calls) - during)


@pytest.fixture(scope="session")
def exported_artifact(exported_session) -> Path:
    """An artifact with its OpenVINO IR (never modify it: use ``artifact_copy``)."""
    return exported_session[0]


@pytest.fixture(scope="session")
def other_weights(tmp_path_factory) -> Path:
    """A model.pth from a different model (as if retrained), built once."""
    path = tmp_path_factory.mktemp("other") / "model.pth"
    torch.save(small_model(seed=7).state_dict(), path)
    return path


@pytest.fixture
def artifact_copy(exported_artifact: Path, tmp_path: Path) -> Path:
    """A private copy of the exported artifact that a test may change."""
    return Path(shutil.copytree(exported_artifact, tmp_path / "model"))
