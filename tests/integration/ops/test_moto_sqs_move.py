"""``local.aws.moto_sqs_move``: SQS's message move task in the moto server, as boto3 (JSON protocol)
and a query-protocol client (the AWS CLI v1, older SDKs) call it."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import boto3
import pytest
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from ops_testkit import REGION, drain

from local.aws import moto_sqs_move


@pytest.fixture
def sqs(move_tasks: str) -> Any:
    return boto3.client(
        "sqs",
        endpoint_url=move_tasks,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def arn_of(sqs: Any, url: str) -> str:
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    return attributes["Attributes"]["QueueArn"]


@pytest.fixture
def queues(sqs: Any) -> dict[str, str]:
    """A source queue whose dead-letter queue takes a message after one receive."""
    name = f"move-{uuid.uuid4().hex[:8]}"
    dlq = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    redrive = json.dumps({"deadLetterTargetArn": arn_of(sqs, dlq), "maxReceiveCount": 1})
    source = sqs.create_queue(QueueName=name, Attributes={"RedrivePolicy": redrive})["QueueUrl"]
    return {
        "source": source,
        "dlq": dlq,
        "source_arn": arn_of(sqs, source),
        "dlq_arn": arn_of(sqs, dlq),
    }


def dead_letter(sqs: Any, queues: dict[str, str], count: int) -> list[str]:
    """``count`` messages that failed their one receive and now sit in the dead-letter queue."""
    bodies = [f'{{"n": {i}}}' for i in range(count)]
    for body in bodies:
        sqs.send_message(
            QueueUrl=queues["source"],
            MessageBody=body,
            MessageAttributes={"origin": {"DataType": "String", "StringValue": body}},
        )
    sqs.receive_message(QueueUrl=queues["source"], MaxNumberOfMessages=10, VisibilityTimeout=0)
    assert not sqs.receive_message(QueueUrl=queues["source"], MaxNumberOfMessages=10).get(
        "Messages"
    )
    return bodies


def wait_until_done(sqs: Any, dlq_arn: str, timeout: float = 10) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        task = sqs.list_message_move_tasks(SourceArn=dlq_arn)["Results"][0]
        if task["Status"] != "RUNNING":
            return task
        time.sleep(0.05)
    raise AssertionError("the move task did not end")


def test_installs_are_counted_and_the_last_uninstall_takes_the_actions_away(move_tasks):
    response = moto_sqs_move.SQSResponse
    method = response.start_message_move_task
    moto_sqs_move.install()
    assert response.start_message_move_task is method
    moto_sqs_move.uninstall()
    assert response.start_message_move_task is method  # this module's own install still holds
    moto_sqs_move.uninstall()
    assert not hasattr(response, "start_message_move_task")  # moto's SQS as it ships
    moto_sqs_move.install()  # the module's, again, for the tests below
    assert response.start_message_move_task is method


def test_a_move_task_returns_dead_letters_to_their_queue_as_new_messages(sqs, queues):
    bodies = dead_letter(sqs, queues, 4)
    peek = sqs.receive_message(QueueUrl=queues["dlq"], MaxNumberOfMessages=10, VisibilityTimeout=0)
    dead = peek["Messages"]
    assert len(dead) == 4
    old_ids = {m["MessageId"] for m in dead}

    handle = sqs.start_message_move_task(SourceArn=queues["dlq_arn"])["TaskHandle"]
    task = wait_until_done(sqs, queues["dlq_arn"])

    assert handle
    assert task["Status"] == "COMPLETED"
    assert (
        task["ApproximateNumberOfMessagesToMove"] == task["ApproximateNumberOfMessagesMoved"] == 4
    )
    assert task["DestinationArn"] == queues["source_arn"]  # no DestinationArn: the origin queue
    assert "TaskHandle" not in task  # SQS lists a handle for running tasks only
    moved = drain(sqs, queues["source"])
    assert sorted(m["Body"] for m in moved) == sorted(bodies)
    assert all(m["MessageAttributes"]["origin"]["StringValue"] == m["Body"] for m in moved)
    # New messages, as SQS documents for a redrive: new ids, and a receive count starting again
    # (received once, by drain) instead of going straight back to the dead-letter queue.
    assert not old_ids & {m["MessageId"] for m in moved}
    assert {m["Attributes"]["ApproximateReceiveCount"] for m in moved} == {"1"}
    assert not drain(sqs, queues["dlq"])


def test_only_one_task_runs_per_source_queue_and_a_running_one_can_be_cancelled(sqs, queues):
    # At one message a second, ten keep the task running for about ten seconds.
    dead_letter(sqs, queues, 10)
    handle = sqs.start_message_move_task(
        SourceArn=queues["dlq_arn"],
        DestinationArn=queues["source_arn"],
        MaxNumberOfMessagesPerSecond=1,
    )["TaskHandle"]

    with pytest.raises(ClientError) as refused:
        sqs.start_message_move_task(SourceArn=queues["dlq_arn"])
    running = sqs.list_message_move_tasks(SourceArn=queues["dlq_arn"], MaxResults=10)["Results"]
    moved_before = sqs.cancel_message_move_task(TaskHandle=handle)[
        "ApproximateNumberOfMessagesMoved"
    ]

    assert refused.value.response["Error"]["QueryErrorCode"] == "UnsupportedOperation"
    assert "Only one active task" in refused.value.response["Error"]["Message"]
    assert [t["Status"] for t in running] == ["RUNNING"]
    assert running[0]["TaskHandle"] == handle
    assert running[0]["MaxNumberOfMessagesPerSecond"] == 1
    # Once the task has ended (its state, waited for), nothing moves after the cancel.
    task = wait_until_done(sqs, queues["dlq_arn"])
    assert task["Status"] == "CANCELLED"
    assert task["ApproximateNumberOfMessagesMoved"] == moved_before
    assert len(drain(sqs, queues["source"])) == moved_before
    # Once it ended, a new task may start, and moves the rest: none lost.
    sqs.start_message_move_task(SourceArn=queues["dlq_arn"])
    assert wait_until_done(sqs, queues["dlq_arn"])["Status"] == "COMPLETED"
    assert len(drain(sqs, queues["source"])) == 10 - moved_before
    assert not drain(sqs, queues["dlq"])


def test_the_source_must_be_a_dead_letter_queue_and_must_exist(sqs, queues):
    with pytest.raises(ClientError) as not_dlq:
        sqs.start_message_move_task(SourceArn=queues["source_arn"])
    with pytest.raises(ClientError) as missing:
        sqs.start_message_move_task(SourceArn=queues["dlq_arn"] + "-gone")
    with pytest.raises(ClientError) as too_fast:
        sqs.start_message_move_task(SourceArn=queues["dlq_arn"], MaxNumberOfMessagesPerSecond=501)
    with pytest.raises(ClientError) as unknown:
        sqs.cancel_message_move_task(TaskHandle="not-a-handle")

    assert "Dead Letter Queue" in not_dlq.value.response["Error"]["Message"]
    assert missing.value.response["Error"]["Code"] == "ResourceNotFoundException"
    assert too_fast.value.response["Error"]["Code"] == "InvalidParameterValue"
    assert unknown.value.response["Error"]["Code"] == "ResourceNotFoundException"


def query(url: str, **params: str) -> requests.Response:
    """A signed query-protocol request (form-encoded ``Action=...``, XML answer)."""
    request = AWSRequest(
        method="POST",
        url=f"{url}/",
        data={**params, "Version": "2012-11-05"},
        headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
    )
    SigV4Auth(Credentials("testing", "testing"), "sqs", REGION).add_auth(request)
    prepared = request.prepare()
    return requests.post(
        prepared.url, data=prepared.body, headers=dict(prepared.headers), timeout=10
    )


def test_the_query_protocol_gets_the_same_actions_in_xml(sqs, queues, move_tasks):
    dead_letter(sqs, queues, 2)

    started = query(
        move_tasks,
        Action="StartMessageMoveTask",
        SourceArn=queues["dlq_arn"],
        MaxNumberOfMessagesPerSecond="1",
    )
    listed = query(
        move_tasks, Action="ListMessageMoveTasks", SourceArn=queues["dlq_arn"], MaxResults="2"
    )
    again = query(move_tasks, Action="StartMessageMoveTask", SourceArn=queues["dlq_arn"])

    assert started.status_code == 200
    assert "<StartMessageMoveTaskResult><TaskHandle>" in started.text
    assert listed.status_code == 200
    assert (
        "<ListMessageMoveTasksResult>" in listed.text and "<Status>RUNNING</Status>" in listed.text
    )
    assert again.status_code == 400 and "UnsupportedOperation" in again.text
    assert wait_until_done(sqs, queues["dlq_arn"])["Status"] == "COMPLETED"
