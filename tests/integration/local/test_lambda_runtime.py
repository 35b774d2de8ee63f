"""The local Lambda runtime behaves as Lambda's async invocation does (no model, no moto).

A stand-in handler (``fake_function/app.py`` beside this file) raises, sleeps, exits or succeeds
on demand.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from local.lambda_runtime import AsyncInvoker, FunctionConfig, lambda_environment

FAKE_FUNCTION = Path(__file__).parent / "fake_function"


def _config(**overrides) -> FunctionConfig:
    values = dict(
        function_name="fake-fn",
        function_arn="arn:aws:lambda:us-east-1:123456789012:function:fake-fn",
        handler="app.lambda_handler",
        code_dir=FAKE_FUNCTION,
        environment={"GREETING": "hello"},
        timeout_s=5.0,
        memory_mb=512,
        reserved_concurrency=2,
        max_retry_attempts=2,
        on_failure_queue_url="local",
    )
    values.update(overrides)
    return FunctionConfig(**values)


@pytest.fixture
def run_events(tmp_path):
    """Invoke events asynchronously, wait for the invoker to drain, return (invoker, failures)."""

    def run(events, **overrides):
        config = _config(**overrides)
        failures: list[dict] = []
        env = lambda_environment(config, {}, "us-east-1")
        with AsyncInvoker(
            config, env, failures.append, retry_delays_s=(0.1, 0.2), log_dir=tmp_path / "logs"
        ) as invoker:
            request_ids = [invoker.invoke_async(event) for event in events]
            assert invoker.wait_idle(60), "the invoker never drained"
        return invoker, failures, request_ids

    return run


def test_handler_sees_lambdas_context_and_the_stacks_environment(run_events):
    invoker, failures, _ = run_events([{}])
    (result,) = invoker.results
    assert result.ok and not failures
    payload = result.payload
    assert payload["function_name"] == "fake-fn"
    assert payload["arn"].endswith(":function:fake-fn")
    assert payload["memory"] == "512"
    assert payload["log_group"] == "/aws/lambda/fake-fn"
    assert payload["env"] == "hello"
    assert 0 < payload["remaining_ms"] <= 5000


def test_a_failing_invocation_is_retried_then_sent_to_the_failure_destination(run_events):
    invoker, failures, (request_id,) = run_events([{"mode": "raise"}])
    assert [r.attempt for r in invoker.results] == [1, 2, 3]  # MaximumRetryAttempts = 2
    (record,) = failures
    assert record["requestContext"]["requestId"] == request_id
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == 3
    assert record["requestContext"]["functionArn"].endswith(":function:fake-fn:$LATEST")
    assert record["requestPayload"] == {"mode": "raise"}
    assert record["responseContext"]["functionError"] == "Unhandled"
    assert record["responsePayload"]["errorType"] == "RuntimeError"
    assert request_id in record["responsePayload"]["errorMessage"]


def test_a_transient_failure_succeeds_on_an_async_retry(run_events, tmp_path):
    event = {"mode": "flaky", "counter": str(tmp_path / "count"), "failures": 1}
    invoker, failures, _ = run_events([event])
    assert [r.ok for r in invoker.results] == [False, True]
    assert failures == []


def test_no_retries_when_the_function_says_so(run_events):
    invoker, failures, _ = run_events([{"mode": "raise"}], max_retry_attempts=0)
    assert len(invoker.results) == 1 and len(failures) == 1


def test_an_overrun_is_killed_at_the_timeout_and_counts_as_an_error(run_events):
    invoker, failures, _ = run_events(
        [{"mode": "sleep", "seconds": 30}], timeout_s=1.0, max_retry_attempts=0
    )
    (record,) = failures
    assert record["responsePayload"]["errorType"] == "Sandbox.Timedout"
    assert "Task timed out after 1.00 seconds" in record["responsePayload"]["errorMessage"]
    assert invoker.stats.timeouts == 1


def test_a_crashed_sandbox_is_an_error_and_is_replaced(run_events):
    invoker, failures, _ = run_events([{"mode": "exit"}, {}], max_retry_attempts=0)
    assert len(failures) == 1
    assert failures[0]["responsePayload"]["errorType"] == "Runtime.ExitError"
    assert any(r.ok for r in invoker.results)


def test_sandboxes_are_reused_and_concurrency_never_exceeds_the_reservation(run_events, tmp_path):
    busy = tmp_path / "busy"
    busy.mkdir()
    invoker, failures, _ = run_events([{"mode": "busy", "dir": str(busy)}] * 8)
    assert not failures
    assert max(r.payload["overlapping"] for r in invoker.results) <= 2
    assert invoker.stats.max_concurrency_seen == 2
    assert invoker.stats.cold_starts == 2  # two long-lived sandboxes, eight invocations


def test_an_event_too_old_for_another_retry_goes_to_the_destination(run_events):
    invoker, failures, _ = run_events([{"mode": "raise"}], max_event_age_s=0.05)
    assert len(invoker.results) == 1
    assert failures[0]["requestContext"]["condition"] == "EventAgeExceeded"
