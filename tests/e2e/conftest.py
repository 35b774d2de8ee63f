"""Fixtures for the end-to-end tests: the model as the endpoint gets it, and the operator
commands as a user runs them against a running stack.

The stack itself (``local.stack.LocalStack``) is started per module, with the settings that
module needs (concurrency cap, a short visibility timeout, fault injection); the model is trained
once per session by ``tests/conftest.py``'s ``trained_artifact``.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from local.demo import default_model
from local.stack import LocalStack, offline_environ

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def served_model(trained_artifact: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The trained artifact packaged into ``model.tar.gz`` and extracted, as SageMaker serves it
    (the demo's own ``package`` and ``extract``)."""
    work = tmp_path_factory.mktemp("served")
    return default_model.extract(
        default_model.package(trained_artifact, work / "model.tar.gz"), work / "model"
    )


@pytest.fixture(scope="session")
def classify_ops() -> Callable[..., subprocess.CompletedProcess]:
    """``python -m classify_ops COMMAND --stack NAME --endpoint-url MOTO [ARGS]`` in a subprocess,
    with only the offline stack's dummy credentials (what ``python -m local up`` prints)."""

    def run(stack: LocalStack, command: str, *args: str, timeout: float = 300):
        where = ["--stack", stack.stack_name, "--endpoint-url", stack.moto_url]
        return subprocess.run(
            [sys.executable, "-m", "classify_ops", command, *where, *args],
            cwd=REPO_ROOT,
            env=offline_environ(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return run
