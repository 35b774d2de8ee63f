"""One queue message → one table item per uploaded object. No Lambda or SQS types in here.

A message body is an S3 notification or a reprocess request (``events``). Each object is read,
sent to the endpoint and recorded; what cannot succeed on a retry becomes a ``FAILED`` item, what
may succeed later is collected in ``retry_later`` so the caller can have the message redelivered.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from classify_upload.clients import Clients
from classify_upload.endpoint import Deadline, Prediction, RetryPolicy, invoke_endpoint
from classify_upload.errors import (
    OBJECT_ARCHIVED_CODES,
    OBJECT_GONE_CODES,
    ConfigurationFailure,
    PermanentFailure,
    ServiceError,
    TransientFailure,
    UploadFailure,
)
from classify_upload.events import (
    UploadedObject,
    is_folder_marker,
    is_test_event,
    is_under_prefix,
    message_objects,
)
from classify_upload.images import RequestBody, fit_request
from classify_upload.settings import Settings
from classify_upload.table import failed_item, predicted_item, put_if_newer

logger = Logger(child=True)


class ObjectSuperseded(Exception):
    """A reprocess request for a version that is no longer the object's current one (overwritten
    or deleted since): classifying it would bring an old version's result back, so nothing is
    written."""


@dataclass(frozen=True)
class ObjectOutcome:
    key: str
    status: str  # PREDICTED | FAILED
    written: bool  # False: a duplicate or older delivery, the table already had newer
    error_type: str | None = None
    downscaled: bool = False
    endpoint_attempts: int = 0


@dataclass
class EventSummary:
    test_event: bool = False
    skipped: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)  # "bucket/key" of another bucket, dropped
    superseded: list[str] = field(default_factory=list)  # reprocess requests for an old version
    outcomes: list[ObjectOutcome] = field(default_factory=list)
    retry_later: list[tuple[str, UploadFailure]] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status and o.written)

    @property
    def stale(self) -> int:
        return sum(1 for o in self.outcomes if not o.written)


def triage_storage_error(exc: Exception, what: str) -> UploadFailure:
    """S3 / DynamoDB errors that survived botocore's retries, classified once."""
    if isinstance(exc, UploadFailure):
        return exc
    if isinstance(exc, ClientError):
        error = ServiceError.of(exc)
        if what == "object" and error.code in OBJECT_GONE_CODES:
            return PermanentFailure("ObjectNotFound", f"{error.code}: {error.message}")
        if what == "object" and error.code in OBJECT_ARCHIVED_CODES:
            return PermanentFailure("ObjectArchived", error.message)
        if what == "object" and error.object_encrypted():
            return PermanentFailure(
                "ObjectEncrypted",
                f"the object is encrypted with a key this function cannot use "
                f"({error.code}: {error.message})",
            )
        # A code no table names, after botocore's own retries: keep the event rather than guess.
        failure_class = error.failure_class() or TransientFailure
        return failure_class(error.error_type, f"{what}: {error.message}")
    if isinstance(exc, BotoCoreError | OSError):
        return TransientFailure(type(exc).__name__, f"{what}: {exc}")
    raise exc


def too_large(size: int, limit: int) -> PermanentFailure:
    return PermanentFailure(
        "TooLarge", f"the object has {size} bytes; this stack classifies at most {limit}"
    )


def read_object(s3: Any, obj: UploadedObject, max_bytes: int) -> bytes:
    """The object's bytes; an object over ``max_bytes`` is refused before its body is read.

    An upload event names its version, and that version is read. A reprocess request reads the
    current version and goes on only if it is still the one the request names.
    """
    kwargs = {"Bucket": obj.bucket, "Key": obj.key}
    if obj.version_id and not obj.reprocess_id:
        kwargs["VersionId"] = obj.version_id
    try:
        response = s3.get_object(**kwargs)
    except ClientError as exc:
        if obj.reprocess_id and ServiceError.of(exc).code in OBJECT_GONE_CODES:
            raise ObjectSuperseded("the object was deleted since") from exc
        raise triage_storage_error(exc, "object") from exc
    except Exception as exc:
        raise triage_storage_error(exc, "object") from exc
    body = response["Body"]
    try:
        if obj.reprocess_id:
            _check_still_current(obj, response)
        size = int(response.get("ContentLength") or 0)
        if size > max_bytes:
            raise too_large(size, max_bytes)
        return body.read()
    except (UploadFailure, ObjectSuperseded):
        raise
    except Exception as exc:  # the connection broke while reading the body
        raise triage_storage_error(exc, "object") from exc
    finally:
        body.close()


