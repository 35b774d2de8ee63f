"""The queue's side of the handler: batches with partial failures, reprocess requests, and the
guards (size, other buckets, low confidence, no tracebacks in the table).

Same stack as ``test_handler``: the real template in moto, the endpoint over HTTP; messages are
shaped as Lambda's SQS event source hands them over (``conftest.sqs_record``).
"""

from __future__ import annotations

import json
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError
from boto3.dynamodb.conditions import Key

from classify_ops.messages import reprocess_message
from local.sagemaker_runtime import ContainerResponse

pytestmark = pytest.mark.filterwarnings("ignore:Tried to parse AWS::")


def item_for(table: Any, bucket: str, key: str) -> dict[str, Any] | None:
    return table.get_item(Key={"bucket": bucket, "key": key}, ConsistentRead=True).get("Item")


def reprocess_body(item: dict[str, Any], run_id: str = "rp-test") -> dict[str, Any]:
    """The request ``classify_ops reprocess`` sends for one item (its own builder)."""
    return reprocess_message(item, run_id)


def test_one_failing_message_is_reported_alone_and_its_neighbours_are_done(
    upload, deliver, messages, table, stack, container, unique_prefix, jpeg
):
    busy = jpeg(color=(3, 1, 4))
    container.script[busy] = ContainerResponse(503, b"worker busy")
    bodies = [
        {"Records": [upload(f"{unique_prefix}a.jpg", jpeg(color=(1, 1, 1)))]},
        {"Records": [upload(f"{unique_prefix}busy.jpg", busy)]},
        {"Records": [upload(f"{unique_prefix}c.jpg", jpeg(color=(2, 2, 2)))]},
    ]
    event = messages.event(*bodies)

    response = deliver(event)

    failed_id = event["Records"][1]["messageId"]
    assert response == {"batchItemFailures": [{"itemIdentifier": failed_id}]}
    assert item_for(table, stack.bucket_name, f"{unique_prefix}a.jpg")["status"] == "PREDICTED"
    assert item_for(table, stack.bucket_name, f"{unique_prefix}c.jpg")["status"] == "PREDICTED"
    assert item_for(table, stack.bucket_name, f"{unique_prefix}busy.jpg") is None


def test_the_s3_test_message_and_a_foreign_body_are_consumed_and_write_nothing(
    deliver, messages, event_file, container, summaries
):
    test_message = messages.record(event_file("s3_test_event.json"))
    event = {"Records": [test_message, messages.record("not json {")]}

    assert deliver(event) == {"batchItemFailures": []}
    assert container.calls == []
    assert [s.test_event for s in summaries] == [True]  # the non-JSON body never got that far


def test_a_record_for_another_bucket_is_dropped_and_writes_nothing(
    invoke, make_record, table, container, unique_prefix, s3, stack
):
    other = "someone-elses-bucket"
    s3.create_bucket(Bucket=other)
    key = f"{unique_prefix}dog.jpg"
    s3.put_object(Bucket=other, Key=key, Body=b"\xff\xd8 not really a jpeg")

    result = invoke({"Records": [make_record(other, key, size=20)]})

    assert result["other_bucket"] == [f"{other}/{key}"]
    assert result["predicted"] == result["failed"] == 0
    assert item_for(table, other, key) is None
    assert item_for(table, stack.bucket_name, key) is None
    assert container.calls == []


def test_an_object_over_the_size_limit_fails_as_too_large_without_being_read(
    upload, make_record, invoke, table, stack, container, unique_prefix, jpeg, app_module
):
    key = f"{unique_prefix}huge.jpg"
    record = upload(key, jpeg())
    # The event says what S3 said: here, 300 MB (the object itself is small: it is never read).
    record["s3"]["object"]["size"] = 300 * 1024 * 1024

    result = invoke({"Records": [record]})

    item = item_for(table, stack.bucket_name, key)
    assert result["failed"] == 1
    assert item["status"] == "FAILED" and item["error_type"] == "TooLarge"
    assert str(app_module.SETTINGS.max_object_bytes) in item["error_message"]
    assert "get_object" not in item["timings_ms"]  # no request was made for its bytes
    assert container.calls == []


