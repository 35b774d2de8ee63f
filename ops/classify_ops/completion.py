"""``reprocess --wait``: read the selected items back until this run has classified them.

The function marks an item it classified again with the run's ``reprocess_id``. It writes nothing
for a request whose object is no longer that version (overwritten or deleted in S3 since), nor
over an item that a newer upload replaced; so an item either carries the run id (done), shows a
newer upload's sequencer or is gone (superseded: nothing to wait for), or stays as it was. The
last kind is counted as not done once nothing has changed for the idle timeout.

For each item done, the breed it had when selected is compared with the one it has now
(``Changes``): how many kept their breed, how many changed and from what to what, and which model
versions classified them before and after. An item without a breed (``FAILED``) counts as
``NO_BREED``, one without a model's identity as ``NO_MODEL``.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, TextIO

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from classify_ops.progress import Progress

DONE, SUPERSEDED, PENDING = "done", "superseded", "pending"
BATCH_GET = 100  # BatchGetItem's limit
_NAMES = {
    "#bucket": "bucket",
    "#key": "key",
    "#sequencer": "sequencer",
    "#run": "reprocess_id",
    "#breed": "breed",
    "#model": "model",
}
NO_BREED, NO_MODEL = "(no breed)", "(no model)"
TOP_CHANGES = 5  # the report lists this many of the most frequent "old → new" changes


def item_state(sent: dict[str, Any], current: dict[str, Any] | None, run_id: str) -> str:
    """Where one item stands: ``sent`` as it was selected, ``current`` as it is now."""
    if current is None:
        return SUPERSEDED  # the item was deleted
    if current.get("reprocess_id") == run_id:
        return DONE
    if current.get("sequencer") != sent.get("sequencer"):
        return SUPERSEDED  # a newer upload's result replaced it
    return PENDING


def breed_of(item: dict[str, Any]) -> str:
    return item.get("breed") or NO_BREED


def model_of(item: dict[str, Any]) -> str:
    model = item.get("model")
    return str(model.get("version") or NO_MODEL) if isinstance(model, dict) else NO_MODEL


@dataclass
class Changes:
    """What a run did to the items it classified again: their breeds and models."""

    kept: int = 0
    breeds: Counter[tuple[str, str]] = field(default_factory=Counter)  # (old, new): items
    models_before: Counter[str] = field(default_factory=Counter)  # model version: items
    models_after: Counter[str] = field(default_factory=Counter)

    @property
    def changed(self) -> int:
        return sum(self.breeds.values())

    def add(self, before: dict[str, Any], after: dict[str, Any]) -> None:
        old, new = breed_of(before), breed_of(after)
        if old == new:
            self.kept += 1
        else:
            self.breeds[(old, new)] += 1
        self.models_before[model_of(before)] += 1
        self.models_after[model_of(after)] += 1

    def top(self, n: int = TOP_CHANGES) -> list[tuple[str, str, int]]:
        """The ``n`` most frequent changes, ties in name order: (old, new, items)."""
        ranked = sorted(self.breeds.items(), key=lambda change: (-change[1], change[0]))
        return [(old, new, count) for (old, new), count in ranked[:n]]

    def report(self, n: int = TOP_CHANGES) -> list[str]:
        """``models: before → after``, ``breeds: C of D changed, K kept``, then one line per top
        change, then how many other kinds of change there were."""
        done = self.kept + self.changed
        lines = [
            f"models: {_counts(self.models_before)} → {_counts(self.models_after)}",
            f"breeds: {self.changed} of {done} changed, {self.kept} kept",
        ]
        lines += [f"  {old} → {new}: {count}" for old, new, count in self.top(n)]
        others = len(self.breeds) - n
        if others > 0:
            rest = self.changed - sum(count for _, _, count in self.top(n))
            lines.append(f"  and {others} other changes ({rest} items)")
        return lines


def _counts(counter: Counter[str]) -> str:
    """``v2: 10, v1: 2``: most items first."""
    ranked = sorted(counter.items(), key=lambda entry: (-entry[1], entry[0]))
    return ", ".join(f"{name}: {count}" for name, count in ranked)


@dataclass
class Outcome:
    total: int
    done: int = 0
    superseded: int = 0
    remaining: list[dict[str, Any]] = field(default_factory=list)
    idle_s: float = 0.0
    changes: Changes = field(default_factory=Changes)


def current_items(
    dynamodb: Any, table: str, keys: list[tuple[str, str]]
) -> dict[tuple[str, str], dict[str, Any]] | None:
    """The items now stored under ``keys`` (at most ``BATCH_GET``); None if DynamoDB left some
    unread (throttled): this poll then tells nothing about them, the next one will."""
    serializer, deserializer = TypeSerializer(), TypeDeserializer()
    response = dynamodb.batch_get_item(
        RequestItems={
            table: {
                "Keys": [
                    {"bucket": serializer.serialize(b), "key": serializer.serialize(k)}
                    for b, k in keys
                ],
                "ConsistentRead": True,
                "ProjectionExpression": ", ".join(_NAMES),
                "ExpressionAttributeNames": _NAMES,
            }
        }
    )
    if response.get("UnprocessedKeys", {}).get(table):
        return None
    found = {}
    for raw in response.get("Responses", {}).get(table, []):
        item = {name: deserializer.deserialize(value) for name, value in raw.items()}
        found[(item["bucket"], item["key"])] = item
    return found


def wait_for_run(
    dynamodb: Any,
    table: str,
    selected: list[dict[str, Any]],
    run_id: str,
    *,
    idle_timeout_s: float,
    poll_interval_s: float,
    out: TextIO,
) -> Outcome:
    """Poll until every selected item is done or superseded, or nothing changed for
    ``idle_timeout_s``; shows "classified N/M" (superseded ones count as finished)."""
    pending = {(i["bucket"], i["key"]): i for i in selected}
    outcome = Outcome(total=len(selected))
    progress = Progress("classified", outcome.total, out)
    last_change = time.monotonic()
    while pending:
        changed = _poll(dynamodb, table, pending, run_id, outcome)
        progress.update(outcome.done + outcome.superseded)
        if changed:
            last_change = time.monotonic()
        if not pending or time.monotonic() - last_change >= idle_timeout_s:
            break
        time.sleep(poll_interval_s)
    progress.close_line()
    outcome.remaining = list(pending.values())
    outcome.idle_s = time.monotonic() - last_change
    return outcome


def _poll(
    dynamodb: Any,
    table: str,
    pending: dict[tuple[str, str], dict[str, Any]],
    run_id: str,
    outcome: Outcome,
) -> bool:
    """One pass over the pending items; moves finished ones out of ``pending``."""
    changed = False
    keys = list(pending)
    for start in range(0, len(keys), BATCH_GET):
        chunk = keys[start : start + BATCH_GET]
        found = current_items(dynamodb, table, chunk)
        if found is None:
            continue
        for key in chunk:
            state = item_state(pending[key], found.get(key), run_id)
            if state == PENDING:
                continue
            sent = pending.pop(key)
            changed = True
            if state == DONE:
                outcome.done += 1
                outcome.changes.add(sent, found[key])
            else:
                outcome.superseded += 1
    return changed
