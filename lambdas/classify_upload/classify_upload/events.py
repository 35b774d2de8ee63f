"""Which objects a queue message is about: pure functions over the message body.

The upload queue carries three kinds of body: an S3 notification (``{"Records": [...]}``, as S3
sends it), S3's ``s3:TestEvent`` (sent when the notification is configured), and a reprocess
request that ``classify_ops reprocess`` sends after a model update (one object per message)::

    {"reprocess": {"run_id", "bucket", "key", "version_id", "sequencer", "etag", "size",
                   "event_time"}}

``key`` is decoded and ``sequencer`` is the padded one, both exactly as the table item holds them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from aws_lambda_powertools.utilities.data_classes import S3Event

# Sequencers are hex strings of varying length; S3's documentation says to right-pad the shorter
# one with zeros and compare lexicographically. A fixed width makes DynamoDB's string `<` do that.
SEQUENCER_WIDTH = 64


@dataclass(frozen=True)
class UploadedObject:
    """One ``ObjectCreated`` record, key already decoded."""

    bucket: str
    key: str
    size: int
    etag: str
    version_id: str | None
    sequencer: str
    event_time: str
    event_name: str
    # Set for a reprocess request: the run that asked for it. The object is then classified only
    # if it is still this version, and the result replaces only the item of this same version.
    reprocess_id: str | None = None


def is_test_event(event: dict[str, Any]) -> bool:
    """S3 sends ``s3:TestEvent`` (no ``Records``) when a notification is configured."""
    return event.get("Event") == "s3:TestEvent" and "Records" not in event


def pad_sequencer(sequencer: str | None) -> str:
    """Comparable form of an event's sequencer (missing → lowest possible value)."""
    return (sequencer or "").upper().ljust(SEQUENCER_WIDTH, "0")


def is_under_prefix(key: str, prefix: str) -> bool:
    return key.startswith(prefix)


def is_folder_marker(key: str, size: int) -> bool:
    """The zero-byte ``name/`` object that the S3 console's "Create folder" writes: no upload."""
    return key.endswith("/") and size == 0


def uploaded_objects(event: dict[str, Any]) -> list[UploadedObject]:
    """Every ``ObjectCreated`` record of an S3 notification, keys decoded with ``unquote_plus``.

    Powertools' ``record.s3.get_object.key`` is the raw, URL-encoded key: decoding it here is what
    makes keys with spaces, ``+`` or non-ASCII characters reach ``GetObject`` intact.
    """
    if is_test_event(event):
        return []
    objects = []
    for record in S3Event(event).records:
        if not record.event_name.startswith("ObjectCreated:"):
            continue
        obj = record.s3.get_object
        objects.append(
            UploadedObject(
                bucket=record.s3.bucket.name,
                key=unquote_plus(obj.key),
                size=int(obj.get("size", 0) or 0),
                etag=obj.etag,
                version_id=obj.version_id,
                sequencer=pad_sequencer(obj.get("sequencer")),
                event_time=record.get("eventTime", ""),
                event_name=record.event_name,
            )
        )
    return objects


REPROCESS_EVENT_NAME = "Reprocess"


def reprocess_request(body: dict[str, Any]) -> UploadedObject | None:
    """The object a reprocess request names, or None when ``body`` is not one.

    Raises ``ValueError`` for a request missing a field: a malformed request is the sender's bug.
    """
    request = body.get("reprocess") if isinstance(body, dict) else None
    if not isinstance(request, dict):
        return None
    try:
        return UploadedObject(
            bucket=str(request["bucket"]),
            key=str(request["key"]),
            size=int(request.get("size") or 0),
            etag=str(request.get("etag") or ""),
            version_id=request.get("version_id") or None,
            sequencer=pad_sequencer(str(request["sequencer"])),
            event_time=str(request.get("event_time") or ""),
            event_name=REPROCESS_EVENT_NAME,
            reprocess_id=str(request["run_id"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"malformed reprocess request: {exc!r}") from exc
