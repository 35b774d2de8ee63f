"""An endpoint that hangs: the function's own read timeout ends each call (botocore against a real
HTTP stand-in that does not answer in time), each call is one attempt of the retry budget, and the
message comes back through the queue with no item written.

The read timeout is the one constant ``classify_upload.clients`` builds the endpoint client from
(70 s: SageMaker's 60 s for the container plus the network); here the client is built from the same
configuration with that timeout cut to a fraction of a second, so the hang costs the test seconds.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from botocore.config import Config

from local.endpoint.runtime import Fault

READ_TIMEOUT_S = 0.3
HANG_S = 1.0


def item_for(table: Any, bucket: str, key: str) -> dict[str, Any] | None:
    return table.get_item(Key={"bucket": bucket, "key": key}, ConsistentRead=True).get("Item")


@pytest.fixture
def short_read_timeout(app_module: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    from classify_upload import clients

    assert clients.ENDPOINT_CONFIG.read_timeout == clients.ENDPOINT_READ_TIMEOUT_S
    monkeypatch.setattr(
        clients,
        "ENDPOINT_CONFIG",
        clients.ENDPOINT_CONFIG.merge(Config(read_timeout=READ_TIMEOUT_S)),
    )
    app_module.get_clients.cache_clear()
    yield clients
    app_module.get_clients.cache_clear()


def test_a_hanging_endpoint_is_cut_by_the_read_timeout_retried_then_the_message_comes_back(
    short_read_timeout, app_module, runtime, upload, deliver, messages, summaries, table, stack,
    unique_prefix, jpeg,
):  # fmt: skip
    attempts = app_module.RETRY_POLICY.max_attempts
    runtime.inject_fault(Fault("ServiceUnavailable", 503, "hung", delay_s=HANG_S), times=attempts)
    key = f"{unique_prefix}hang.jpg"
    event = messages.event({"Records": [upload(key, jpeg())]})

    started = time.monotonic()
    try:
        response = deliver(event)
    except Exception as exc:  # the batch's only message failed: Powertools raises, as on Lambda
        response = {"error": type(exc).__name__}
    elapsed = time.monotonic() - started

    # The message comes back (the whole one-message batch failed); nothing was written.
    assert response == {"error": "BatchProcessingError"}
    assert item_for(table, stack.bucket_name, key) is None
    [summary] = summaries
    [(retried_key, reason)] = summary.retry_later
    assert retried_key == key and "timeout" in str(reason).lower(), reason
    # Each attempt ended at the client's read timeout, not when the endpoint finally answered.
    assert elapsed < attempts * HANG_S
    # The stand-in still finishes each hung call: wait for all of them (a state, not a sleep),
    # so none lands in the next test's log. One attempt per call of the retry budget.
    deadline = time.monotonic() + attempts * HANG_S + 10
    while len(runtime.invocations) < attempts and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [i.error_code for i in runtime.invocations] == ["ServiceUnavailable"] * attempts
