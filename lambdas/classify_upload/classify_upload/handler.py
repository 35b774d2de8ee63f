"""Upload queue (SQS) → SageMaker endpoint → DynamoDB. The Lambda edge only: see ``classify``.

The event is a batch of SQS messages from the upload queue's event source mapping. Each message
is processed on its own (Powertools' batch utility); a message whose objects need a retry is
reported in ``batchItemFailures``, so only it comes back after the queue's visibility timeout
(and, after ``maxReceiveCount`` receives, goes to the dead-letter queue), never its neighbours.

A message that names no upload is dropped: one log line with the reason, the ``DroppedMessages``
metric, and the message is consumed (a redelivery would carry the same bytes).

The invocation's remaining time is a deadline (``endpoint.Deadline``): a message, an object, an
endpoint call or a backoff sleep is started only if it can end, at its longest, with time kept back
for the item's write. What does not fit is reported failed and comes back; the function never runs
into its timeout with finished messages in the batch, whose partial response would then be lost.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from classify_upload.classify import EventSummary, classify_event
from classify_upload.clients import Clients, make_clients
from classify_upload.endpoint import Deadline, RetryPolicy
from classify_upload.errors import MessageDropped, MessageFailed
from classify_upload.settings import Settings
from classify_upload.table import STATUS_FAILED, STATUS_PREDICTED

logger = Logger()  # service name and level: POWERTOOLS_SERVICE_NAME, POWERTOOLS_LOG_LEVEL/LOG_LEVEL
tracer = Tracer()
metrics = Metrics()  # namespace: POWERTOOLS_METRICS_NAMESPACE
processor = BatchProcessor(event_type=EventType.SQS)

SETTINGS = Settings.from_env()
RETRY_POLICY = RetryPolicy()


@functools.cache
def get_clients() -> Clients:
    """Built on first use, reused while warm; tests call ``get_clients.cache_clear()``."""
    return make_clients(SETTINGS.table_name)


@dataclass
class BatchTotals:
    """What one invocation's messages came to (metrics and the closing log line)."""

    summaries: list[EventSummary] = field(default_factory=list)
    dropped: int = 0  # messages that name no upload (``MessageDropped``)

    def count(self, status: str) -> int:
        return sum(s.count(status) for s in self.summaries)

    def total(self, name: str) -> int:
        return sum(len(getattr(s, name)) for s in self.summaries)

    def as_log(self) -> dict[str, int]:
        return {
            "predicted": self.count(STATUS_PREDICTED),
            "failed": self.count(STATUS_FAILED),
            "duplicate_or_stale": sum(s.stale for s in self.summaries),
            "skipped": self.total("skipped"),
            "other_bucket": self.total("foreign"),
            "superseded": self.total("superseded"),
            "retry_later": self.total("retry_later"),
            "dropped_messages": self.dropped,
        }


def retry_reason(summary: EventSummary) -> str:
    """One line naming what needs a retry (the message's failure, in logs and tests)."""
    key, first = summary.retry_later[0]
    return f"{len(summary.retry_later)} object(s) need a retry, first {key!r}: {first}"


def process_body(
    body: dict[str, Any], request_id: str, totals: BatchTotals, deadline: Deadline
) -> EventSummary:
    """One message body → its items; raises ``MessageFailed`` if any object needs a retry, and
    ``MessageDropped`` (before any object is read) if the body names no upload.

    The other objects' items are written first; a redelivery of the message is safe, since the
    sequencer condition turns their repeats into no-ops.
    """
    summary = classify_event(
        body, SETTINGS, get_clients(), request_id, RETRY_POLICY, deadline=deadline
    )
    totals.summaries.append(summary)
    if summary.retry_later:
        raise MessageFailed(retry_reason(summary))
    return summary


def record_handler(record: SQSRecord, lambda_context: LambdaContext, totals: BatchTotals) -> None:
    """One message (Powertools calls it per record; raising marks only this message failed)."""
    logger.append_keys(message_id=record.message_id)
    deadline = Deadline(lambda_context.get_remaining_time_in_millis)
    try:
        if not deadline.allows_call():
            raise MessageFailed(deadline.exceeded("message not started").message)
        try:
            process_body(parse_body(record.body), lambda_context.aws_request_id, totals, deadline)
        except MessageDropped as dropped:
            # Only S3 and `classify_ops reprocess` send here; anything else names no upload.
            logger.error(
                "message names no upload; dropped",
                extra={
                    "reason": dropped.reason,
                    "message_id": record.message_id,
                    "body": record.body[:200],
                },
            )
            totals.dropped += 1
    finally:
        logger.remove_keys(["message_id"])


def parse_body(text: str) -> Any:
    """The message body's JSON; ``MessageDropped`` when it is not JSON."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise MessageDropped(f"the body is not JSON: {exc}") from None


def _emit_metrics(totals: BatchTotals) -> None:
    counts = totals.as_log()
    for name, key in [
        ("Predicted", "predicted"),
        ("Failed", "failed"),
        ("DuplicateOrStale", "duplicate_or_stale"),
        ("SkippedOutsidePrefix", "skipped"),
        ("OtherBucketDropped", "other_bucket"),
        ("ReprocessSuperseded", "superseded"),
        ("RetryLater", "retry_later"),
        ("DroppedMessages", "dropped_messages"),
    ]:
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=counts[key])
    downscaled = sum(o.downscaled for s in totals.summaries for o in s.outcomes)
    metrics.add_metric(name="Downscaled", unit=MetricUnit.Count, value=downscaled)


@logger.inject_lambda_context(correlation_id_path="Records[0].messageId", clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    totals = BatchTotals()
    try:
        # Every message failed: Powertools raises, so the invocation errors (the Errors alarm).
        return process_partial_response(
            event=event,
            record_handler=functools.partial(record_handler, totals=totals),
            processor=processor,
            context=context,
        )
    finally:
        _emit_metrics(totals)
        messages = len(event.get("Records", []))
        logger.info("batch processed", extra={"messages": messages, **totals.as_log()})
