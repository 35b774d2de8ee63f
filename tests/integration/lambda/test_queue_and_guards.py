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
from classify_upload.errors import MessageFailed
from local.endpoint.runtime import ContainerResponse

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


# -- messages that name no upload ----------------------------------------------------------------


def _metric(capsys: Any, name: str) -> int:
    """The sum of one metric over what the handler printed (Powertools' EMF lines)."""
    lines = capsys.readouterr().out.splitlines()
    emitted = [json.loads(line) for line in lines if line.startswith("{") and '"_aws"' in line]
    values = [m[name] for m in emitted if name in m]
    return sum(sum(v) if isinstance(v, list) else v for v in values)


def test_messages_that_name_no_upload_are_dropped_once_with_a_reason_and_a_metric(
    deliver, messages, table, stack, container, unique_prefix, make_record, capsys, caplog
):
    key = f"{unique_prefix}dog.jpg"
    complete = reprocess_body(
        {"bucket": stack.bucket_name, "key": key, "sequencer": "0" * 64, "etag": "e"}
    )
    no_version = json.loads(json.dumps(complete))
    no_version["reprocess"].update(version_id=None, etag="")
    missing_field = json.loads(json.dumps(complete))
    del missing_field["reprocess"]["sequencer"]
    forged = make_record(stack.bucket_name, key, size=10, etag="e", sequencer="Z" * 64)
    bodies = [
        {},
        {"Records": []},
        {"foo": 1},
        [1, 2],
        missing_field,
        no_version,
        {"Records": [forged]},
        "not json {",
    ]
    event = messages.event(*bodies)
    capsys.readouterr()

    response = deliver(event)

    assert response == {"batchItemFailures": []}  # consumed: none of them comes back
    assert container.calls == []
    assert item_for(table, stack.bucket_name, key) is None
    drops = [r for r in caplog.records if r.getMessage() == "message names no upload; dropped"]
    assert [d.message_id for d in drops] == [r["messageId"] for r in event["Records"]]
    reasons = [d.reason for d in drops]
    assert "neither version_id nor etag" in reasons[5]
    assert "sequencer" in reasons[4] and "sequencer" in reasons[6]
    assert "not JSON" in reasons[7]
    assert _metric(capsys, "DroppedMessages") == len(bodies)


def test_a_forged_sequencer_cannot_freeze_an_item_against_newer_uploads(
    upload, invoke, deliver, messages, table, stack, container, unique_prefix, jpeg
):
    key = f"{unique_prefix}dog.jpg"
    invoke({"Records": [upload(key, jpeg(color=(1, 2, 3)))]})
    # A record S3 could not have written: its sequencer would sort above every real one.
    forged = upload(key, jpeg(color=(4, 5, 6)), sequencer="F" * 64 + "F")
    assert deliver(messages.event({"Records": [forged]})) == {"batchItemFailures": []}
    lower_hex = upload(key, jpeg(color=(7, 8, 9)), sequencer="ZZ" + "0" * 20)
    assert deliver(messages.event({"Records": [lower_hex]})) == {"batchItemFailures": []}

    genuine = upload(key, jpeg(color=(9, 9, 1)))
    result = invoke({"Records": [genuine]})

    item = item_for(table, stack.bucket_name, key)
    assert result["predicted"] == 1
    assert item["version_id"] == genuine["s3"]["object"]["versionId"]
    assert len(container.calls) == 2  # the first upload and the genuine one, nothing forged


def test_lower_case_sequencers_are_read_as_s3_writes_them(
    upload, invoke, table, stack, unique_prefix, jpeg
):
    key = f"{unique_prefix}dog.jpg"
    record = upload(key, jpeg(), sequencer="0062f4e7a1b2c3ffff")

    result = invoke({"Records": [record]})

    assert result["predicted"] == 1
    assert item_for(table, stack.bucket_name, key)["sequencer"].startswith("0062F4E7A1B2C3FFFF")


# -- objects the function cannot decrypt ---------------------------------------------------------