def test_a_size_the_event_understates_is_caught_before_the_body_is_read(
    upload, invoke, table, stack, container, unique_prefix, jpeg, app_module, monkeypatch
):
    monkeypatch.setattr(app_module, "SETTINGS", replace(app_module.SETTINGS, max_object_bytes=1000))
    body = jpeg(size=(400, 300))
    assert len(body) > 1000
    key = f"{unique_prefix}big.jpg"
    record = upload(key, body)
    record["s3"]["object"]["size"] = 10  # e.g. a reprocess request built from a stale size

    result = invoke({"Records": [record]})

    item = item_for(table, stack.bucket_name, key)
    assert result["failed"] == 1 and item["error_type"] == "TooLarge"
    assert f"has {len(body)} bytes" in item["error_message"]
    assert container.calls == []


def test_low_confidence_predictions_are_marked_and_listed_without_a_scan(
    upload, invoke, table, stack, container, unique_prefix, jpeg, app_module
):
    threshold = app_module.SETTINGS.low_confidence_threshold
    assert threshold == 0.5  # the template's default
    sure_key, unsure_key = f"{unique_prefix}sure.jpg", f"{unique_prefix}unsure.jpg"
    invoke({"Records": [upload(sure_key, jpeg(color=(10, 10, 10)))]})
    container.probabilities = (0.3, 0.25, 0.2, 0.15, 0.1)
    invoke({"Records": [upload(unsure_key, jpeg(color=(20, 20, 20)))]})

    sure = item_for(table, stack.bucket_name, sure_key)
    unsure = item_for(table, stack.bucket_name, unsure_key)
    assert "confidence" not in sure and sure["confidence_threshold"] == Decimal("0.5")
    assert unsure["confidence"] == "LOW" and unsure["probability"] == Decimal("0.3")

    listed = table.query(
        IndexName="low_confidence",
        KeyConditionExpression=Key("confidence").eq("LOW"),
        ScanIndexForward=False,
    )["Items"]
    keys = [i["key"] for i in listed]
    assert unsure_key in keys and sure_key not in keys


def test_a_rejection_keeps_the_models_message_without_traceback_or_paths(
    upload, invoke, table, stack, container, unique_prefix, jpeg
):
    body = jpeg(color=(8, 8, 8))
    toolkit_body = (
        "Unable to decode the image: cannot identify image file\n"
        "Traceback (most recent call last):\n"
        '  File "/opt/conda/lib/python3.12/site-packages/sagemaker_inference/transformer.py", '
        "line 150, in transform\n"
        "    result = self._run_handler_function(\n"
        '  File "/opt/ml/model/code/dog_breeds/serving/image_decode.py", line 40, in decode\n'
        "dog_breeds.serving.image_decode.ImageDecodeError: cannot identify image file\n"
    )
    container.script[body] = ContainerResponse(400, toolkit_body.encode(), "text/plain")
    key = f"{unique_prefix}dog.jpg"

    invoke({"Records": [upload(key, body)]})

    message = item_for(table, stack.bucket_name, key)["error_message"]
    assert message == "Unable to decode the image: cannot identify image file"


def test_a_reprocess_replaces_an_older_models_result_for_the_same_upload(
    upload, invoke, table, stack, container, unique_prefix, jpeg
):
    key = f"{unique_prefix}dog.jpg"
    record = upload(key, jpeg())
    invoke({"Records": [record]})
    before = item_for(table, stack.bucket_name, key)
    container.model_version = "new-model"

    result = invoke(reprocess_body(before, run_id="rp-1"))

    after = item_for(table, stack.bucket_name, key)
    assert result["predicted"] == 1
    assert after["model"]["version"] == "new-model"
    assert after["reprocess_id"] == "rp-1" and after["reprocessed_at"] == after["predicted_at"]
    for same in ("sequencer", "version_id", "etag", "event_time"):
        assert after[same] == before[same]
    # The upload's own event arriving again later is still a duplicate: nothing changes.
    again = invoke({"Records": [record]})
    assert again["duplicate_or_stale"] == 1
    assert item_for(table, stack.bucket_name, key)["model"]["version"] == "new-model"


