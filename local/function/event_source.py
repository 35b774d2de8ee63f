"""Lambda's SQS event source mapping, on one machine: the upload queue → the function.

moto keeps the stack's ``AWS::Lambda::EventSourceMapping`` but would run the function in Docker on
every SendMessage; the offline stack detaches that (``local.aws.deploy``) and runs this
instead, configured from the mapping moto holds. What it keeps of Lambda's behaviour:

- At most ``ScalingConfig.MaximumConcurrency`` pollers, each with its own execution environment
  (``local.function.runtime.Sandbox``). A poller receives a batch, invokes the function with it
  synchronously and settles it before it receives again, so no more invocations than that ever
  run at once, and a burst waits in the queue.
- A batch is one long-polled ReceiveMessage of up to ``BatchSize`` messages (further receives
  until ``MaximumBatchingWindowInSeconds`` when a window is set), with every system and message
  attribute; the function gets Lambda's SQS event (``sqs_event``).
- The queue does the retrying. After a function error or timeout nothing is deleted: the messages
  come back when the queue's visibility timeout ends, and SQS (here moto) moves a message to the
  dead-letter queue once it has been received ``maxReceiveCount`` times.
- With ``FunctionResponseTypes: [ReportBatchItemFailures]`` the messages the response lists in
  ``batchItemFailures`` stay and every other one is deleted; a response Lambda cannot use (an
  ``itemIdentifier`` that is null, empty, missing or not a message of the batch) fails the whole
  batch (``settle_batch``). Without the response type, a successful invocation deletes the whole
  batch, whatever it returns.
- ``EventSourceStats`` counts what CloudWatch shows (invocations, errors, deleted messages,
  concurrency) and each sandbox's peak memory (the REPORT line's ``Max Memory Used``).
"""

from __future__ import annotations

import base64
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from local.function.runtime import FunctionConfig, Sandbox

# Lambda long-polls for 20 s; 1 s changes nothing but how soon ``close()`` returns.
POLL_WAIT_S = 1
SQS_MAX_MESSAGES = 10  # ReceiveMessage's and DeleteMessageBatch's limit
# Without MaximumConcurrency, Lambda starts five pollers (and may scale up to the account's
# concurrency); one machine keeps the five.
DEFAULT_MAXIMUM_CONCURRENCY = 5

SUCCESS, PARTIAL, FUNCTION_ERROR, MALFORMED = (
    "success",
    "partial_failure",
    "function_error",
    "malformed_response",
)


@dataclass(frozen=True)
class MappingConfig:
    """One SQS event source mapping as the stack deployed it."""

    queue_url: str
    queue_arn: str
    region: str
    batch_size: int = 10
    batching_window_s: float = 0.0
    report_batch_item_failures: bool = False
    maximum_concurrency: int = DEFAULT_MAXIMUM_CONCURRENCY

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any], queue_url: str) -> MappingConfig:
        """From one entry of ``lambda.list_event_source_mappings`` (moto's or AWS's shape)."""
        arn = mapping["EventSourceArn"]
        scaling = mapping.get("ScalingConfig") or {}
        return cls(
            queue_url=queue_url,
            queue_arn=arn,
            region=arn.split(":")[3],
            batch_size=int(mapping.get("BatchSize") or 10),
            batching_window_s=float(mapping.get("MaximumBatchingWindowInSeconds") or 0),
            report_batch_item_failures="ReportBatchItemFailures"
            in (mapping.get("FunctionResponseTypes") or []),
            maximum_concurrency=int(
                scaling.get("MaximumConcurrency") or DEFAULT_MAXIMUM_CONCURRENCY
            ),
        )


@dataclass
class EventSourceStats:
    """Counters, like the function's and the mapping's CloudWatch metrics."""

    invocations: int = 0
    errors: int = 0  # function errors and timeouts: the whole batch comes back
    timeouts: int = 0
    malformed_responses: int = 0  # batchItemFailures Lambda cannot use: the whole batch comes back
    messages_received: int = 0
    messages_deleted: int = 0
    messages_reported_failed: int = 0  # listed in batchItemFailures: they come back
    cold_starts: int = 0
    max_concurrency_seen: int = 0
    # Peak resident memory per sandbox (the REPORT line's Max Memory Used), MB.
    max_memory_used_mb: dict[str, int] = field(default_factory=dict)

    @property
    def peak_memory_used_mb(self) -> int:
        return max(self.max_memory_used_mb.values(), default=0)


