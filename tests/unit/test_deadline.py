"""The invocation's remaining time bounds every endpoint call and retry, on a clock the test runs:
nothing sleeps, a "60 s" call moves the clock 60 s."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from botocore.exceptions import ClientError

from classify_upload import clients
from classify_upload.endpoint import (
    DEADLINE_EXCEEDED,
    WRITE_RESERVE_S,
    Deadline,
    RetryPolicy,
    invoke_endpoint,
)
from classify_upload.errors import TransientFailure

GOOD = json.dumps({"predictions": [{"breed": "Beagle", "probability": 0.9}]}).encode()
BUSY = ClientError(
    {"Error": {"Code": "ServiceUnavailable", "Message": "busy"}, "ResponseMetadata": {}},
    "InvokeEndpoint",
)
# Lambda's timeout in template.yaml; every scenario below starts with at most this much left.
FUNCTION_TIMEOUT_S = 300


class Clock:
    """Milliseconds left in the invocation; sleeping and calling move it."""

    def __init__(self, left_s: float) -> None:
        self.left_ms = left_s * 1000.0

    def remaining_ms(self) -> float:
        return self.left_ms

    def spend(self, seconds: float) -> None:
        self.left_ms -= seconds * 1000.0


class SlowEndpoint:
    """Each call takes ``call_s`` of the clock, then answers the next scripted outcome."""

    def __init__(self, clock: Clock, call_s: float, outcomes: list[Any]) -> None:
        self.clock, self.call_s, self.outcomes = clock, call_s, outcomes
        self.calls: list[float] = []  # seconds left when each call started

    def invoke_endpoint(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(self.clock.left_ms / 1000.0)
        self.clock.spend(self.call_s)
        outcome = self.outcomes.pop(0) if len(self.outcomes) > 1 else self.outcomes[0]
        if isinstance(outcome, Exception):
            raise outcome
        return {"Body": io.BytesIO(outcome)}


def run(clock: Clock, endpoint: SlowEndpoint, policy: RetryPolicy | None = None) -> Any:
    return invoke_endpoint(
        endpoint,
        "ep",
        b"x",
        "image/jpeg",
        1,
        policy or RetryPolicy(),
        sleep=clock.spend,
        deadline=Deadline(clock.remaining_ms),
    )


def test_the_client_timeout_and_the_deadline_are_one_constant():
    config = clients.ENDPOINT_CONFIG
    assert config.read_timeout == clients.ENDPOINT_READ_TIMEOUT_S
    assert config.connect_timeout == clients.ENDPOINT_CONNECT_TIMEOUT_S
    assert Deadline(lambda: 0).call_max_s == clients.ENDPOINT_CALL_MAX_S
    assert config.read_timeout + config.connect_timeout == clients.ENDPOINT_CALL_MAX_S
    # SageMaker's 60 s for the container, plus a margin for the network.
    assert clients.ENDPOINT_READ_TIMEOUT_S > clients.MODEL_ANSWER_LIMIT_S == 60


@pytest.mark.parametrize(
    ("left_s", "allowed"),
    [
        (clients.ENDPOINT_CALL_MAX_S + WRITE_RESERVE_S, True),
        (clients.ENDPOINT_CALL_MAX_S + WRITE_RESERVE_S - 0.001, False),
        (FUNCTION_TIMEOUT_S, True),
        (0, False),
    ],
)
def test_a_call_is_allowed_only_if_it_and_the_write_fit(left_s, allowed):
    assert Deadline(lambda: left_s * 1000).allows_call() is allowed


def test_a_backoff_sleep_counts_against_the_deadline():
    deadline = Deadline(lambda: (clients.ENDPOINT_CALL_MAX_S + WRITE_RESERVE_S + 3) * 1000)
    assert deadline.allows_call(wait_s=3)
    assert not deadline.allows_call(wait_s=3.5)


@pytest.mark.parametrize("started_with_s", [239, 200, 150, 96, FUNCTION_TIMEOUT_S])
@pytest.mark.parametrize("call_s", [clients.ENDPOINT_CALL_MAX_S, 60, 30])
def test_a_slow_failing_endpoint_gives_up_before_the_function_times_out(started_with_s, call_s):
    clock = Clock(started_with_s)
    endpoint = SlowEndpoint(clock, call_s, [BUSY])
    policy = RetryPolicy(max_attempts=4, base_delay_s=0.25, max_delay_s=4.0)

    with pytest.raises(TransientFailure) as failure:
        run(clock, endpoint, policy)

    # The message fails (and comes back) with time left for the handler to answer the batch.
    assert clock.remaining_ms() / 1000 >= WRITE_RESERVE_S
    assert 1 <= len(endpoint.calls) <= policy.max_attempts
    assert all(left >= clients.ENDPOINT_CALL_MAX_S + WRITE_RESERVE_S for left in endpoint.calls)
    assert failure.value.error_type == "ServiceUnavailable"  # the endpoint's error, not ours


def test_the_old_reserve_let_four_slow_calls_outrun_the_timeout():
    """The issue's case: 239 s left, 60 s calls. Before: 4 calls (240 s) and a timeout."""
    clock = Clock(239)
    endpoint = SlowEndpoint(clock, 60, [BUSY])

    with pytest.raises(TransientFailure, match="no retry after attempt 3"):
        run(clock, endpoint)

    # 239 → 179 → 119 (each still fits 75 s + 20 s) → 59: a fourth would not.
    assert endpoint.calls == pytest.approx([239, 179, 119], abs=1)  # plus backoff sleeps
    assert clock.remaining_ms() / 1000 > WRITE_RESERVE_S


