"""Which objects a queue message is about: pure functions over the message body.

The upload queue carries three kinds of body: an S3 notification (``{"Records": [...]}``, as S3
sends it), S3's ``s3:TestEvent`` (sent when the notification is configured), and a reprocess
request that ``classify_ops reprocess`` sends after a model update (one object per message)::

    {"reprocess": {"run_id", "bucket", "key", "version_id", "sequencer", "etag", "size",
                   "event_time"}}

``key`` is decoded and ``sequencer`` is the padded one, both exactly as the table item holds them;
``version_id`` or ``etag`` (or both) must be set, since they are how the function tells that the
object is still the version the request names.

Anything else names no upload and raises ``MessageDropped`` (the handler logs, counts and consumes
it): a body that is not one of the three, an S3 event without records or with a record that is not
S3's shape, a reprocess request missing a field, and a sequencer that S3 could not have written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from classify_upload.errors import MessageDropped

# Sequencers are hex strings of varying length; S3's documentation says to right-pad the shorter
# one with zeros and compare lexicographically. A fixed width makes DynamoDB's string `<` do that.
SEQUENCER_WIDTH = 64
# What S3 writes: hex digits (upper-case in practice; case is ignored when compared), at most as
# long as the padding. Anything else could sort above every real sequencer ("ZZZ", a longer
# string) and freeze the item against the object's genuine newer uploads.
SEQUENCER_PATTERN = re.compile(f"[0-9A-Fa-f]{{1,{SEQUENCER_WIDTH}}}")
# S3 keys are at most 1024 bytes of UTF-8 (also DynamoDB's limit for the table's sort key).
MAX_KEY_BYTES = 1024


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


def is_test_event(event: Any) -> bool:
    """S3 sends ``s3:TestEvent`` (no ``Records``) when a notification is configured."""
    if not isinstance(event, dict):
        return False
    return event.get("Event") == "s3:TestEvent" and "Records" not in event


def pad_sequencer(sequencer: str | None) -> str:
    """Comparable form of an event's sequencer (missing → lowest possible value)."""
    return (sequencer or "").upper().ljust(SEQUENCER_WIDTH, "0")


def valid_sequencer(sequencer: Any) -> str:
    """The padded form of a sequencer S3 could have written; ``MessageDropped`` for any other."""
    if not isinstance(sequencer, str) or not SEQUENCER_PATTERN.fullmatch(sequencer):
        shown = repr(sequencer)[:80]
        raise MessageDropped(
            f"sequencer {shown} is not 1 to {SEQUENCER_WIDTH} hex digits, as S3 writes them"
        )
    return pad_sequencer(sequencer)


def is_under_prefix(key: str, prefix: str) -> bool:
    return key.startswith(prefix)


def is_folder_marker(key: str, size: int) -> bool:
    """The zero-byte ``name/`` object that the S3 console's "Create folder" writes: no upload."""
    return key.endswith("/") and size == 0


def uploaded_objects(event: dict[str, Any]) -> list[UploadedObject]:
    """Every ``ObjectCreated`` record of an S3 notification, keys decoded with ``unquote_plus``.

    The raw key is URL-encoded: decoding it here is what makes keys with spaces, ``+`` or
    non-ASCII characters reach ``GetObject`` intact. Raises ``MessageDropped`` for a body without
    records, or with a record S3 could not have written (then none of its records is trusted).
    """
    if is_test_event(event):
        return []
    records = event.get("Records") if isinstance(event, dict) else None
    if not isinstance(records, list) or not records:
        raise MessageDropped("neither an S3 event with records nor a reprocess request")
    objects = []
    for index, record in enumerate(records):
        try:
            obj = _created_object(record)
        except MessageDropped as exc:
            raise MessageDropped(f"record {index}: {exc.reason}") from None
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
            raise MessageDropped(f"record {index} is not shaped as S3 writes it: {exc!r}") from None
        if obj is not None:
            objects.append(obj)
    return objects


