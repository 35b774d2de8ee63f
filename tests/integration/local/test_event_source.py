"""The local SQS event source mapping behaves as Lambda's does, against the session's moto server:
the function gets Lambda's SQS event; what it reports failed stays in the queue and only that
reaches the dead-letter queue after maxReceiveCount receives; a failed invocation deletes nothing;
a response Lambda cannot read fails the batch; concurrency stays within MaximumConcurrency.

The function is ``fake_function/app.py``: each message body says what it does with that message,
and every record it sees is logged to a file the tests read (``Deliveries``).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest

from local.function.event_source import (
    FUNCTION_ERROR,
    MALFORMED,
    PARTIAL,
    SUCCESS,
    MappingConfig,
    SqsEventSource,
    settle_batch,
)
from local.function.runtime import lambda_environment

REGION = "us-east-1"
IDLE_TIMEOUT_S = 60


@dataclass(frozen=True)
class Queues:
    url: str
    arn: str
    dlq_url: str


class Deliveries:
    """What the fake function logged: one entry per record it was handed."""

    def __init__(self, state: Path) -> None:
        self.state = state

    def entries(self, name: str = "seen") -> list[dict]:
        path = self.state / f"{name}.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def per_tag(self) -> Counter:
        return Counter(entry["tag"] for entry in self.entries())

    def receive_counts(self, tag: str) -> list[int]:
        return [e["receive_count"] for e in self.entries() if e["tag"] == tag]


@pytest.fixture
def sqs(moto_url: str):
    return boto3.client(
        "sqs",
        endpoint_url=moto_url,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@pytest.fixture
def make_queues(sqs) -> Callable[..., Queues]:
    """A fresh queue with a dead-letter queue (maxReceiveCount as asked), visibility 1 s."""

    def make(max_receive_count: int = 3) -> Queues:
        name = f"esm-{uuid.uuid4().hex[:10]}"
        dlq_url = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        policy = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receive_count}
        url = sqs.create_queue(
            QueueName=name,
            Attributes={"VisibilityTimeout": "1", "RedrivePolicy": json.dumps(policy)},
        )["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        return Queues(url, arn, dlq_url)

    return make


@pytest.fixture
def event_source(moto_url, tmp_path, fake_config) -> Iterator[Callable[..., SqsEventSource]]:
    """Start an event source on a queue with the fake function; every one is closed at the end."""
    started: list[SqsEventSource] = []

    def start(queues: Queues, **mapping) -> SqsEventSource:
        settings = dict(batch_size=10, report_batch_item_failures=True, maximum_concurrency=2)
        settings.update(mapping)
        config = MappingConfig(queues.url, queues.arn, REGION, **settings)
        function = fake_config(environment={"FAKE_STATE_DIR": str(tmp_path)}, timeout_s=10.0)
        source = SqsEventSource(
            config,
            function,
            lambda_environment(function, {}, REGION),
            lambda: boto3.client(
                "sqs",
                endpoint_url=moto_url,
                region_name=REGION,
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
            ),
            log_dir=tmp_path / "logs",
        )
        source.start()
        started.append(source)
        return source

    yield start
    for source in started:
        source.close()


@pytest.fixture
def deliveries(tmp_path) -> Deliveries:
    return Deliveries(tmp_path)


def send(sqs, queues: Queues, *bodies: dict, **attributes) -> list[str]:
    """Send each body (JSON); returns the message ids."""
    return [
        sqs.send_message(QueueUrl=queues.url, MessageBody=json.dumps(body), **attributes)[
            "MessageId"
        ]
        for body in bodies
    ]


def dead_letters(sqs, queues: Queues) -> list[dict]:
    messages = sqs.receive_message(
        QueueUrl=queues.dlq_url, MaxNumberOfMessages=10, AttributeNames=["All"]
    ).get("Messages", [])
    return messages


# -- the decision, on its own ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("result", "report", "verdict", "deleted"),
    [
        ({"ok": True, "payload": {"batchItemFailures": []}}, True, SUCCESS, {"a", "b"}),
        ({"ok": True, "payload": {"batchItemFailures": None}}, True, SUCCESS, {"a", "b"}),
        ({"ok": True, "payload": {}}, True, SUCCESS, {"a", "b"}),
        ({"ok": True, "payload": None}, True, SUCCESS, {"a", "b"}),
        (
            {"ok": True, "payload": {"batchItemFailures": [{"itemIdentifier": "b"}]}},
            True,
            PARTIAL,
            {"a"},
        ),
        # Without ReportBatchItemFailures, Lambda ignores the response.
        (
            {"ok": True, "payload": {"batchItemFailures": [{"itemIdentifier": "b"}]}},
            False,
            SUCCESS,
            {"a", "b"},
        ),
        ({"ok": False, "error": {"errorType": "RuntimeError"}}, True, FUNCTION_ERROR, set()),
        ({"ok": False, "timed_out": True}, False, FUNCTION_ERROR, set()),
        # Responses Lambda rejects: the whole batch fails.
        (
            {"ok": True, "payload": {"batchItemFailures": [{"itemIdentifier": "zz"}]}},
            True,
            MALFORMED,
            set(),
        ),
        (
            {"ok": True, "payload": {"batchItemFailures": [{"itemIdentifier": ""}]}},
            True,
            MALFORMED,
            set(),
        ),
        (
            {"ok": True, "payload": {"batchItemFailures": [{"itemIdentifier": None}]}},
            True,
            MALFORMED,
            set(),
        ),
        ({"ok": True, "payload": {"batchItemFailures": [{"id": "a"}]}}, True, MALFORMED, set()),
        ({"ok": True, "payload": {"batchItemFailures": "a"}}, True, MALFORMED, set()),
    ],
)
def test_what_lambda_deletes_after_an_invocation(result, report, verdict, deleted):
    outcome = settle_batch(["a", "b"], result, report)
    assert (outcome.verdict, set(outcome.delete)) == (verdict, deleted)


# -- through moto ---------------------------------------------------------------------------------


def test_the_function_gets_lambdas_sqs_event(sqs, make_queues, event_source, tmp_path):
    queues = make_queues()
    body = json.dumps({"mode": "echo", "tag": "one"})
    message_id = sqs.send_message(
        QueueUrl=queues.url,
        MessageBody=body,
        MessageAttributes={
            "origin": {"DataType": "String", "StringValue": "test"},
            "blob": {"DataType": "Binary", "BinaryValue": b"\x00\x01"},
        },
    )["MessageId"]
    source = event_source(queues)
    assert source.wait_idle(IDLE_TIMEOUT_S)

    (dump,) = tmp_path.glob("event-*.json")
    (record,) = json.loads(dump.read_text())["Records"]
    assert set(record) == {
        "messageId",
        "receiptHandle",
        "body",
        "attributes",
        "messageAttributes",
        "md5OfBody",
        "eventSource",
        "eventSourceARN",
        "awsRegion",
    }
    assert record["messageId"] == message_id and record["body"] == body
    assert record["md5OfBody"] == hashlib.md5(body.encode()).hexdigest()
    assert (record["eventSource"], record["eventSourceARN"], record["awsRegion"]) == (
        "aws:sqs",
        queues.arn,
        REGION,
    )
    assert set(record["attributes"]) >= {
        "ApproximateReceiveCount",
        "SentTimestamp",
        "SenderId",
        "ApproximateFirstReceiveTimestamp",
    }
    assert record["attributes"]["ApproximateReceiveCount"] == "1"
    assert record["messageAttributes"] == {
        "origin": {
            "stringValue": "test",
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": "String",
        },
        "blob": {
            "binaryValue": "AAE=",
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": "Binary",
        },
    }
    assert source.stats.messages_deleted == 1 and source.stats.errors == 0


def test_a_partial_batch_failure_deletes_only_the_others(
    sqs, make_queues, event_source, deliveries
):
    queues = make_queues(max_receive_count=3)
    good = [{"tag": f"ok-{i}"} for i in range(4)]
    (bad_id,) = send(sqs, queues, {"mode": "fail", "tag": "bad"})
    send(sqs, queues, *good)
    source = event_source(queues)
    assert source.wait_idle(IDLE_TIMEOUT_S)

    # Each good message was handled once and deleted; the failing one came back each time.
    assert deliveries.per_tag() == {"bad": 3, **{b["tag"]: 1 for b in good}}
    assert deliveries.receive_counts("bad") == [1, 2, 3]
    (dead,) = dead_letters(sqs, queues)
    assert dead["MessageId"] == bad_id
    stats = source.stats
    assert stats.messages_deleted == 4 and stats.messages_reported_failed == 3
    assert stats.errors == 0


def test_a_failed_invocation_deletes_nothing_and_the_batch_comes_back(
    sqs, make_queues, event_source, deliveries
):
    queues = make_queues(max_receive_count=3)
    # The last message of the batch raises, after the function has handled the other two.
    send(sqs, queues, {"tag": "a"}, {"tag": "b"}, {"mode": "raise_first", "tag": "c"})
    source = event_source(queues)
    assert source.wait_idle(IDLE_TIMEOUT_S)

    # One batch raised: all three came back after the visibility timeout, then all succeeded.
    for tag in "abc":
        assert deliveries.receive_counts(tag) == [1, 2]
    assert dead_letters(sqs, queues) == []
    assert source.stats.errors == 1 and source.stats.messages_deleted == 3
    assert [r.verdict for r in source.results] == [FUNCTION_ERROR, SUCCESS]


def test_a_crash_sends_only_that_message_to_the_dlq_after_max_receive_count(
    sqs, make_queues, event_source, deliveries
):
    queues = make_queues(max_receive_count=2)
    (crash_id,) = send(sqs, queues, {"mode": "crash", "tag": "crash"})
    send(sqs, queues, *({"tag": f"ok-{i}"} for i in range(3)))
    # One message a batch: a runtime that dies takes only its own message down with it.
    source = event_source(queues, batch_size=1)
    assert source.wait_idle(IDLE_TIMEOUT_S)

    assert deliveries.per_tag() == {"crash": 2, "ok-0": 1, "ok-1": 1, "ok-2": 1}
    assert [m["MessageId"] for m in dead_letters(sqs, queues)] == [crash_id]
    crashes = [r for r in source.results if r.verdict == FUNCTION_ERROR]
    assert len(crashes) == 2 and {r.error["errorType"] for r in crashes} == {"Runtime.ExitError"}
    assert source.stats.messages_deleted == 3


@pytest.mark.parametrize(
    "response",
    [
        {"batchItemFailures": [{"itemIdentifier": "not-a-message-of-this-batch"}]},
        {"batchItemFailures": [{"itemIdentifier": ""}]},
        {"batchItemFailures": [{"itemIdentifier": None}]},
        {"batchItemFailures": [{"messageId": "wrong key name"}]},
    ],
    ids=["unknown-id", "empty-id", "null-id", "bad-key"],
)
def test_a_malformed_batch_item_failures_fails_the_whole_batch(
    sqs, make_queues, event_source, deliveries, response
):
    queues = make_queues(max_receive_count=3)
    send(sqs, queues, {"mode": "malformed_first", "tag": "a", "response": response}, {"tag": "b"})
    source = event_source(queues)
    assert source.wait_idle(IDLE_TIMEOUT_S)

    # Neither message was deleted after the first answer: both came back and then succeeded.
    assert deliveries.receive_counts("a") == [1, 2]
    assert deliveries.receive_counts("b") == [1, 2]
    assert source.stats.malformed_responses == 1 and source.stats.messages_deleted == 2
    assert dead_letters(sqs, queues) == []


def test_without_report_batch_item_failures_a_success_deletes_the_whole_batch(
    sqs, make_queues, event_source, deliveries
):
    queues = make_queues()
    send(sqs, queues, {"mode": "report_all", "tag": "a"}, {"mode": "report_all", "tag": "b"})
    source = event_source(queues, report_batch_item_failures=False)
    assert source.wait_idle(IDLE_TIMEOUT_S)
    assert deliveries.per_tag() == {"a": 1, "b": 1}
    assert source.stats.messages_deleted == 2 and source.stats.messages_reported_failed == 0


def test_concurrency_reaches_but_never_exceeds_maximum_concurrency(
    sqs, make_queues, event_source, deliveries
):
    queues = make_queues()
    cap = 3
    # Three invocations that each wait for the other two: they can only finish together.
    send(sqs, queues, *({"mode": "rendezvous", "parties": cap, "tag": f"r{i}"} for i in range(cap)))
    source = event_source(queues, batch_size=1, maximum_concurrency=cap)
    assert source.wait_idle(IDLE_TIMEOUT_S)
    assert [e["met"] for e in deliveries.entries("rendezvous")] == [True] * cap

    send(sqs, queues, *({"mode": "busy", "tag": f"b{i}"} for i in range(12)))
    assert source.wait_idle(IDLE_TIMEOUT_S)
    assert max(e["overlapping"] for e in deliveries.entries("overlap")) <= cap
    assert source.stats.max_concurrency_seen == cap
    # One long-lived sandbox per poller, reused: three cold starts for fifteen invocations.
    assert source.stats.cold_starts == cap and source.stats.invocations == 15
    assert len({e["pid"] for e in deliveries.entries()}) == cap