@pytest.fixture
def s3_answers(app_module):
    """Make GetObject answer as AWS does where moto does not (SSE-C, KMS): ``answer(code, status,
    message)``; the real client parses it and raises its ``ClientError``."""
    client = app_module.get_clients().s3
    registered = []

    def answer(code: str, status: int, message: str) -> None:
        def refuse(**kwargs: Any) -> tuple[Any, dict[str, Any]]:
            error = {"Error": {"Code": code, "Message": message}}
            metadata = {"ResponseMetadata": {"HTTPStatusCode": status}}
            return _HttpStatus(status), error | metadata

        client.meta.events.register("before-call.s3.GetObject", refuse)
        registered.append(refuse)

    yield answer
    for handler in registered:
        client.meta.events.unregister("before-call.s3.GetObject", handler)


class _HttpStatus:
    def __init__(self, status: int) -> None:
        self.status_code = status
        self.headers: dict[str, str] = {}


@pytest.mark.parametrize(
    ("code", "status", "message"),
    [
        (
            "InvalidRequest",
            400,
            "The object was stored using a form of Server Side Encryption. "
            "The correct parameters must be provided to retrieve the object.",
        ),
        ("KMS.DisabledException", 400, "arn:aws:kms:us-east-1:123456789012:key/k is disabled."),
        (
            "AccessDenied",
            403,
            "User: arn:aws:sts::123456789012:assumed-role/fn is not authorized to perform: "
            "kms:Decrypt on the resource associated with this ciphertext",
        ),
    ],
    ids=["sse-c", "kms-disabled", "no-kms-decrypt"],
)
def test_an_upload_the_function_cannot_decrypt_becomes_a_failed_item_that_says_so(
    code, status, message, upload, invoke, s3_answers, table, stack, container, unique_prefix, jpeg
):
    key = f"{unique_prefix}secret.jpg"
    record = upload(key, jpeg())
    s3_answers(code, status, message)

    result = invoke({"Records": [record]})

    item = item_for(table, stack.bucket_name, key)
    assert result["failed"] == 1 and result["retry_later"] == []
    assert item["status"] == "FAILED" and item["error_type"] == "ObjectEncrypted"
    assert "encrypted" in item["error_message"] and code in item["error_message"]
    assert container.calls == []


def test_a_role_without_s3_get_object_still_fails_the_message_and_blames_no_image(
    upload, invoke, s3_answers, table, stack, unique_prefix, jpeg
):
    key = f"{unique_prefix}dog.jpg"
    record = upload(key, jpeg())
    s3_answers("AccessDenied", 403, "Access Denied")

    with pytest.raises(MessageFailed, match="AccessDenied"):
        invoke({"Records": [record]})

    assert item_for(table, stack.bucket_name, key) is None


# -- the deadline --------------------------------------------------------------------------------


def test_a_slow_endpoint_fails_what_does_not_fit_and_keeps_what_finished(
    upload, deliver, messages, table, stack, container, unique_prefix, jpeg, monkeypatch
):
    """Each endpoint call takes 60 s of the invocation's clock (the container moves it): the
    first message finishes, the second gives up its retries, the third is not started."""
    context = messages.context(remaining_ms=200_000)
    real_invoke = container.invoke

    def slow_invoke(*args: Any, **kwargs: Any) -> ContainerResponse:
        context.remaining_ms -= 60_000
        return real_invoke(*args, **kwargs)

    monkeypatch.setattr(container, "invoke", slow_invoke)
    busy = jpeg(color=(5, 0, 5))
    container.script[busy] = ContainerResponse(503, b"worker busy")
    keys = [f"{unique_prefix}{name}.jpg" for name in ("done", "busy", "late")]
    bodies = [
        {"Records": [upload(keys[0], jpeg(color=(1, 0, 1)))]},
        {"Records": [upload(keys[1], busy)]},
        {"Records": [upload(keys[2], jpeg(color=(2, 0, 2)))]},
    ]
    event = messages.event(*bodies)

    response = deliver(event, context)

    ids = [r["messageId"] for r in event["Records"]]
    assert response == {"batchItemFailures": [{"itemIdentifier": i} for i in ids[1:]]}
    assert item_for(table, stack.bucket_name, keys[0])["status"] == "PREDICTED"
    assert item_for(table, stack.bucket_name, keys[1]) is None
    assert item_for(table, stack.bucket_name, keys[2]) is None
    assert len(container.calls) == 2  # 200 s → 140 s → 80 s: no time for a retry or the third
    assert context.remaining_ms >= 20_000  # time left to answer the batch
