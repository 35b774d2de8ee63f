"""``redrive``: move every message of the dead-letter queue back to the upload queue.

Uses SQS's own message move task (``StartMessageMoveTask``), the API behind the console's "Start
DLQ redrive": SQS moves the messages itself, keeps their bodies, and gives them a fresh receive
count, so the function sees each upload again as if it had just arrived. SQS allows one active
task per dead-letter queue; a running one is reported (and followed), never started twice.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Any, TextIO

from botocore.exceptions import ClientError

from classify_ops.errors import Interrupted, error_code
from classify_ops.progress import Progress
from classify_ops.stack import Connection, Stack, queue_name, read_stack

RUNNING = "RUNNING"
COMPLETED = "COMPLETED"
FINAL = frozenset({COMPLETED, "FAILED", "CANCELLED"})
# SQS's code for "a task is already running" (its JSON protocol answers the query-style code).
UNSUPPORTED = frozenset({"UnsupportedOperation", "AWS.SimpleQueueService.UnsupportedOperation"})


@dataclass(frozen=True)
class RedriveOptions:
    wait: bool = True
    max_per_second: int | None = None  # None: as fast as SQS goes ("system optimized")
    poll_interval_s: float = 5.0


@dataclass(frozen=True)
class Queues:
    dead_letter_url: str
    dead_letter_arn: str
    upload_arn: str

    @classmethod
    def of(cls, stack: Stack) -> Queues:
        stack.require("DeadLetterQueueUrl", "DeadLetterQueueArn", "UploadQueueArn")
        return cls(
            stack["DeadLetterQueueUrl"], stack["DeadLetterQueueArn"], stack["UploadQueueArn"]
        )


def run(
    connection: Connection, stack_name: str, options: RedriveOptions, out: TextIO | None = None
) -> int:
    """Start (or find) the redrive and, unless told not to, follow it to its end."""
    out = out or sys.stdout
    queues = Queues.of(read_stack(connection, stack_name))
    sqs = connection.client("sqs")
    task = begin(sqs, queues, options.max_per_second, out)
    if task is None:
        return 0
    if not options.wait:
        print(
            "not waiting; run the command again to see its progress "
            f"(task handle {task.get('TaskHandle', '?')})",
            file=out,
        )
        return 0
    final = follow(sqs, queues.dead_letter_arn, task, options.poll_interval_s, out)
    return report(final, queue_name(queues.upload_arn), out)


def begin(
    sqs: Any, queues: Queues, max_per_second: int | None, out: TextIO
) -> dict[str, Any] | None:
    """The task to follow: the one already running, else a new one; None when the dead-letter
    queue is empty (nothing started)."""
    source, destination = queue_name(queues.dead_letter_arn), queue_name(queues.upload_arn)
    task = running_task(sqs, queues.dead_letter_arn)
    if task:
        print(
            f"a redrive of {source} is already running ({describe_counts(task)}): "
            "following it instead of starting another",
            file=out,
        )
        return task
    visible, in_flight = message_counts(sqs, queues.dead_letter_url)
    if not visible:
        note = f" ({in_flight} being read right now: try again later)" if in_flight else ""
        print(f"nothing to redrive: the dead-letter queue {source} is empty{note}", file=out)
        return None
    task, ours = start(sqs, queues, max_per_second)
    if ours:
        print(f"redrive started: about {visible} messages from {source} to {destination}", file=out)
    else:
        print(f"a redrive of {source} was started meanwhile: following it", file=out)
    return task


def running_task(sqs: Any, source_arn: str) -> dict[str, Any] | None:
    """The dead-letter queue's active move task, if any (SQS lists the newest first)."""
    results = sqs.list_message_move_tasks(SourceArn=source_arn, MaxResults=1)["Results"]
    return results[0] if results and results[0].get("Status") == RUNNING else None


def message_counts(sqs: Any, queue_url: str) -> tuple[int, int]:
    """(visible, in flight) messages of the queue, SQS's approximate counts."""
    attributes = sqs.get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return (
        int(attributes.get("ApproximateNumberOfMessages", 0)),
        int(attributes.get("ApproximateNumberOfMessagesNotVisible", 0)),
    )


def start(sqs: Any, queues: Queues, max_per_second: int | None) -> tuple[dict[str, Any], bool]:
    """Start the move task: (the task, True); if another one started meanwhile, (that, False)."""
    request: dict[str, Any] = {
        "SourceArn": queues.dead_letter_arn,
        "DestinationArn": queues.upload_arn,
    }
    if max_per_second:
        request["MaxNumberOfMessagesPerSecond"] = max_per_second
    try:
        handle = sqs.start_message_move_task(**request)["TaskHandle"]
    except ClientError as exc:
        other = (
            running_task(sqs, queues.dead_letter_arn) if error_code(exc) in UNSUPPORTED else None
        )
        if other is None:
            raise
        return other, False
    return {"TaskHandle": handle, "Status": RUNNING}, True


def find_task(results: list[dict[str, Any]], task: dict[str, Any]) -> dict[str, Any] | None:
    """Our task among the listed ones: by handle while it runs (SQS drops the handle once it
    ends), then by start time, else the newest (only one task runs per queue at a time)."""
    handle, started = task.get("TaskHandle"), task.get("StartedTimestamp")
    for candidate in results:
        if handle and candidate.get("TaskHandle") == handle:
            return candidate
    for candidate in results:
        if started and candidate.get("StartedTimestamp") == started:
            return candidate
    return results[0] if results else None


def follow(
    sqs: Any, source_arn: str, task: dict[str, Any], poll_interval_s: float, out: TextIO
) -> dict[str, Any]:
    """Poll ``ListMessageMoveTasks`` until the task ends, showing "moved N/M"."""
    progress = Progress("moved", int(task.get("ApproximateNumberOfMessagesToMove", 0)), out)
    try:
        while True:
            results = sqs.list_message_move_tasks(SourceArn=source_arn, MaxResults=10)["Results"]
            current = find_task(results, task) or task
            task = {**task, **{k: v for k, v in current.items() if k != "TaskHandle"}}
            progress.update(
                int(current.get("ApproximateNumberOfMessagesMoved", 0)),
                int(current.get("ApproximateNumberOfMessagesToMove", 0)),
            )
            if current.get("Status") in FINAL:
                progress.close_line()
                return current
            time.sleep(poll_interval_s)
    except KeyboardInterrupt:
        progress.close_line()
        raise Interrupted(
            f"stopped watching; the redrive keeps running in SQS ({describe_counts(task)}): "
            "run the command again to see it"
        ) from None


def describe_counts(task: dict[str, Any]) -> str:
    moved = task.get("ApproximateNumberOfMessagesMoved", 0)
    return f"{moved}/{task.get('ApproximateNumberOfMessagesToMove', '?')} moved"


def report(task: dict[str, Any], destination: str, out: TextIO) -> int:
    """The summary line; 0 when the task completed, 1 when it failed or was cancelled."""
    status = task.get("Status")
    counts = describe_counts(task)
    if status == COMPLETED:
        print(f"redrive completed: {counts} to {destination}", file=out)
        return 0
    reason = f": {task['FailureReason']}" if task.get("FailureReason") else ""
    print(f"redrive {str(status).lower()} ({counts}){reason}", file=out)
    return 1
