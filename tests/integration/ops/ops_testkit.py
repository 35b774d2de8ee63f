"""Helpers of the operator command tests (fixtures are in conftest.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

import boto3

from classify_upload.events import pad_sequencer

REGION = "us-east-1"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


@dataclass(frozen=True)
class DeployedStack:
    name: str
    moto_url: str
    outputs: dict[str, str]
    session: boto3.session.Session

    def client(self, service: str) -> Any:
        return self.session.client(service, endpoint_url=self.moto_url)

    @property
    def table(self) -> Any:
        dynamodb = self.session.resource("dynamodb", endpoint_url=self.moto_url)
        return dynamodb.Table(self.outputs["PredictionsTableName"])

    @property
    def bucket(self) -> str:
        return self.outputs["UploadBucketName"]

    @property
    def upload_queue(self) -> str:
        return self.outputs["UploadQueueUrl"]

    @property
    def dead_letter_queue(self) -> str:
        return self.outputs["DeadLetterQueueUrl"]


def drain(sqs: Any, queue_url: str) -> list[dict[str, Any]]:
    """Receive and delete every visible message; returns them (bodies, attributes)."""
    received: list[dict[str, Any]] = []
    while True:
        messages = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=10,
            MessageAttributeNames=["All"],
            AttributeNames=["All"],
            WaitTimeSeconds=0,
        ).get("Messages", [])
        if not messages:
            return received
        for message in messages:
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
        received += messages


def bodies(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [json.loads(m["Body"]) for m in messages]


def run_subprocess(
    argv: list[str], env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """``python -m classify_ops ARGV`` as a separate process, with exactly ``env`` (plus PATH)."""
    return subprocess.run(
        [sys.executable, "-m", "classify_ops", *argv],
        env={"PATH": os.environ.get("PATH", ""), **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def upload_item(
    bucket: str,
    key: str,
    *,
    n: int,
    breed: str | None = "Beagle",
    event_time: str = "2024-05-01T12:00:00.000Z",
    **extra: Any,
) -> dict[str, Any]:
    """A table item as the function writes it (the fields a reprocess reads, and a few more)."""
    item: dict[str, Any] = {
        "bucket": bucket,
        "key": key,
        "status": "PREDICTED" if breed else "FAILED",
        "etag": f"etag-{n}",
        "size": 1000 + n,
        "sequencer": pad_sequencer(f"0055AED6DCD9028{n:03X}"),
        "event_time": event_time,
        "version_id": f"version-{n}",
        "predicted_at": "2024-06-01T00:00:00.000Z",
    }
    if breed:
        item.update(breed=breed, probability=1)
    else:
        item.update(error_type="NotAnImage", error_message="not an image")
    item.update(extra)
    return item
