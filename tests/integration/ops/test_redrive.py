"""``python -m classify_ops redrive``: the stack's dead-letter queue back into its upload queue."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

from ops_testkit import CREDENTIALS, REGION, drain


def s3_notification(key: str) -> str:
    """A body as S3 sends it to the upload queue (what ends in the dead-letter queue)."""
    record = {
        "eventName": "ObjectCreated:Put",
        "eventTime": "2024-05-01T12:00:00.000Z",
        "s3": {"bucket": {"name": "b"}, "object": {"key": key, "size": 10, "sequencer": "0A"}},
    }
    return json.dumps({"Records": [record]})


def fill_dead_letter_queue(stack, count: int) -> list[str]:
    sqs = stack.client("sqs")
    bodies = [s3_notification(f"uploads/dog+{i}.jpg") for i in range(count)]
    for body in bodies:
        sqs.send_message(
            QueueUrl=stack.dead_letter_queue,
            MessageBody=body,
            MessageAttributes={"note": {"DataType": "String", "StringValue": "kept"}},
        )
    return bodies


def tasks(stack) -> list[dict]:
    dlq_arn = stack.outputs["DeadLetterQueueArn"]
    return stack.client("sqs").list_message_move_tasks(SourceArn=dlq_arn, MaxResults=10)["Results"]


def test_redrive_moves_every_dead_letter_back_to_the_upload_queue_intact(clean, ops):
    bodies = fill_dead_letter_queue(clean, 12)

    status, out, err = ops("redrive", "--poll-interval", "0.05")

    assert (status, err) == (0, "")
    assert "redrive started: about 12 messages" in out
    assert out.strip().splitlines()[-1].startswith("redrive completed: 12/12 moved to ")
    moved = drain(clean.client("sqs"), clean.upload_queue)
    assert sorted(m["Body"] for m in moved) == sorted(bodies)
    assert {m["MessageAttributes"]["note"]["StringValue"] for m in moved} == {"kept"}
    assert not drain(clean.client("sqs"), clean.dead_letter_queue)


def test_an_empty_dead_letter_queue_has_nothing_to_redrive(clean, ops):
    before = len(tasks(clean))

    status, out, _ = ops("redrive")

    assert status == 0
    assert out.startswith("nothing to redrive: the dead-letter queue ")
    assert len(tasks(clean)) == before  # no task started


def test_a_running_redrive_is_reported_and_followed_not_started_twice(clean, ops):
    # At two a second, ten messages keep the first task running for about five seconds.
    fill_dead_letter_queue(clean, 10)
    first = ops("redrive", "--no-wait", "--max-per-second", "2")
    running_before = [t for t in tasks(clean) if t["Status"] == "RUNNING"]

    second = ops("redrive", "--poll-interval", "0.1")

    assert first[0] == 0 and "not waiting" in first[1]
    assert len(running_before) == 1
    assert second[0] == 0
    assert "already running" in second[1]
    assert "redrive completed: 10/10 moved" in second[1]
    started = [
        t for t in tasks(clean) if t["StartedTimestamp"] == running_before[0]["StartedTimestamp"]
    ]
    assert len(started) == 1 and started[0]["Status"] == "COMPLETED"
    assert len(drain(clean.client("sqs"), clean.upload_queue)) == 10


def test_ctrl_c_while_following_stops_watching_in_one_line_and_exits_130(clean):
    fill_dead_letter_queue(clean, 3)
    env = {**CREDENTIALS, "AWS_DEFAULT_REGION": REGION}
    argv = ["redrive", "--stack", clean.name, "--endpoint-url", clean.moto_url]
    process = subprocess.Popen(
        [sys.executable, "-u", "-m", "classify_ops", *argv, "--max-per-second", "1"],
        env={**env, "PATH": ""},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    first_line = process.stdout.readline()
    time.sleep(0.3)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=30)

    assert first_line.startswith("redrive started")
    assert process.returncode == 130
    assert len(err.strip().splitlines()) == 1
    assert err.startswith(
        "python -m classify_ops: interrupted: stopped watching; the redrive keeps"
    )
    # SQS finishes the task on its own.
    deadline = time.monotonic() + 15
    while tasks(clean)[0]["Status"] == "RUNNING" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert tasks(clean)[0]["Status"] == "COMPLETED"
