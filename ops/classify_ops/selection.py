"""Which table items a reprocess run classifies again, as one DynamoDB request each.

    all         Scan of the whole table
    prefix P    Query: ``bucket = the stack's bucket AND begins_with(key, P)`` (the table's key)
    breed B     Query of the ``by_breed`` index (PREDICTED items of that breed)
    date range  Scan filtered on ``event_time``, the upload's time: ``since <= t < until``

Only the fields a reprocess request carries are read (``PROJECTED``), plus ``reprocess_id`` so a
resumed run skips what it already did, and the item's ``breed`` and ``model`` so that ``--wait``
can tell what the new model changed. ``table_request`` is pure; ``select_items`` runs it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from boto3.dynamodb.types import TypeDeserializer

from classify_upload.table import BY_BREED_INDEX

ALL, PREFIX, BREED, DATE_RANGE = "all", "prefix", "breed", "date range"
# What a reprocess request needs of an item, the run that last reprocessed it, and its result
# before this run (``completion`` compares it with the result after).
PROJECTED = (
    "bucket",
    "key",
    "version_id",
    "sequencer",
    "etag",
    "size",
    "event_time",
    "reprocess_id",
    "breed",
    "model",
)
_NAMES = {f"#{name}": name for name in PROJECTED}  # "bucket", "key", "size" are reserved words
_PROJECTION = ", ".join(_NAMES)


@dataclass(frozen=True)
class Selection:
    """One of the four ways to choose items (``kind``), with its value(s)."""

    kind: str
    value: str | None = None  # the prefix or the breed
    since: str | None = None  # normalised times (``utc_text``), inclusive
    until: str | None = None  # exclusive

    def describe(self) -> str:
        if self.kind == ALL:
            return "every item"
        if self.kind == DATE_RANGE:
            return f"uploads from {self.since or 'the start'} to {self.until or 'now'}"
        return f"{self.kind} {self.value!r}"


def utc_text(moment: datetime) -> str:
    """The form S3's ``eventTime`` (and so the item's ``event_time``) has, so text order is time
    order: ``2024-05-01T12:00:00.000Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def parse_time(text: str) -> str:
    """An ISO-8601 date or time (UTC unless it says otherwise) in ``utc_text`` form.

    Raises ``ValueError`` for anything else (argparse turns it into a usage error).
    """
    moment = datetime.fromisoformat(text.strip())
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return utc_text(moment)


def table_request(selection: Selection, table: str, bucket: str) -> tuple[str, dict[str, Any]]:
    """(``"scan"`` or ``"query"``, its parameters in DynamoDB's low-level form)."""
    request: dict[str, Any] = {
        "TableName": table,
        "ProjectionExpression": _PROJECTION,
        "ExpressionAttributeNames": dict(_NAMES),
    }
    if selection.kind == ALL:
        return "scan", request
    if selection.kind == PREFIX:
        request["KeyConditionExpression"] = "#bucket = :bucket AND begins_with(#key, :prefix)"
        request["ExpressionAttributeValues"] = {
            ":bucket": {"S": bucket},
            ":prefix": {"S": selection.value or ""},
        }
        return "query", request
    if selection.kind == BREED:
        request["IndexName"] = BY_BREED_INDEX
        request["KeyConditionExpression"] = "#breed = :breed"
        request["ExpressionAttributeValues"] = {":breed": {"S": selection.value or ""}}
        return "query", request
    if selection.kind == DATE_RANGE:
        conditions, values = [], {}
        if selection.since:
            conditions.append("#event_time >= :since")
            values[":since"] = {"S": selection.since}
        if selection.until:
            conditions.append("#event_time < :until")
            values[":until"] = {"S": selection.until}
        if not conditions:
            raise ValueError("a date range needs --since, --until or both")
        request["FilterExpression"] = " AND ".join(conditions)
        request["ExpressionAttributeValues"] = values
        return "scan", request
    raise ValueError(f"unknown selection {selection.kind!r}")


def select_items(dynamodb: Any, selection: Selection, table: str, bucket: str) -> Iterator[dict]:
    """Every selected item (plain Python values: numbers are ``Decimal``), page by page."""
    operation, request = table_request(selection, table, bucket)
    deserializer = TypeDeserializer()
    for page in dynamodb.get_paginator(operation).paginate(**request):
        for item in page.get("Items", []):
            yield {name: deserializer.deserialize(value) for name, value in item.items()}