def _created_object(record: dict[str, Any]) -> UploadedObject | None:
    """One record → its object; None for an event that creates nothing (``ObjectRemoved:*``)."""
    event_name = record["eventName"]
    if not isinstance(event_name, str):
        raise TypeError(f"eventName is {type(event_name).__name__}")
    if not event_name.startswith("ObjectCreated:"):
        return None
    s3 = record["s3"]
    obj = s3["object"]
    version_id = obj.get("versionId")
    return UploadedObject(
        bucket=_text(s3["bucket"]["name"], "bucket name"),
        key=_object_key(unquote_plus(_text(obj["key"], "key"))),
        size=_size(obj.get("size")),
        etag=_text(obj.get("eTag") or "", "eTag", empty=True),
        version_id=_text(version_id, "versionId") if version_id else None,
        sequencer=valid_sequencer(obj.get("sequencer")),
        event_time=_text(record.get("eventTime") or "", "eventTime", empty=True),
        event_name=event_name,
    )


def _text(value: Any, name: str, *, empty: bool = False) -> str:
    if not isinstance(value, str) or not (value or empty):
        raise MessageDropped(f"{name} is {value!r:.80}, not a string S3 could have written")
    return value


def _object_key(key: str) -> str:
    if not key or len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise MessageDropped(f"a key of {len(key)} characters; S3 keys are 1 to 1024 bytes")
    return key


def _size(value: Any) -> int:
    size = int(value or 0)
    if size < 0 or isinstance(value, bool):
        raise MessageDropped(f"size {value!r:.80} is not a byte count")
    return size


REPROCESS_EVENT_NAME = "Reprocess"
REPROCESS = "reprocess"  # the body's one key


def reprocess_body(
    *,
    run_id: str,
    bucket: str,
    key: str,
    version_id: str | None,
    sequencer: str,
    etag: str,
    size: int,
    event_time: str,
) -> dict[str, Any]:
    """The reprocess request ``reprocess_request`` reads, for ``classify_ops`` to send: the
    fields as the table item holds them (``key`` decoded, ``sequencer`` padded)."""
    return {
        REPROCESS: {
            "run_id": run_id,
            "bucket": bucket,
            "key": key,
            "version_id": version_id or None,
            "sequencer": sequencer,
            "etag": etag or "",
            "size": int(size),
            "event_time": event_time,
        }
    }


def reprocess_request(body: dict[str, Any]) -> UploadedObject | None:
    """The object a reprocess request names, or None when ``body`` is not one.

    Raises ``MessageDropped`` ("malformed reprocess request: ...") for a request missing a field,
    or naming neither a version id nor an ETag: the function could not tell the object it reads
    from a newer one, so it will not classify it.
    """
    request = body.get(REPROCESS) if isinstance(body, dict) else None
    if request is None:
        return None
    try:
        if not isinstance(request, dict):
            raise TypeError(f"the request is {type(request).__name__}, not an object")
        version_id = request.get("version_id") or None
        etag = request.get("etag") or ""
        if not version_id and not etag:
            raise ValueError("neither version_id nor etag names the version to classify")
        return UploadedObject(
            bucket=_text(request["bucket"], "bucket"),
            key=_object_key(_text(request["key"], "key")),
            size=_size(request.get("size")),
            etag=_text(etag, "etag", empty=True),
            version_id=_text(version_id, "version_id") if version_id else None,
            sequencer=valid_sequencer(request["sequencer"]),
            event_time=_text(request.get("event_time") or "", "event_time", empty=True),
            event_name=REPROCESS_EVENT_NAME,
            reprocess_id=_text(request["run_id"], "run_id"),
        )
    except (MessageDropped, KeyError, TypeError, ValueError, OverflowError) as exc:
        reason = exc.reason if isinstance(exc, MessageDropped) else repr(exc)
        raise MessageDropped(f"malformed reprocess request: {reason}") from None


def message_objects(body: Any) -> list[UploadedObject]:
    """The objects a message body names: a reprocess request's one, or an S3 event's records
    (none for S3's test event). ``MessageDropped`` when the body names no upload."""
    requested = reprocess_request(body)
    return [requested] if requested is not None else uploaded_objects(body)
