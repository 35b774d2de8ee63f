"""The reprocess requests to send.

The reprocess requests to send: one message per object, built by the function's own
``classify_upload.events.reprocess_body`` (its reader, ``reprocess_request``, sits beside it).

Every field but ``run_id`` is copied from the table item exactly as stored (``key`` decoded,
``sequencer`` padded): the function classifies the object only if it is still that version and
writes only over that same upload's item (``classify_upload.events.reprocess_request`` reads it).
A request names ``version_id`` or ``etag`` (the function drops one with neither: it could not tell
that version from a newer one), so an item with neither is refused here, before anything is sent.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from classify_ops.errors import OpsError
from classify_upload.events import reprocess_body

SQS_BATCH = 10  # SendMessageBatch's limit
RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,79}$")

T = TypeVar("T")


def new_run_id(now: datetime | None = None) -> str:
    """``rp-YYYYMMDDTHHMMSSZ``: sorts by start time, and reads as one."""
    return "rp-" + (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def valid_run_id(text: str) -> str:
    """A run id fit for a shell command and a log line; ``ValueError`` otherwise."""
    if not RUN_ID_PATTERN.match(text):
        raise ValueError(
            "letters, digits and . _ : - (at most 80, starting with a letter or digit)"
        )
    return text


def reprocess_message(item: dict[str, Any], run_id: str) -> dict[str, Any]:
    """The request for one item (as ``selection.select_items`` yields it).

    Raises ``OpsError`` for an item with neither a version id nor an ETag.
    """
    if not item.get("version_id") and not item.get("etag"):
        raise OpsError(
            f"item {item.get('bucket')}/{item.get('key')} has neither a version id nor an ETag: "
            "the function would drop its reprocess request (upload the object again instead)"
        )
    return reprocess_body(
        run_id=run_id,
        bucket=item["bucket"],
        key=item["key"],
        version_id=item.get("version_id") or None,
        sequencer=item["sequencer"],
        etag=item.get("etag") or "",
        size=int(item.get("size") or 0),
        event_time=item.get("event_time", ""),
    )


def is_done(item: dict[str, Any], run_id: str) -> bool:
    """Already classified again by this run (a resumed run skips it)."""
    return item.get("reprocess_id") == run_id


def batch_entries(items: Sequence[dict[str, Any]], run_id: str) -> list[dict[str, str]]:
    """``SendMessageBatch`` entries for at most ``SQS_BATCH`` items (Id: position in the batch)."""
    return [
        {"Id": str(i), "MessageBody": json.dumps(reprocess_message(item, run_id))}
        for i, item in enumerate(items)
    ]


def chunks(items: Sequence[T], size: int = SQS_BATCH) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
