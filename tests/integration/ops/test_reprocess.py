"""``python -m classify_ops reprocess``: table items selected four ways, one reprocess request per
item on the upload queue in the function's contract shape, resumable by run id, and ``--wait``
following the function's marks in the table."""

from __future__ import annotations

import json
import re
import shlex
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from ops_testkit import DeployedStack, bodies, drain, upload_item

from classify_ops import cli
from classify_ops import reprocess as reprocess_module


def item_set(stack: DeployedStack) -> list[dict[str, Any]]:
    """Six uploads: two prefixes that share a start, two breeds, a FAILED one, an unversioned
    key with a space, a plus and non-ASCII letters, event times on a range's edges."""
    b = stack.bucket
    return [
        upload_item(
            b, "uploads/2024/a.jpg", n=0, breed="Beagle", event_time="2024-03-01T10:00:00.000Z"
        ),
        upload_item(
            b, "uploads/2024/b.jpg", n=1, breed="Pug", event_time="2024-04-15T00:00:00.000Z"
        ),
        upload_item(
            b, "uploads/2025/c.jpg", n=2, breed="Beagle", event_time="2025-01-02T08:00:00.000Z"
        ),
        upload_item(
            b, "uploads/2025/d.jpg", n=3, breed=None, event_time="2025-02-01T00:00:00.000Z"
        ),
        upload_item(
            b, "uploads/2024x/e.jpg", n=4, breed="Beagle", event_time="2024-05-01T00:00:00.000Z"
        ),
        {
            **upload_item(
                b,
                "uploads/2024/ünï dog+1.jpg",
                n=5,
                breed="Pug",
                event_time="2024-05-31T23:59:59.999Z",
            ),
            "version_id": None,
        },
    ]