def _check_still_current(obj: UploadedObject, response: dict[str, Any]) -> None:
    if obj.version_id:
        current = response.get("VersionId")
        if current != obj.version_id:
            raise ObjectSuperseded(f"version {obj.version_id} is no longer current ({current})")
    elif obj.etag and response.get("ETag", "").strip('"') != obj.etag:
        raise ObjectSuperseded("the object was overwritten since (its ETag changed)")


def write_item(table: Any, item: dict[str, Any]) -> bool:
    """Newest-wins (``table.put_if_newer``); False when the table already had this or newer."""
    try:
        written = put_if_newer(table, item)
    except Exception as exc:
        raise triage_storage_error(exc, "table") from exc
    if not written:
        logger.info("table already holds this or a newer event's result; left unchanged")
    return written


@dataclass
class _Trace:
    """What one object's steps measured so far; a ``FAILED`` item and the outcome keep it too."""

    started: float = field(default_factory=time.perf_counter)
    timings_ms: dict[str, float] = field(default_factory=dict)
    downscaled: bool = False
    attempts: int = 0

    @contextmanager
    def timed(self, step: str) -> Iterator[None]:
        """Records the step's milliseconds when it succeeds; a failed step has no timing."""
        start = time.perf_counter()
        yield
        self.timings_ms[step] = _ms_since(start)

    def finish(self) -> dict[str, float]:
        self.timings_ms["total"] = _ms_since(self.started)
        return self.timings_ms