@dataclass(frozen=True)
class InvocationResult:
    """One invocation with its batch: what the function answered and what was deleted."""

    request_id: str
    sandbox: str
    message_ids: tuple[str, ...]
    verdict: str  # SUCCESS | PARTIAL | FUNCTION_ERROR | MALFORMED
    payload: Any
    error: dict[str, Any] | None
    deleted: int
    duration_ms: float | None
    max_memory_used_mb: int | None


@dataclass(frozen=True)
class BatchOutcome:
    delete: frozenset[str]  # message ids to delete
    verdict: str
    reason: str = ""


class MalformedResponse(ValueError):
    """A partial batch response Lambda rejects: the whole batch counts as failed."""


def lambda_message_attributes(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """SQS's ``MessageAttributes`` in the shape Lambda's SQS records carry them."""
    converted = {}
    for name, value in attributes.items():
        entry: dict[str, Any] = {
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": value["DataType"],
        }
        if "StringValue" in value:
            entry["stringValue"] = value["StringValue"]
        if "BinaryValue" in value:
            entry["binaryValue"] = base64.b64encode(value["BinaryValue"]).decode("ascii")
        converted[name] = entry
    return converted


def sqs_record(message: Mapping[str, Any], queue_arn: str, region: str) -> dict[str, Any]:
    """One received message as a record of Lambda's SQS event."""
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": dict(message.get("Attributes", {})),
        "messageAttributes": lambda_message_attributes(message.get("MessageAttributes", {})),
        "md5OfBody": message["MD5OfBody"],
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }


def sqs_event(messages: Iterable[Mapping[str, Any]], queue_arn: str, region: str) -> dict:
    """Lambda's SQS event for one batch."""
    return {"Records": [sqs_record(m, queue_arn, region) for m in messages]}


def reported_failures(payload: Any, message_ids: Sequence[str]) -> frozenset[str]:
    """The message ids a partial batch response lists; ``MalformedResponse`` where Lambda would
    reject it. A null response, or a null or empty list, reports no failure."""
    if payload is None:
        return frozenset()
    if not isinstance(payload, dict):
        raise MalformedResponse(f"the response is not an object: {payload!r:.100}")
    failures = payload.get("batchItemFailures")
    if failures is None:
        return frozenset()
    if not isinstance(failures, list):
        raise MalformedResponse("batchItemFailures is not a list")
    batch, failed = set(message_ids), set()
    for failure in failures:
        if not isinstance(failure, dict) or "itemIdentifier" not in failure:
            raise MalformedResponse(f"a failure without itemIdentifier: {failure!r:.100}")
        identifier = failure["itemIdentifier"]
        if not isinstance(identifier, str) or not identifier:
            raise MalformedResponse(f"itemIdentifier {identifier!r} is null or empty")
        if identifier not in batch:
            raise MalformedResponse(f"itemIdentifier {identifier!r} is not in the batch")
        failed.add(identifier)
    return frozenset(failed)


def settle_batch(
    message_ids: Sequence[str], result: Mapping[str, Any], report_batch_item_failures: bool
) -> BatchOutcome:
    """Which messages of an invoked batch to delete, as Lambda decides it."""
    if not result.get("ok"):
        return BatchOutcome(frozenset(), FUNCTION_ERROR)
    everything = frozenset(message_ids)
    if not report_batch_item_failures:
        return BatchOutcome(everything, SUCCESS)
    try:
        failed = reported_failures(result.get("payload"), message_ids)
    except MalformedResponse as exc:
        return BatchOutcome(frozenset(), MALFORMED, str(exc))
    return BatchOutcome(everything - failed, PARTIAL if failed else SUCCESS)


def queue_depth(sqs: Any, queue_url: str) -> int:
    """Messages the queue holds: visible, in flight and delayed."""
    attributes = sqs.get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=[
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ],
    )["Attributes"]
    return sum(int(value) for value in attributes.values())


