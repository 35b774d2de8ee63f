"""The S3 → function trigger, on one machine.

moto stores the bucket's Lambda notification but never runs it (no Docker). It does deliver S3
notifications to SQS in server mode, so the bucket is configured to notify a queue with the very
filter the template gives the function's trigger, and ``S3EventPump`` hands each message body (the
S3 event, unchanged) to the function's ``AsyncInvoker``, as S3 hands it to Lambda's async queue.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any


def _resolve(value: Any, parameters: Mapping[str, str]) -> Any:
    """Resolve the few intrinsics a notification filter uses (Ref to a parameter, Sub, Join)."""
    if isinstance(value, dict) and len(value) == 1:
        ((name, arg),) = value.items()
        if name == "Ref" and arg in parameters:
            return parameters[arg]
        if name == "Fn::Sub" and isinstance(arg, str):
            out = arg
            for key, val in parameters.items():
                out = out.replace("${" + key + "}", str(val))
            return out
        if name == "Fn::Join":
            sep, parts = arg
            return sep.join(str(_resolve(p, parameters)) for p in parts)
    if isinstance(value, dict):
        return {k: _resolve(v, parameters) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, parameters) for v in value]
    return value


def function_triggers(
    template: Mapping[str, Any], bucket_logical_id: str | None, parameters: Mapping[str, str]
) -> list[dict[str, Any]]:
    """The bucket's Lambda notification configurations from the deployed (translated) template.

    Returns ``[{"Events": [...], "Filter": {...}}]`` in the S3 API's shape (``Event`` and
    ``Filter.S3Key.Rules`` as CloudFormation spells them), with parameters resolved.
    """
    resources = template.get("Resources", {})
    triggers = []
    for logical_id, resource in resources.items():
        if resource.get("Type") != "AWS::S3::Bucket":
            continue
        if bucket_logical_id and logical_id != bucket_logical_id:
            continue
        config = resource.get("Properties", {}).get("NotificationConfiguration", {})
        for lambda_config in config.get("LambdaConfigurations", []):
            resolved = _resolve(lambda_config, parameters)
            rules = resolved.get("Filter", {}).get("S3Key", {}).get("Rules", [])
            trigger: dict[str, Any] = {"Events": [resolved["Event"]]}
            if rules:
                filter_rules = [{"Name": r["Name"], "Value": r["Value"]} for r in rules]
                trigger["Filter"] = {"Key": {"FilterRules": filter_rules}}
            triggers.append(trigger)
    return triggers


def notify_queue(
    s3: Any,
    sqs: Any,
    bucket: str,
    queue_name: str,
    triggers: list[dict[str, Any]],
    visibility_timeout_s: int = 60,
) -> str:
    """Create the notification queue and point the bucket's triggers at it; returns its URL."""
    queue_url = sqs.create_queue(
        QueueName=queue_name, Attributes={"VisibilityTimeout": str(visibility_timeout_s)}
    )["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    s3.put_bucket_notification_configuration(
        Bucket=bucket,
        NotificationConfiguration={
            "QueueConfigurations": [
                {"Id": f"trigger-{i}", "QueueArn": queue_arn, **trigger}
                for i, trigger in enumerate(triggers)
            ]
        },
    )
    return queue_url


class S3EventPump:
    """Moves S3 events from the notification queue into the function's async invoker.

    A message is deleted once the invoker has accepted its event: from then on the event is
    Lambda's (retries, failure destination), exactly as with a real S3 → Lambda trigger.
    """

    def __init__(
        self, sqs: Any, queue_url: str, invoke_async: Callable[[dict[str, Any]], str]
    ) -> None:
        self._sqs = sqs
        self._queue_url = queue_url
        self._invoke_async = invoke_async
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.delivered = 0
        self._last_sequencer = 0

    def __enter__(self) -> S3EventPump:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="s3-event-pump", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def drain_once(self) -> int:
        """Deliver what the queue holds now (one receive); returns how many events moved."""
        messages = self._sqs.receive_message(
            QueueUrl=self._queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
        ).get("Messages", [])
        for message in messages:
            self._invoke_async(self._with_sequencer(json.loads(message["Body"])))
            self._sqs.delete_message(
                QueueUrl=self._queue_url, ReceiptHandle=message["ReceiptHandle"]
            )
            self.delivered += 1
        return len(messages)

    def _with_sequencer(self, event: dict[str, Any]) -> dict[str, Any]:
        """Add the ``sequencer`` S3 puts in every ObjectCreated record and moto leaves out.

        The handler orders deliveries of one key by it; events reach the pump in PutObject order,
        so an increasing hex value here keeps that order. Nothing else in the event is touched.
        """
        for record in event.get("Records", []):
            obj = record.get("s3", {}).get("object")
            if obj is not None and "sequencer" not in obj:
                self._last_sequencer = max(self._last_sequencer + 1, time.time_ns())
                obj["sequencer"] = f"{self._last_sequencer:018X}"
        return event

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if not self.drain_once():
                    self._stop.wait(0.05)
            except Exception as exc:  # the server is going away, or a hiccup: keep pumping
                if self._stop.is_set():
                    return
                print(f"s3-event-pump: {exc!r}", file=sys.stderr)
                self._stop.wait(0.5)
