"""Fixtures for the end-to-end tests: the model as the endpoint gets it, and the stack's table.

The stack itself (``local.stack.LocalStack``) is started per test, with the settings that test
needs (concurrency cap, retry delays, fault injection); the model is trained once per session by
``tests/conftest.py``'s ``trained_artifact``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from local import tiny

# Lambda waits minutes between async retries; these tests wait fractions of a second.
FAST_RETRY_DELAYS_S = (0.2, 0.4)


@pytest.fixture(scope="session")
def served_model(trained_artifact: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The trained artifact packaged into ``model.tar.gz`` and extracted, as SageMaker serves it
    (the demo's own ``package`` and ``extract``)."""
    work = tmp_path_factory.mktemp("served")
    return tiny.extract(tiny.package(trained_artifact, work / "model.tar.gz"), work / "model")