def test_retries_within_the_deadline_still_succeed():
    clock = Clock(FUNCTION_TIMEOUT_S)
    endpoint = SlowEndpoint(clock, 1, [BUSY, BUSY, GOOD])

    prediction = run(clock, endpoint)

    assert prediction.breed == "Beagle" and prediction.attempts == 3


def test_no_call_is_started_without_time_for_it():
    clock = Clock(clients.ENDPOINT_CALL_MAX_S + WRITE_RESERVE_S - 1)
    endpoint = SlowEndpoint(clock, 1, [GOOD])

    with pytest.raises(TransientFailure) as failure:
        run(clock, endpoint)

    assert failure.value.error_type == DEADLINE_EXCEEDED
    assert endpoint.calls == []


def test_without_a_deadline_only_the_policy_bounds_the_retries():
    endpoint = SlowEndpoint(Clock(0), 0, [BUSY])
    with pytest.raises(TransientFailure):
        invoke_endpoint(endpoint, "ep", b"x", "image/jpeg", 1, RetryPolicy(4), sleep=lambda s: None)
    assert len(endpoint.calls) == 4


def test_an_object_of_a_message_is_not_started_once_the_deadline_is_near():
    """Two records, 100 s left, a 60 s endpoint: the first gets its item, the second is kept for
    the message's redelivery (not read, not sent), and the time left still covers the write."""
    from classify_upload.classify import classify_event
    from classify_upload.clients import Clients
    from classify_upload.settings import Settings

    class FakeS3:
        def __init__(self) -> None:
            self.reads: list[str] = []

        def get_object(self, Bucket: str, Key: str, **kwargs: Any) -> dict[str, Any]:
            self.reads.append(Key)
            return {"Body": io.BytesIO(b"bytes"), "ContentLength": 5}

    class FakeTable:
        def __init__(self) -> None:
            self.items: list[dict[str, Any]] = []

        def put_item(self, **kwargs: Any) -> None:
            self.items.append(kwargs["Item"])

    def record(key: str) -> dict[str, Any]:
        obj = {"key": key, "size": 5, "eTag": "e", "sequencer": "0A"}
        return {"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "b"}, "object": obj}}

    clock = Clock(100)
    endpoint = SlowEndpoint(clock, 60, [GOOD])
    s3, table = FakeS3(), FakeTable()

    summary = classify_event(
        {"Records": [record("uploads/a.jpg"), record("uploads/b.jpg")]},
        Settings("t", "e"),
        Clients(s3, endpoint, table),
        "request-id",
        RetryPolicy(),
        sleep=clock.spend,
        deadline=Deadline(clock.remaining_ms),
    )

    assert [i["key"] for i in table.items] == ["uploads/a.jpg"]
    assert [(key, f.error_type) for key, f in summary.retry_later] == [
        ("uploads/b.jpg", DEADLINE_EXCEEDED)
    ]
    assert s3.reads == ["uploads/a.jpg"]
    assert clock.remaining_ms() / 1000 >= WRITE_RESERVE_S