def _ms_since(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0


def classify_object(
    obj: UploadedObject,
    settings: Settings,
    clients: Clients,
    request_id: str,
    policy: RetryPolicy,
    sleep: Callable[[float], None] = time.sleep,
    deadline: Deadline | None = None,
) -> ObjectOutcome:
    """Read, (downscale,) predict and record one object. Raises only transient/config failures,
    and ``ObjectSuperseded`` for a reprocess request whose version is no longer current.

    An object is not started unless ``deadline`` leaves time for one endpoint call and its write.
    """
    deadline = deadline or Deadline.unlimited()
    if not deadline.allows_call():
        raise deadline.exceeded("object not started")
    trace = _Trace()
    try:
        body = _read_body(clients.s3, obj, settings.max_object_bytes, trace)
        request = _fit(body, settings.max_request_bytes, trace)
        prediction = _predict(
            clients.sagemaker_runtime, settings, request, policy, sleep, trace, deadline
        )
        item = predicted_item(
            obj,
            prediction,
            endpoint_name=settings.endpoint_name,
            request_id=request_id,
            timings_ms=trace.finish(),
            downscaled=trace.downscaled,
            low_confidence_threshold=settings.low_confidence_threshold,
        )
    except PermanentFailure as failure:
        item = _failed_item(obj, failure, settings, request_id, trace)
    written = write_item(clients.table, item)
    return ObjectOutcome(
        key=obj.key,
        status=item["status"],
        written=written,
        error_type=item.get("error_type"),
        downscaled=trace.downscaled,
        endpoint_attempts=trace.attempts,
    )


def _read_body(s3: Any, obj: UploadedObject, max_bytes: int, trace: _Trace) -> bytes:
    # The event's size decides before any request: a multi-gigabyte upload is never fetched.
    if obj.size > max_bytes:
        raise too_large(obj.size, max_bytes)
    with trace.timed("get_object"):
        body = read_object(s3, obj, max_bytes)
    if not body:
        raise PermanentFailure("EmptyObject", "the object has zero bytes")
    return body


def _fit(body: bytes, limit: int, trace: _Trace) -> RequestBody:
    start = time.perf_counter()
    request = fit_request(body, limit)
    # Only a downscale is worth a timing: passing the bytes through unchanged costs nothing.
    if request.downscaled:
        trace.downscaled = True
        trace.timings_ms["downscale"] = _ms_since(start)
        logger.info(
            "downscaled to fit the endpoint's request limit",
            extra={"original_bytes": len(body), "sent_bytes": len(request.body)},
        )
    return request


def _predict(
    client: Any,
    settings: Settings,
    request: RequestBody,
    policy: RetryPolicy,
    sleep: Callable[[float], None],
    trace: _Trace,
    deadline: Deadline,
) -> Prediction:
    with trace.timed("invoke_endpoint"):
        prediction = invoke_endpoint(
            client,
            settings.endpoint_name,
            request.body,
            request.content_type,
            settings.top_k,
            policy,
            sleep=sleep,
            on_retry=_log_retry,
            deadline=deadline,
        )
    trace.attempts = prediction.attempts
    return prediction


def _log_retry(failure: UploadFailure, attempt: int, delay: float) -> None:
    logger.warning(
        "endpoint call failed, retrying",
        extra={"error_type": failure.error_type, "attempt": attempt, "delay_s": delay},
    )


def _failed_item(
    obj: UploadedObject,
    failure: PermanentFailure,
    settings: Settings,
    request_id: str,
    trace: _Trace,
) -> dict[str, Any]:
    timings_ms = trace.finish()
    logger.warning(
        "permanent failure, recording it",
        extra={"error_type": failure.error_type, "error_message": failure.message},
    )
    return failed_item(
        obj,
        error_type=failure.error_type,
        error_message=failure.message,
        endpoint_name=settings.endpoint_name,
        request_id=request_id,
        timings_ms=timings_ms,
    )


def classify_event(
    event: dict[str, Any],
    settings: Settings,
    clients: Clients,
    request_id: str,
    policy: RetryPolicy,
    sleep: Callable[[float], None] = time.sleep,
    deadline: Deadline | None = None,
) -> EventSummary:
    """Process every object of one message body (an S3 event or a reprocess request).

    Transient/config failures are collected, not raised, so the other records still get their
    items; the caller has the message redelivered if ``retry_later`` is set. A body that names no
    upload raises ``MessageDropped`` before any object is touched.
    """
    summary = EventSummary(test_event=is_test_event(event))
    if summary.test_event:
        logger.info("s3:TestEvent ignored")
        return summary
    for obj in message_objects(event):
        logger.append_keys(
            s3_bucket=obj.bucket,
            s3_key=obj.key,
            sequencer=obj.sequencer,
            reprocess_id=obj.reprocess_id,
        )
        if settings.upload_bucket and obj.bucket != settings.upload_bucket:
            # Only this stack's bucket may have its objects read and recorded (the queue policy
            # admits only it; a record naming another bucket was not sent by it).
            logger.warning(
                "record for another bucket dropped", extra={"upload_bucket": settings.upload_bucket}
            )
            summary.foreign.append(f"{obj.bucket}/{obj.key}")
            continue
        if not is_under_prefix(obj.key, settings.upload_prefix):
            logger.info(
                "key outside the upload prefix ignored", extra={"prefix": settings.upload_prefix}
            )
            summary.skipped.append(obj.key)
            continue
        if is_folder_marker(obj.key, obj.size):
            logger.info("folder marker ignored")
            summary.skipped.append(obj.key)
            continue
        try:
            summary.outcomes.append(
                classify_object(
                    obj, settings, clients, request_id, policy, sleep=sleep, deadline=deadline
                )
            )
        except ObjectSuperseded as superseded:
            logger.info("reprocess skipped: %s", superseded)
            summary.superseded.append(obj.key)
        except (TransientFailure, ConfigurationFailure) as failure:
            logger.error(
                "will fail the invocation so that Lambda retries this event",
                extra={"error_type": failure.error_type, "error_message": failure.message},
            )
            summary.retry_later.append((obj.key, failure))
        except Exception as exc:
            # A bug or an unforeseen error: keep the event (Lambda retries, then the failure
            # queue) rather than guess; the other records still get their items.
            logger.exception("unexpected error, will fail the invocation")
            summary.retry_later.append((obj.key, TransientFailure(type(exc).__name__, str(exc))))
        finally:
            logger.remove_keys(["s3_bucket", "s3_key", "sequencer", "reprocess_id"])
    return summary
