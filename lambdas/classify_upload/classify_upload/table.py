"""The predictions table's item: its fields, built in one place, written newest-wins.

Keys: ``bucket`` (HASH) and ``key`` (RANGE). GSI ``by_breed``: ``breed`` (HASH) and
``predicted_at`` (RANGE, ISO-8601 UTC, so newest first with ``ScanIndexForward=False``). The GSI is
sparse: ``FAILED`` items carry no ``breed``. GSI ``low_confidence``: ``confidence`` (HASH, only
``"LOW"`` ever, and only on predictions below the threshold) and ``predicted_at`` (RANGE).
``sequencer`` is the event's sequencer right-padded to a fixed width, so DynamoDB's string
comparison orders events of one key.

Every item (``_common``):
    bucket, key          the uploaded object (key decoded)
    status               ``PREDICTED`` or ``FAILED``
    etag, version_id, size, sequencer, event_time
                         the object's identity as the S3 event gave it (``version_id`` only
                         when the bucket is versioned, which the template's bucket is)
    endpoint_name        the SageMaker endpoint asked
    request_id           the Lambda request that wrote the item
    predicted_at         when the item was written (also on ``FAILED`` items)
    timings_ms           milliseconds per step: get_object, downscale, invoke_endpoint, total
``PREDICTED`` items add:
    breed, probability   the best breed and its probability
    top_k                ``[{breed, probability}]``, best first, ``TopK`` entries at most
    model                the model's identity from the endpoint's answer (name, version, ...)
    downscaled           whether the image was shrunk to fit the endpoint's 6 MiB limit
    attempts             endpoint calls it took (more than 1: transient errors were retried)
    confidence_threshold the LowConfidenceThreshold in force when it was classified
    confidence           ``"LOW"`` when ``probability`` is below that threshold, else absent
After a reprocess (``classify_ops reprocess``), any item adds:
    reprocess_id         the run that classified it again; ``reprocessed_at`` when
``FAILED`` items add:
    error_type           a short stable code (``EmptyObject``, ``ObjectNotFound``,
                         ``ModelRejected400``, ``NotAnImage``, ``BadModelResponse``, ...)
    error_message        why, at most ``MAX_ERROR_MESSAGE`` characters
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from botocore.exceptions import ClientError

from classify_upload.endpoint import Prediction
from classify_upload.events import UploadedObject

STATUS_PREDICTED = "PREDICTED"
STATUS_FAILED = "FAILED"
BY_BREED_INDEX = "by_breed"
MAX_ERROR_MESSAGE = 1000

LOW_CONFIDENCE_INDEX = "low_confidence"
LOW_CONFIDENCE = "LOW"

# Write only when no item exists or the stored one comes from an older event: a duplicate delivery
# (same sequencer) and an out-of-order older one both fail the condition and change nothing.
NEWER_ONLY = "attribute_not_exists(#key) OR #sequencer < :sequencer"
# A reprocess replaces only the result of the very upload it was asked for: if a newer upload's
# result is there (another sequencer), or the item is gone, it writes nothing.
SAME_UPLOAD_ONLY = "attribute_exists(#key) AND #sequencer = :sequencer"


def utc_now_iso() -> str:
    """Millisecond ISO-8601 UTC with a ``Z``: sorts as text in time order."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _decimal(value: float) -> Decimal:
    return Decimal(str(round(float(value), 6)))


def _timings(timings_ms: dict[str, float]) -> dict[str, Decimal]:
    return {name: Decimal(str(round(ms, 1))) for name, ms in timings_ms.items()}


def _common(
    obj: UploadedObject,
    status: str,
    endpoint_name: str,
    request_id: str,
    timings_ms: dict[str, float],
    predicted_at: str | None,
) -> dict[str, Any]:
    """The fields every item has, ``PREDICTED`` or ``FAILED``; ``predicted_at`` defaults to now."""
    item: dict[str, Any] = {
        "bucket": obj.bucket,
        "key": obj.key,
        "status": status,
        "etag": obj.etag,
        "size": obj.size,
        "sequencer": obj.sequencer,
        "event_time": obj.event_time,
        "endpoint_name": endpoint_name,
        "request_id": request_id,
        "predicted_at": predicted_at or utc_now_iso(),
        "timings_ms": _timings(timings_ms),
    }
    if obj.version_id:
        item["version_id"] = obj.version_id
    if obj.reprocess_id:
        item["reprocess_id"] = obj.reprocess_id
        item["reprocessed_at"] = item["predicted_at"]
    return item


def predicted_item(
    obj: UploadedObject,
    prediction: Prediction,
    *,
    endpoint_name: str,
    request_id: str,
    timings_ms: dict[str, float],
    downscaled: bool = False,
    predicted_at: str | None = None,
    low_confidence_threshold: float = 0.0,
) -> dict[str, Any]:
    item = _common(obj, STATUS_PREDICTED, endpoint_name, request_id, timings_ms, predicted_at)
    item.update(
        breed=prediction.breed,
        probability=_decimal(prediction.probability),
        top_k=[
            {"breed": p["breed"], "probability": _decimal(p["probability"])}
            for p in prediction.top_k
        ],
        model={k: v for k, v in prediction.model.items() if isinstance(v, str | int | bool)},
        downscaled=downscaled,
        attempts=prediction.attempts,
        confidence_threshold=_decimal(low_confidence_threshold),
    )
    if prediction.probability < low_confidence_threshold:
        item["confidence"] = LOW_CONFIDENCE
    return item


def failed_item(
    obj: UploadedObject,
    *,
    error_type: str,
    error_message: str,
    endpoint_name: str,
    request_id: str,
    timings_ms: dict[str, float],
    predicted_at: str | None = None,
) -> dict[str, Any]:
    item = _common(obj, STATUS_FAILED, endpoint_name, request_id, timings_ms, predicted_at)
    item.update(error_type=error_type, error_message=bounded_message(error_message))
    return item


def bounded_message(message: str, limit: int = MAX_ERROR_MESSAGE) -> str:
    """At most ``limit`` characters: a model's or service's message can be arbitrarily long, and an
    item over DynamoDB's 400 KB would be rejected, leaving the object with no item at all."""
    if len(message) <= limit:
        return message
    marker = f"... [{len(message)} characters, truncated]"
    return message[: limit - len(marker)] + marker


def put_if_newer(table: Any, item: dict[str, Any]) -> bool:
    """Write ``item`` unless the table holds a result from the same or a newer event.

    A reprocessed object's item (``reprocess_id``) is written only over the result of its own
    upload. Returns False when the condition fails (a duplicate or stale delivery, a reprocess
    overtaken by a newer upload); other errors propagate to the caller, who classifies them.
    """
    condition = SAME_UPLOAD_ONLY if item.get("reprocess_id") else NEWER_ONLY
    try:
        table.put_item(
            Item=item,
            ConditionExpression=condition,
            ExpressionAttributeNames={"#key": "key", "#sequencer": "sequencer"},
            ExpressionAttributeValues={":sequencer": item["sequencer"]},
        )
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
            return False
        raise
    return True
