"""The operator commands' pure parts: which items a selection reads, the reprocess request's
shape (checked against the function's own reader), run ids, the resume command, the wait's
verdict per item, and the one-line errors."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from botocore.exceptions import ClientError, NoCredentialsError, NoRegionError

from classify_ops import cli, completion, messages, redrive, selection
from classify_ops.errors import describe
from classify_ops.selection import Selection, table_request
from classify_upload.events import pad_sequencer, reprocess_request
from classify_upload.table import BY_BREED_INDEX

ITEM = {
    "bucket": "uploads-bucket",
    "key": "uploads/my dog+1.jpg",
    "version_id": "3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY",
    "sequencer": pad_sequencer("0055AED6DCD90281E5"),
    "etag": "d41d8cd98f00b204e9800998ecf8427e",
    "size": Decimal("12345"),
    "event_time": "2024-05-01T12:00:00.123Z",
    "reprocess_id": "rp-20240101T000000Z",
}


# ---- selection ---------------------------------------------------------------------------------


def test_all_is_a_scan_of_the_table_reading_only_what_a_request_needs():
    operation, request = table_request(Selection(selection.ALL), "t", "b")
    assert operation == "scan"
    assert request["TableName"] == "t"
    read = {
        request["ExpressionAttributeNames"][n] for n in request["ProjectionExpression"].split(", ")
    }
    assert read == set(selection.PROJECTED)
    assert "FilterExpression" not in request and "IndexName" not in request


def test_a_prefix_is_a_query_on_the_tables_key_for_the_stacks_bucket():
    operation, request = table_request(Selection(selection.PREFIX, "uploads/2024/"), "t", "b")
    assert operation == "query"
    assert "IndexName" not in request
    assert request["KeyConditionExpression"] == "#bucket = :bucket AND begins_with(#key, :prefix)"
    assert request["ExpressionAttributeNames"]["#bucket"] == "bucket"
    assert request["ExpressionAttributeNames"]["#key"] == "key"
    assert request["ExpressionAttributeValues"] == {
        ":bucket": {"S": "b"},
        ":prefix": {"S": "uploads/2024/"},
    }


def test_a_breed_is_a_query_of_the_by_breed_index():
    operation, request = table_request(Selection(selection.BREED, "Beagle"), "t", "b")
    assert operation == "query"
    assert request["IndexName"] == BY_BREED_INDEX == "by_breed"
    assert request["KeyConditionExpression"] == "#breed = :breed"
    assert request["ExpressionAttributeNames"]["#breed"] == "breed"
    assert request["ExpressionAttributeValues"] == {":breed": {"S": "Beagle"}}


def test_a_date_range_filters_a_scan_on_the_uploads_event_time_since_inclusive_until_exclusive():
    since, until = "2024-05-01T00:00:00.000Z", "2024-06-01T00:00:00.000Z"
    operation, request = table_request(
        Selection(selection.DATE_RANGE, since=since, until=until), "t", "b"
    )
    assert operation == "scan"
    assert request["FilterExpression"] == "#event_time >= :since AND #event_time < :until"
    assert request["ExpressionAttributeNames"]["#event_time"] == "event_time"
    assert request["ExpressionAttributeValues"] == {":since": {"S": since}, ":until": {"S": until}}
    _, open_ended = table_request(Selection(selection.DATE_RANGE, since=since), "t", "b")
    assert open_ended["FilterExpression"] == "#event_time >= :since"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-05-01", "2024-05-01T00:00:00.000Z"),
        ("2024-05-01T12:30", "2024-05-01T12:30:00.000Z"),
        ("2024-05-01T12:30:00Z", "2024-05-01T12:30:00.000Z"),
        ("2024-05-01T14:30:00.5+02:00", "2024-05-01T12:30:00.500Z"),
    ],
)
def test_times_are_read_as_utc_in_the_form_s3_writes_event_time(text, expected):
    assert selection.parse_time(text) == expected


def test_a_time_that_is_not_iso_is_refused():
    with pytest.raises(ValueError):
        selection.parse_time("May 1st")


def parse(*argv: str):
    return cli.build_parser().parse_args(["reprocess", "--stack", "s", *argv])


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--all"], Selection(selection.ALL)),
        (["--prefix", "uploads/a"], Selection(selection.PREFIX, "uploads/a")),
        (["--breed", "Beagle"], Selection(selection.BREED, "Beagle")),
        (
            ["--since", "2024-05-01", "--until", "2024-05-02"],
            Selection(
                selection.DATE_RANGE,
                since="2024-05-01T00:00:00.000Z",
                until="2024-05-02T00:00:00.000Z",
            ),
        ),
        (
            ["--until", "2024-05-02"],
            Selection(selection.DATE_RANGE, until="2024-05-02T00:00:00.000Z"),
        ),
    ],
)
def test_the_command_line_names_exactly_one_selection(argv, expected):
    assert cli.selection_of(parse(*argv)) == expected


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["--all", "--breed", "Beagle"],
        ["--prefix", "a", "--since", "2024-01-01"],
        ["--since", "2024-05-02", "--until", "2024-05-01"],
    ],
)
def test_no_selection_two_selections_or_an_empty_range_are_usage_errors(argv):
    with pytest.raises(ValueError):
        cli.selection_of(parse(*argv))


def test_a_usage_error_exits_2_with_argparses_message(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["reprocess", "--stack", "s"])
    assert exit_.value.code == 2
    assert (
        "choose exactly one of --all, --prefix, --breed, --since/--until" in capsys.readouterr().err
    )


# ---- the reprocess request ---------------------------------------------------------------------


def test_the_request_carries_the_item_exactly_as_stored_and_the_function_reads_it_back():
    body = json.loads(json.dumps(messages.reprocess_message(ITEM, "rp-new")))
    assert body == {
        "reprocess": {
            "run_id": "rp-new",
            "bucket": "uploads-bucket",
            "key": "uploads/my dog+1.jpg",
            "version_id": "3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY",
            "sequencer": ITEM["sequencer"],
            "etag": ITEM["etag"],
            "size": 12345,
            "event_time": "2024-05-01T12:00:00.123Z",
        }
    }
    obj = reprocess_request(body)  # the function's reader: the contract's other side
    assert (obj.bucket, obj.key, obj.version_id, obj.sequencer, obj.etag, obj.size) == (
        ITEM["bucket"],
        ITEM["key"],
        ITEM["version_id"],
        ITEM["sequencer"],
        ITEM["etag"],
        12345,
    )
    assert obj.reprocess_id == "rp-new"


def test_an_item_of_an_unversioned_bucket_sends_a_null_version_id():
    item = {k: v for k, v in ITEM.items() if k != "version_id"}
    assert messages.reprocess_message(item, "r")["reprocess"]["version_id"] is None


def test_requests_go_ten_per_batch_with_ids_unique_in_each():
    items = [{**ITEM, "key": f"uploads/{i}.jpg"} for i in range(23)]
    batches = list(messages.chunks(items))
    assert [len(b) for b in batches] == [10, 10, 3]
    entries = messages.batch_entries(batches[0], "r")
    assert [e["Id"] for e in entries] == [str(i) for i in range(10)]
    assert json.loads(entries[3]["MessageBody"])["reprocess"]["key"] == "uploads/3.jpg"


def test_a_run_skips_only_items_it_already_did():
    assert messages.is_done(ITEM, "rp-20240101T000000Z")
    assert not messages.is_done(ITEM, "rp-other")
    assert not messages.is_done({k: v for k, v in ITEM.items() if k != "reprocess_id"}, "rp-x")


def test_a_new_run_id_reads_as_its_start_time():
    assert messages.new_run_id(datetime(2024, 5, 1, 12, 3, 4, tzinfo=UTC)) == "rp-20240501T120304Z"
    assert messages.valid_run_id(messages.new_run_id()).startswith("rp-")


@pytest.mark.parametrize("run_id", ["", "has space", "-leading-dash", "x" * 81, "a;rm -rf"])
def test_run_ids_unfit_for_a_command_line_are_refused(run_id):
    with pytest.raises(ValueError):
        messages.valid_run_id(run_id)


def test_the_resume_command_is_the_same_command_with_the_run_id(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli.sys, "executable", str(tmp_path / ".venv" / "bin" / "python"))
    argv = ["reprocess", "--stack", "s", "--breed", "Great Dane", "--run-id", "old", "--wait"]
    assert cli.resume_command(argv, "rp-1") == (
        ".venv/bin/python -m classify_ops reprocess --stack s --breed 'Great Dane' --wait "
        "--run-id rp-1"
    )
    assert cli.resume_command(["reprocess", "--all", "--run-id=old"], "rp-2").endswith(
        "reprocess --all --run-id rp-2"
    )


# ---- waiting -----------------------------------------------------------------------------------


def test_an_item_is_done_when_it_carries_the_run_id():
    assert completion.item_state(ITEM, {**ITEM, "reprocess_id": "rp-a"}, "rp-a") == completion.DONE


def test_an_item_a_newer_upload_replaced_or_that_was_deleted_is_superseded():
    newer = {**ITEM, "sequencer": pad_sequencer("0055AED6DCD90281F0")}
    assert completion.item_state(ITEM, newer, "rp-a") == completion.SUPERSEDED
    assert completion.item_state(ITEM, None, "rp-a") == completion.SUPERSEDED


def test_an_unchanged_item_is_still_pending():
    assert completion.item_state(ITEM, dict(ITEM), "rp-a") == completion.PENDING


def test_the_report_counts_kept_and_changed_breeds_with_the_most_frequent_changes_first():
    changes = completion.Changes()
    before = [("Pug", "v1")] * 3 + [("Beagle", "v1")] * 2 + [(None, None)] + [("Pug", "v1")]
    after = ["Beagle"] * 3 + ["Beagle", "Pug", "Pug", "Pug"]
    for (old, version), new in zip(before, after, strict=True):
        item = {"breed": old, "model": {"version": version}} if old else {"status": "FAILED"}
        changes.add(item, {"breed": new, "model": {"version": "v2"}})
    assert (changes.kept, changes.changed) == (2, 5)
    assert changes.report() == [
        "models: v1: 6, (no model): 1 → v2: 7",
        "breeds: 5 of 7 changed, 2 kept",
        "  Pug → Beagle: 3",
        "  (no breed) → Pug: 1",
        "  Beagle → Pug: 1",
    ]


def test_the_report_lists_five_changes_and_sums_up_the_rest():
    changes = completion.Changes()
    for n in range(8):  # change n happens 8 - n times
        for _ in range(8 - n):
            changes.add({"breed": f"B{n}"}, {"breed": f"C{n}"})
    report = changes.report()
    assert report[1] == "breeds: 36 of 36 changed, 0 kept"
    assert report[2:7] == [f"  B{n} → C{n}: {8 - n}" for n in range(5)]
    assert report[7:] == ["  and 3 other changes (6 items)"]


# ---- redrive -----------------------------------------------------------------------------------


def test_the_followed_task_is_found_by_handle_while_it_runs_then_by_start_time():
    ours = {"TaskHandle": "h1", "Status": "RUNNING", "StartedTimestamp": 5}
    listed = [{"TaskHandle": "h2", "Status": "RUNNING", "StartedTimestamp": 9}, ours]
    assert redrive.find_task(listed, {"TaskHandle": "h1"}) is ours
    ended = {"Status": "COMPLETED", "StartedTimestamp": 5}
    assert redrive.find_task([{"Status": "COMPLETED", "StartedTimestamp": 9}, ended], ours) is ended
    assert redrive.find_task([ended], {"TaskHandle": "h1"}) is ended  # ended before we looked


@pytest.mark.parametrize(
    ("status", "exit_code", "text"),
    [
        ("COMPLETED", 0, "redrive completed: 3/3 moved to q"),
        ("FAILED", 1, "redrive failed (1/3 moved): boom"),
    ],
)
def test_the_redrive_ends_with_one_summary_line(capsys, status, exit_code, text):
    moved = 3 if status == "COMPLETED" else 1
    task = {
        "Status": status,
        "ApproximateNumberOfMessagesMoved": moved,
        "ApproximateNumberOfMessagesToMove": 3,
    }
    if status == "FAILED":
        task["FailureReason"] = "boom"
    assert redrive.report(task, "q", sys.stdout) == exit_code
    assert capsys.readouterr().out.strip() == text


# ---- errors ------------------------------------------------------------------------------------


def client_error(code: str, message: str, operation: str = "DescribeStacks") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, operation)


def test_aws_errors_become_one_line_with_the_remedy():
    assert describe(NoCredentialsError()).startswith("no AWS credentials found")
    assert describe(NoRegionError()).startswith("no AWS region")
    denied = describe(client_error("AccessDenied", "User x is not authorized"))
    assert denied == "access denied to DescribeStacks: User x is not authorized"
    other = describe(client_error("Throttling", "Rate exceeded", "Scan"))
    assert other == "Scan failed (Throttling): Rate exceeded"