def seed(stack: DeployedStack, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    with stack.table.batch_writer() as batch:
        for item in items:
            batch.put_item(Item={k: v for k, v in item.items() if v is not None})
    return items


def expected_request(item: dict[str, Any], run_id: str) -> dict[str, Any]:
    """The contract's shape, written out here rather than built by the code under test."""
    return {
        "reprocess": {
            "run_id": run_id,
            "bucket": item["bucket"],
            "key": item["key"],
            "version_id": item.get("version_id"),
            "sequencer": item["sequencer"],
            "etag": item["etag"],
            "size": item["size"],
            "event_time": item["event_time"],
        }
    }


def run_id_of(out: str) -> str:
    return re.search(r"reprocess run (\S+):", out).group(1)


def sent(stack: DeployedStack) -> list[dict[str, Any]]:
    return sorted(
        bodies(drain(stack.client("sqs"), stack.upload_queue)), key=lambda b: b["reprocess"]["key"]
    )


@pytest.mark.parametrize(
    ("selection", "chosen"),
    [
        (["--prefix", "uploads/2024/"], [0, 1, 5]),
        (["--breed", "Beagle"], [0, 2, 4]),
        (["--since", "2024-04-15", "--until", "2024-06-01T00:00:00Z"], [1, 4, 5]),
        (["--all"], [0, 1, 2, 3, 4, 5]),
    ],
    ids=["prefix", "breed", "date-range", "all"],
)
def test_each_selection_sends_one_request_per_chosen_item_in_the_contract_shape(
    clean, ops, selection, chosen
):
    items = seed(clean, item_set(clean))

    status, out, err = ops("reprocess", *selection)

    assert (status, err) == (0, "")
    run_id = run_id_of(out)
    assert re.fullmatch(r"rp-\d{8}T\d{6}Z", run_id)
    assert f"--run-id {run_id}" in out  # the resume command, printed before anything is sent
    assert f"selected {len(chosen)} items, 0 already done in this run: sending {len(chosen)}" in out
    assert f"sent {len(chosen)}/{len(chosen)}" in out
    expected = sorted(
        (expected_request(items[i], run_id) for i in chosen), key=lambda b: b["reprocess"]["key"]
    )
    assert sent(clean) == expected


def test_nothing_selected_sends_nothing(clean, ops):
    seed(clean, item_set(clean))

    status, out, _ = ops("reprocess", "--breed", "Chihuahua")

    assert status == 0
    assert "nothing to reprocess: no item matches breed 'Chihuahua'" in out
    assert sent(clean) == []


def test_items_already_done_by_the_run_are_skipped(clean, ops):
    items = item_set(clean)
    for item in items[:2]:
        item["reprocess_id"] = "rp-model-v2"
    items[2]["reprocess_id"] = "rp-an-older-run"
    seed(clean, items)

    status, out, _ = ops("reprocess", "--all", "--run-id", "rp-model-v2")

    assert status == 0
    assert "selected 6 items, 2 already done in this run: sending 4" in out
    assert [b["reprocess"]["key"] for b in sent(clean)] == sorted(i["key"] for i in items[2:])


def mark_done(
    stack: DeployedStack, requests: list[dict[str, Any]], breeds: dict[str, str] | None = None
) -> None:
    """What the function does for a request whose object is still that version: with ``breeds``
    (key: breed), the new model's result too, by model version "v2"; without, the run's mark."""
    for body in requests:
        request = body["reprocess"]
        update = "SET reprocess_id = :run, reprocessed_at = :now"
        values = {
            ":run": request["run_id"],
            ":now": "2024-07-01T00:00:00.000Z",
            ":sequencer": request["sequencer"],
        }
        if breeds is not None:
            update += ", breed = :breed, #model = :model, #status = :predicted"
            values[":breed"] = breeds[request["key"]]
            values[":model"] = {"version": "v2"}
            values[":predicted"] = "PREDICTED"
        stack.table.update_item(
            Key={"bucket": request["bucket"], "key": request["key"]},
            UpdateExpression=update,
            ConditionExpression="#sequencer = :sequencer",
            ExpressionAttributeNames={
                "#sequencer": "sequencer",
                **({"#model": "model", "#status": "status"} if breeds is not None else {}),
            },
            ExpressionAttributeValues=values,
        )


def test_an_interrupted_run_resumed_with_its_command_sends_only_what_is_left(
    clean, ops, monkeypatch, capsys
):
    seed(clean, [upload_item(clean.bucket, f"uploads/many/{i:02}.jpg", n=i) for i in range(25)])
    real_send = reprocess_module.send_batch
    calls = []

    def interrupted_on_third_batch(*args: Any) -> None:
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        real_send(*args)

    monkeypatch.setattr(reprocess_module, "send_batch", interrupted_on_third_batch)
    status, out, err = ops("reprocess", "--prefix", "uploads/many/")
    monkeypatch.setattr(reprocess_module, "send_batch", real_send)

    assert status == 130
    assert len(err.strip().splitlines()) == 1
    assert "interrupted: interrupted after sending 20/25; resume with: " in err
    first = sent(clean)
    assert len(first) == 20
    mark_done(clean, first)  # the function worked through what was sent

    resume = shlex.split(err.split("resume with: ", 1)[1])
    assert resume[1:3] == ["-m", "classify_ops"]
    assert resume[-2:] == ["--run-id", run_id_of(out)]
    capsys.readouterr()
    assert cli.main(resume[3:]) == 0
    out = capsys.readouterr().out

    assert "selected 25 items, 20 already done in this run: sending 5" in out
    rest = sent(clean)
    assert {b["reprocess"]["key"] for b in rest} == {
        f"uploads/many/{i:02}.jpg" for i in range(20, 25)
    }
    assert {b["reprocess"]["run_id"] for b in first + rest} == {run_id_of(out)}


class FunctionStandIn:
    """Consumes the upload queue as the function would, per key: classify again (mark the run,
    and write the new model's breed), find a newer upload's item (a newer sequencer), or find the
    object overwritten (write nothing)."""

    def __init__(
        self,
        stack: DeployedStack,
        superseded: set[str],
        overwritten: set[str],
        breeds: dict[str, str],
    ) -> None:
        self.stack = stack
        self.superseded = superseded
        self.overwritten = overwritten
        self.breeds = breeds
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        sqs = self.stack.client("sqs")
        while not self.stop.is_set():
            messages = sqs.receive_message(
                QueueUrl=self.stack.upload_queue, MaxNumberOfMessages=10, WaitTimeSeconds=1
            ).get("Messages", [])
            for message in messages:
                self._handle(json.loads(message["Body"]))
                sqs.delete_message(
                    QueueUrl=self.stack.upload_queue, ReceiptHandle=message["ReceiptHandle"]
                )

    def _handle(self, body: dict[str, Any]) -> None:
        key = body["reprocess"]["key"]
        if key in self.superseded:
            self.stack.table.update_item(
                Key={"bucket": body["reprocess"]["bucket"], "key": key},
                UpdateExpression="SET #sequencer = :newer",
                ExpressionAttributeNames={"#sequencer": "sequencer"},
                ExpressionAttributeValues={":newer": "F" * 64},
            )
        elif key not in self.overwritten:
            mark_done(self.stack, [body], self.breeds)


@pytest.fixture
def function_stand_in(clean) -> Iterator[Any]:
    started: list[FunctionStandIn] = []

    def start(
        breeds: dict[str, str],
        superseded: set[str] = frozenset(),
        overwritten: set[str] = frozenset(),
    ) -> None:
        stand_in = FunctionStandIn(clean, set(superseded), set(overwritten), breeds)
        stand_in.thread.start()
        started.append(stand_in)

    yield start
    for stand_in in started:
        stand_in.stop.set()
        stand_in.thread.join(timeout=5)


def by_v1(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The items as model version "v1" classified them (a FAILED one carries no model)."""
    return [{**i, "model": {"version": "v1"}} if i.get("breed") else i for i in items]


def new_breeds(items: list[dict[str, Any]], *changes: tuple[int, str]) -> dict[str, str]:
    """The new model's breed per key: the old one, except for ``(index, breed)`` ``changes``."""
    breeds = {i["key"]: i.get("breed") or "Beagle" for i in items}
    breeds.update({items[n]["key"]: breed for n, breed in changes})
    return breeds


def report_of(out: str, run_id: str) -> list[str]:
    """The lines after the run's summary line."""
    lines = out.strip().splitlines()
    at = next(n for n, line in enumerate(lines) if line.startswith(f"reprocess {run_id}: "))
    return lines[at:]


def test_wait_follows_every_item_until_the_function_marked_it_then_says_what_changed(
    clean, ops, function_stand_in
):
    items = seed(clean, by_v1(item_set(clean)))
    # a and c: Beagle -> Pug; d was FAILED and is now a Beagle; b, e and f keep their breed.
    function_stand_in(new_breeds(items, (0, "Pug"), (2, "Pug")))

    status, out, _ = ops(
        "reprocess", "--all", "--wait", "--poll-interval", "0.1", "--wait-timeout", "20"
    )

    assert status == 0
    assert report_of(out, run_id_of(out)) == [
        f"reprocess {run_id_of(out)}: 6/6 classified again",
        "models: v1: 5, (no model): 1 → v2: 6",
        "breeds: 3 of 6 changed, 3 kept",
        "  Beagle → Pug: 2",
        "  (no breed) → Beagle: 1",
    ]


def test_wait_tells_superseded_items_and_those_still_not_done_with_why(
    clean, ops, function_stand_in
):
    items = seed(clean, by_v1(item_set(clean)))
    function_stand_in(
        new_breeds(items, (0, "Pug"), (4, "Pug")),
        superseded={items[1]["key"]},
        overwritten={items[2]["key"]},
    )

    # The timeout runs from the last progress: six times the stand-in's 1 s long poll, so the
    # four it classifies are all seen on a loaded machine too; only the overwritten one waits.
    status, out, _ = ops(
        "reprocess", "--all", "--wait", "--poll-interval", "0.1", "--wait-timeout", "6"
    )

    assert status == 1
    summary, *report = report_of(out, run_id_of(out))
    assert summary.startswith(f"reprocess {run_id_of(out)}: 4/6 classified again, 1 superseded")
    assert (
        ", 1 not done after 6 s without progress: they may have been overwritten or deleted"
        in summary
    )
    assert summary.endswith(f"--run-id {run_id_of(out)}")
    # Only the four classified again are compared: a and e changed, d (FAILED) and f did not.
    assert report == [
        "models: v1: 3, (no model): 1 → v2: 4",
        "breeds: 3 of 4 changed, 1 kept",
        "  Beagle → Pug: 2",
        "  (no breed) → Beagle: 1",
    ]