class SqsEventSource:
    """The pollers of one SQS event source mapping, each invoking its own sandbox.

    ``sqs_client()`` makes an SQS client of the queue's endpoint (one per poller). Use as a
    context manager; ``close()`` stops the pollers and the sandboxes. An invocation still running
    then is abandoned: its messages stay in the queue and come back, as when Lambda's host goes.
    """

    def __init__(
        self,
        mapping: MappingConfig,
        function: FunctionConfig,
        env: Mapping[str, str],
        sqs_client: Callable[[], Any],
        *,
        log_dir: Path | None = None,
    ) -> None:
        self.mapping = mapping
        self.function = function
        self.stats = EventSourceStats()
        self.results: list[InvocationResult] = []  # every invocation, in completion order
        self._env = dict(env)
        self._sqs_client = sqs_client
        self._log_dir = log_dir
        self._lock = threading.Lock()
        # moto's ReceiveMessage is not atomic: two at once can hand out the same message, which
        # SQS does not do within the visibility timeout. One receive at a time keeps moto to
        # SQS's behaviour; the invocations themselves still run concurrently.
        self._receive_lock = threading.Lock()
        self._stopping = threading.Event()
        self._busy = 0
        self._threads: list[threading.Thread] = []
        self._sandboxes: list[Sandbox] = []

    def __enter__(self) -> SqsEventSource:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        if self._log_dir:
            self._log_dir.mkdir(parents=True, exist_ok=True)
        for i in range(self.mapping.maximum_concurrency):
            name = f"sandbox-{i}"
            log = self._log_dir / f"{name}.log" if self._log_dir else None
            env = dict(self._env, AWS_LAMBDA_LOG_STREAM_NAME=f"local/[$LATEST]{name}")
            sandbox = Sandbox(self.function, env, log)
            self._sandboxes.append(sandbox)
            thread = threading.Thread(
                target=self._poll, args=(name, sandbox), name=f"sqs-poller-{i}", daemon=True
            )
            self._threads.append(thread)
            thread.start()

    def close(self) -> None:
        self._stopping.set()
        for sandbox in self._sandboxes:
            sandbox.stop()
        for thread in self._threads:
            thread.join(timeout=POLL_WAIT_S + 10)
        for sandbox in self._sandboxes:  # one a poller may have started while we stopped
            sandbox.stop()

    @property
    def worker_exit_codes(self) -> list[int | None]:
        """Each sandbox's last stopped process's exit status (None: never stopped)."""
        return [sandbox.last_exit_code for sandbox in self._sandboxes]

    def in_flight(self) -> int:
        """Batches received and not yet settled."""
        with self._lock:
            return self._busy

    def wait_idle(self, timeout: float) -> bool:
        """Block until the queue is empty (nothing visible, in flight or delayed) and no batch is
        being processed, twice in a row; False on timeout."""
        sqs = self._sqs_client()
        deadline = time.monotonic() + timeout
        quiet = 0
        while time.monotonic() < deadline:
            idle = self.in_flight() == 0 and queue_depth(sqs, self.mapping.queue_url) == 0
            quiet = quiet + 1 if idle else 0
            if quiet >= 2:
                return True
            time.sleep(0.1)
        return False

    # -- one poller ------------------------------------------------------------------------

    def _poll(self, name: str, sandbox: Sandbox) -> None:
        sqs = self._sqs_client()
        while not self._stopping.is_set():
            try:
                messages = self._receive_batch(sqs)
            except Exception as exc:  # the server is going away, or a hiccup: keep polling
                if self._stopping.is_set():
                    return
                print(f"sqs-event-source: receive: {exc!r}", file=sys.stderr)
                self._stopping.wait(0.5)
                continue
            if not messages:
                continue
            self._begin(len(messages))
            try:
                self._process(sqs, name, sandbox, messages)
            except Exception as exc:  # a bug of ours: the messages stay and come back
                print(f"sqs-event-source: {exc!r}", file=sys.stderr)
            finally:
                self._end()

    def _receive(self, sqs: Any, count: int, wait_s: int) -> list[dict[str, Any]]:
        with self._receive_lock:
            if self._stopping.is_set():
                return []
            return sqs.receive_message(
                QueueUrl=self.mapping.queue_url,
                MaxNumberOfMessages=count,
                WaitTimeSeconds=wait_s,
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
            ).get("Messages", [])

    def _receive_batch(self, sqs: Any) -> list[dict[str, Any]]:
        """Up to BatchSize messages: the first receive long-polls; with a batching window,
        further receives fill the batch until the window closes."""
        size = self.mapping.batch_size
        batch = self._receive(sqs, min(SQS_MAX_MESSAGES, size), POLL_WAIT_S)
        if not batch:
            return []
        closes = time.monotonic() + self.mapping.batching_window_s
        while len(batch) < size and time.monotonic() < closes and not self._stopping.is_set():
            more = self._receive(sqs, min(SQS_MAX_MESSAGES, size - len(batch)), 0)
            batch += more
            if not more:
                self._stopping.wait(0.05)
        return batch

    def _begin(self, received: int) -> None:
        with self._lock:
            self._busy += 1
            self.stats.messages_received += received
            self.stats.max_concurrency_seen = max(self.stats.max_concurrency_seen, self._busy)

    def _end(self) -> None:
        with self._lock:
            self._busy -= 1

    def _process(
        self, sqs: Any, name: str, sandbox: Sandbox, messages: list[dict[str, Any]]
    ) -> None:
        request_id = str(uuid.uuid4())
        event = sqs_event(messages, self.mapping.queue_arn, self.mapping.region)
        result = self._invoke(sandbox, event, request_id)
        ids = [m["MessageId"] for m in messages]
        outcome = settle_batch(ids, result, self.mapping.report_batch_item_failures)
        if outcome.verdict == MALFORMED:
            print(f"sqs-event-source: {request_id}: {outcome.reason}", file=sys.stderr)
        deleted = self._delete(sqs, [m for m in messages if m["MessageId"] in outcome.delete])
        self._record(name, request_id, ids, result, outcome, deleted)

    def _invoke(self, sandbox: Sandbox, event: dict[str, Any], request_id: str) -> dict:
        if self._stopping.is_set():  # closing: start no new sandbox; the batch comes back
            return {
                "ok": False,
                "error": {"errorType": "Runtime.Unknown", "errorMessage": "closed"},
            }
        try:
            if not sandbox.running:
                sandbox.start()
                with self._lock:
                    self.stats.cold_starts += 1
            return sandbox.invoke(event, request_id)
        except Exception as exc:  # a bug of ours counts as an error: the batch comes back
            sandbox.stop()
            return {
                "ok": False,
                "error": {"errorType": "Runtime.Unknown", "errorMessage": repr(exc)},
            }

    def _delete(self, sqs: Any, messages: list[dict[str, Any]]) -> int:
        deleted = 0
        for start in range(0, len(messages), SQS_MAX_MESSAGES):
            chunk = messages[start : start + SQS_MAX_MESSAGES]
            entries = [
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)
            ]
            answer = sqs.delete_message_batch(QueueUrl=self.mapping.queue_url, Entries=entries)
            deleted += len(answer.get("Successful", []))
            for failure in answer.get("Failed", []):
                print(f"sqs-event-source: delete failed: {failure}", file=sys.stderr)
        return deleted

    def _record(
        self,
        name: str,
        request_id: str,
        ids: list[str],
        result: dict[str, Any],
        outcome: BatchOutcome,
        deleted: int,
    ) -> None:
        memory = result.get("max_memory_used_mb")
        with self._lock:
            stats = self.stats
            stats.invocations += 1
            stats.errors += outcome.verdict == FUNCTION_ERROR
            stats.timeouts += bool(result.get("timed_out"))
            stats.malformed_responses += outcome.verdict == MALFORMED
            stats.messages_deleted += deleted
            if outcome.verdict == PARTIAL:
                stats.messages_reported_failed += len(ids) - len(outcome.delete)
            if memory is not None:
                stats.max_memory_used_mb[name] = max(stats.max_memory_used_mb.get(name, 0), memory)
            self.results.append(
                InvocationResult(
                    request_id=request_id,
                    sandbox=name,
                    message_ids=tuple(ids),
                    verdict=outcome.verdict,
                    payload=result.get("payload"),
                    error=result.get("error"),
                    deleted=deleted,
                    duration_ms=result.get("duration_ms"),
                    max_memory_used_mb=memory,
                )
            )
