"""The offline stack's parts on their own: a stand-in function (``fake_function/app.py``) run by
the local Lambda runtime and event source, and the local SageMaker runtime."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from local.function.runtime import FunctionConfig

FAKE_FUNCTION = Path(__file__).parent / "fake_function"


@pytest.fixture
def fake_config() -> Callable[..., FunctionConfig]:
    """The fake function's configuration, with any field overridden."""

    def make(**overrides) -> FunctionConfig:
        values = dict(
            function_name="fake-fn",
            function_arn="arn:aws:lambda:us-east-1:123456789012:function:fake-fn",
            handler="app.lambda_handler",
            code_dir=FAKE_FUNCTION,
            environment={"GREETING": "hello"},
            timeout_s=5.0,
            memory_mb=512,
        )
        values.update(overrides)
        return FunctionConfig(**values)

    return make
