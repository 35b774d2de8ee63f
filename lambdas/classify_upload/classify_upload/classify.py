"""One S3 notification → one table item per uploaded object. No Lambda types in here."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from classify_upload.clients import Clients
from classify_upload.endpoint import RetryPolicy, invoke_endpoint
from classify_upload.errors import (
    ConfigurationFailure,
    PermanentFailure,
    TransientFailure,
    UploadFailure,
)
from classify_upload.events import (
    UploadedObject,
    is_folder_marker,
    is_test_event,
    is_under_prefix,
    uploaded_objects,
)
from classify_upload.images import fit_request
from classify_upload.table import failed_item, predicted_item, put_if_newer

logger = Logger(child=True)

OBJECT_GONE_CODES = frozenset({"NoSuchKey", "NoSuchVersion", "NoSuchBucket", "404", "NotFound"})
CONFIGURATION_CODES = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "ResourceNotFoundException",
        "ValidationException",
        "KMS.AccessDeniedException",
        "UnrecognizedClientException",
    }
)


@dataclass(frozen=True)
class Settings:
    """The function's configuration: environment variables set by template.yaml."""

    table_name: str
    endpoint_name: str
    upload_prefix: str = "uploads/"
    top_k: int = 3

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        return cls(
            table_name=env["TABLE_NAME"],
            endpoint_name=env["ENDPOINT_NAME"],
            upload_prefix=env.get("UPLOAD_PREFIX", "uploads/"),
            top_k=int(env.get("TOP_K", "3")),
        )


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
    outcomes: list[ObjectOutcome] = field(default_factory=list)
    retry_later: list[tuple[str, UploadFailure]] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status and o.written)

    @property
    def stale(self) -> int:
        return sum(1 for o in self.outcomes if not o.written)


def classify_storage_error(exc: Exception, what: str) -> UploadFailure:
    """S3 / DynamoDB errors that survived botocore's retries, classified once."""
    if isinstance(exc, UploadFailure):
        return exc
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        message = exc.response.get("Error", {}).get("Message", "") or str(exc)
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if what == "object" and code in OBJECT_GONE_CODES:
            return PermanentFailure("ObjectNotFound", f"{code}: {message}")
        if what == "object" and code == "InvalidObjectState":
            return PermanentFailure("ObjectArchived", message)
        if code in CONFIGURATION_CODES or status == 403:
            return ConfigurationFailure(code or f"HTTP{status}", f"{what}: {message}")
        return TransientFailure(code or f"HTTP{status}", f"{what}: {message}")
    if isinstance(exc, BotoCoreError | OSError):
        return TransientFailure(type(exc).__name__, f"{what}: {exc}")
    raise exc


def read_object(s3: Any, obj: UploadedObject) -> bytes:
    kwargs = {"Bucket": obj.bucket, "Key": obj.key}
    if obj.version_id:
        kwargs["VersionId"] = obj.version_id
    try:
        return s3.get_object(**kwargs)["Body"].read()
    except Exception as exc:
        raise classify_storage_error(exc, "object") from exc


def write_item(table: Any, item: dict[str, Any]) -> bool:
    try:
        return put_if_newer(table, item)
    except Exception as exc:
        raise classify_storage_error(exc, "table") from exc


def _ms_since(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0


def classify_object(
    obj: UploadedObject,
    settings: Settings,
    clients: Clients,
    request_id: str,
    policy: RetryPolicy,
    sleep: Callable[[float], None] = time.sleep,
) -> ObjectOutcome:
    """Read, (downscale,) predict and record one object. Raises only transient/config failures."""
    timings: dict[str, float] = {}
    started = time.perf_counter()
    downscaled = False
    attempts = 0
    try:
        t = time.perf_counter()
        body = read_object(clients.s3, obj)
        timings["get_object"] = _ms_since(t)
        if not body:
            raise PermanentFailure("EmptyObject", "the object has zero bytes")
        t = time.perf_counter()
        request = fit_request(body)
        downscaled = request.downscaled
        if downscaled:
            timings["downscale"] = _ms_since(t)
            logger.info(
                "downscaled to fit the endpoint's request limit",
                extra={"original_bytes": len(body), "sent_bytes": len(request.body)},
            )
        t = time.perf_counter()
        prediction = invoke_endpoint(
            clients.sagemaker_runtime,
            settings.endpoint_name,
            request.body,
            request.content_type,
            settings.top_k,
            policy,
            sleep=sleep,
            on_retry=lambda failure, attempt, delay: logger.warning(
                "endpoint call failed, retrying",
                extra={"error_type": failure.error_type, "attempt": attempt, "delay_s": delay},
            ),
        )
        attempts = prediction.attempts
        timings["invoke_endpoint"] = _ms_since(t)
        timings["total"] = _ms_since(started)
        item = predicted_item(
            obj,
            prediction,
            endpoint_name=settings.endpoint_name,
            request_id=request_id,
            timings_ms=timings,
            downscaled=downscaled,
        )
    except PermanentFailure as failure:
        timings["total"] = _ms_since(started)
        logger.warning(
            "permanent failure, recording it",
            extra={"error_type": failure.error_type, "error_message": failure.message},
        )
        item = failed_item(
            obj,
            error_type=failure.error_type,
            error_message=failure.message,
            endpoint_name=settings.endpoint_name,
            request_id=request_id,
            timings_ms=timings,
        )
    written = write_item(clients.table, item)
    if not written:
        logger.info("table already holds this or a newer event's result; left unchanged")
    return ObjectOutcome(
        key=obj.key,
        status=item["status"],
        written=written,
        error_type=item.get("error_type"),
        downscaled=downscaled,
        endpoint_attempts=attempts,
    )


def classify_event(
    event: dict[str, Any],
    settings: Settings,
    clients: Clients,
    request_id: str,
    policy: RetryPolicy,
    sleep: Callable[[float], None] = time.sleep,
) -> EventSummary:
    """Process every record; transient/config failures are collected, not raised, so the other
    records still get their items. The caller fails the invocation if ``retry_later`` is set."""
    summary = EventSummary(test_event=is_test_event(event))
    if summary.test_event:
        logger.info("s3:TestEvent ignored")
        return summary
    for obj in uploaded_objects(event):
        logger.append_keys(s3_bucket=obj.bucket, s3_key=obj.key, sequencer=obj.sequencer)
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
                classify_object(obj, settings, clients, request_id, policy, sleep=sleep)
            )
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
            logger.remove_keys(["s3_bucket", "s3_key", "sequencer"])
    return summary