def test_a_reprocess_never_brings_back_an_overwritten_or_deleted_version(
    upload, invoke, s3, table, stack, container, unique_prefix, jpeg
):
    overwritten, deleted = f"{unique_prefix}overwritten.jpg", f"{unique_prefix}deleted.jpg"
    invoke({"Records": [upload(overwritten, jpeg(color=(1, 2, 3)))]})
    invoke({"Records": [upload(deleted, jpeg(color=(4, 5, 6)))]})
    old_overwritten = item_for(table, stack.bucket_name, overwritten)
    old_deleted = item_for(table, stack.bucket_name, deleted)
    # A new version is uploaded, but its event has not been processed yet; the other is deleted.
    upload(overwritten, jpeg(color=(7, 8, 9)))
    s3.delete_object(Bucket=stack.bucket_name, Key=deleted)
    container.model_version = "new-model"
    calls_before = len(container.calls)

    results = [invoke(reprocess_body(old_overwritten)), invoke(reprocess_body(old_deleted))]

    assert [r["superseded"] for r in results] == [[overwritten], [deleted]]
    assert item_for(table, stack.bucket_name, overwritten) == old_overwritten
    assert item_for(table, stack.bucket_name, deleted) == old_deleted
    assert len(container.calls) == calls_before  # the old versions were never classified


def test_a_reprocess_overtaken_by_a_newer_upload_writes_nothing(
    upload, invoke, table, stack, container, unique_prefix, jpeg
):
    key = f"{unique_prefix}dog.jpg"
    invoke({"Records": [upload(key, jpeg(color=(1, 1, 9)))]})
    stale_request = reprocess_body(item_for(table, stack.bucket_name, key))
    newer = upload(key, jpeg(color=(9, 1, 1)))
    invoke({"Records": [newer]})
    newest = item_for(table, stack.bucket_name, key)
    # The request names the old version; even pointed at the current one, the item's sequencer
    # (the newer upload's) no longer matches, so the condition refuses the write.
    stale_request["reprocess"]["version_id"] = newer["s3"]["object"]["versionId"]
    container.model_version = "new-model"

    result = invoke(stale_request)

    assert result["duplicate_or_stale"] == 1
    assert item_for(table, stack.bucket_name, key) == newest


def test_messages_are_not_started_when_the_functions_time_is_nearly_spent(
    upload, deliver, messages, table, stack, container, unique_prefix, jpeg
):
    key = f"{unique_prefix}late.jpg"
    event = messages.event({"Records": [upload(key, jpeg())]})

    with pytest.raises(BatchProcessingError):  # every message failed: the invocation errors
        deliver(event, messages.context(remaining_ms=5_000))

    assert container.calls == []
    assert item_for(table, stack.bucket_name, key) is None


def test_the_metrics_are_the_ones_the_failed_ratio_alarm_reads(
    upload, invoke, unique_prefix, jpeg, capsys, sam_alarm_metrics
):
    invoke({"Records": [upload(f"{unique_prefix}ok.jpg", jpeg())]})
    invoke({"Records": [upload(f"{unique_prefix}bad.jpg", b"not an image")]})

    emitted = [
        json.loads(line)
        for line in capsys.readouterr().out.splitlines()
        if line.startswith("{") and '"_aws"' in line
    ]
    for namespace, name, dimensions in sam_alarm_metrics:
        values = [
            sum(m[name]) if isinstance(m[name], list) else m[name]
            for m in emitted
            if m["_aws"]["CloudWatchMetrics"][0]["Namespace"] == namespace
            and all(m.get(d["Name"]) == d["Value"] for d in dimensions)
            and name in m
        ]
        expected = [1, 0] if name == "Predicted" else [0, 1]
        assert values == expected
