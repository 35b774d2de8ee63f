"""One local execution environment behaves as Lambda's does: the handler sees Lambda's context
and the stack's environment, an overrun is killed at the timeout, a dead runtime is an error and
is replaced, and every invocation reports the sandbox's peak memory.

A stand-in handler (``fake_function/app.py`` beside this file) raises, sleeps, exits, allocates or
succeeds on demand.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from local.function.runtime import Sandbox, lambda_environment


@pytest.fixture
def sandbox(request, tmp_path, fake_config) -> Iterator[Sandbox]:
    """A started sandbox of the fake function (``@pytest.mark.parametrize`` may pass overrides
    through ``request.param``); its log goes to ``tmp_path/sandbox.log``."""
    config = fake_config(**getattr(request, "param", {}))
    box = Sandbox(config, lambda_environment(config, {}, "us-east-1"), tmp_path / "sandbox.log")
    box.start()
    yield box
    box.stop()


def test_the_handler_sees_lambdas_context_and_the_stacks_environment(sandbox):
    result = sandbox.invoke({}, "req-1")
    assert result["ok"], result
    payload = result["payload"]
    assert payload["function_name"] == "fake-fn"
    assert payload["arn"].endswith(":function:fake-fn")
    assert payload["memory"] == "512"
    assert payload["log_group"] == "/aws/lambda/fake-fn"
    assert payload["env"] == "hello"
    assert 0 < payload["remaining_ms"] <= 5000


def test_the_sandbox_is_reused_between_invocations(sandbox):
    first = sandbox.invoke({}, "req-1")["payload"]["pid"]
    assert sandbox.invoke({}, "req-2")["payload"]["pid"] == first


def test_an_exception_is_reported_as_lambdas_runtime_reports_it(sandbox):
    result = sandbox.invoke({"mode": "raise"}, "req-9")
    assert not result["ok"]
    assert result["error"]["errorType"] == "RuntimeError"
    assert "req-9" in result["error"]["errorMessage"]
    assert result["error"]["requestId"] == "req-9"
    assert sandbox.running  # an exception does not end the sandbox


@pytest.mark.parametrize("sandbox", [{"timeout_s": 1.0}], indirect=True)
def test_an_overrun_is_killed_at_the_timeout(sandbox):
    result = sandbox.invoke({"mode": "sleep", "seconds": 30}, "req-1")
    assert result["timed_out"]
    assert result["error"]["errorType"] == "Sandbox.Timedout"
    assert "Task timed out after 1.00 seconds" in result["error"]["errorMessage"]
    assert not sandbox.running


def test_a_stopped_sandbox_ends_its_worker_with_exit_code_0(sandbox):
    assert sandbox.invoke({}, "req-1")["ok"]
    sandbox.stop()
    assert sandbox.last_exit_code == 0 and not sandbox.running


def test_a_dead_runtime_is_an_error_and_a_new_sandbox_takes_over(sandbox):
    result = sandbox.invoke({"mode": "exit"}, "req-1")
    assert result["error"]["errorType"] == "Runtime.ExitError"
    assert not sandbox.running
    sandbox.start()
    assert sandbox.invoke({}, "req-2")["ok"]


def test_each_invocation_reports_the_sandboxs_peak_memory_as_lambdas_report_line(sandbox, tmp_path):
    small = sandbox.invoke({}, "req-1")["max_memory_used_mb"]
    big = sandbox.invoke({"mode": "allocate", "mb": 200}, "req-2")
    after = sandbox.invoke({}, "req-3")["max_memory_used_mb"]
    assert 5 < small < 200
    assert big["max_memory_used_mb"] >= small + 190  # the 200 MB block was touched
    assert after == big["max_memory_used_mb"]  # the peak of the sandbox so far, as on Lambda
    log = (tmp_path / "sandbox.log").read_text()
    report = next(line for line in log.splitlines() if line.startswith("REPORT RequestId: req-2"))
    assert f"Max Memory Used: {big['max_memory_used_mb']} MB" in report
    assert "Memory Size: 512 MB" in report and "Billed Duration:" in report
