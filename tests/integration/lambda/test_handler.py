"""A user uploads images; the function writes what the endpoint said, once per image.

The real template is deployed into moto (bucket, table), the handler runs in-process with the
deployed function's environment, and the endpoint answers over HTTP through botocore.
"""

from __future__ import annotations

import io
import json
import re
import time
from dataclasses import replace
from decimal import Decimal
from typing import Any

import numpy as np
import pytest
from PIL import Image

from classify_upload.endpoint import MAX_MODEL_FIELDS, MAX_MODEL_VALUE_CHARS
from classify_upload.errors import MessageFailed
from classify_upload.images import MAX_REQUEST_BYTES
from classify_upload.table import MAX_ERROR_MESSAGE
from local.endpoint.runtime import ContainerResponse, Fault

pytestmark = pytest.mark.filterwarnings("ignore:Tried to parse AWS::")


def item_for(table: Any, bucket: str, key: str) -> dict[str, Any] | None:
    return table.get_item(Key={"bucket": bucket, "key": key}, ConsistentRead=True).get("Item")


def items_under(table: Any, prefix: str) -> list[dict[str, Any]]:
    items = table.scan(ConsistentRead=True)["Items"]
    return [i for i in items if i["key"].startswith(prefix)]


def test_an_uploaded_image_gets_its_predicted_breed(
    upload, invoke, table, stack, container, runtime, unique_prefix, jpeg
):
    body = jpeg()
    key = f"{unique_prefix}rex.jpg"
    record = upload(key, body)

    result = invoke({"Records": [record]})

    assert result["predicted"] == 1 and result["failed"] == 0
    item = item_for(table, stack.bucket_name, key)
    assert item["status"] == "PREDICTED"
    assert item["breed"] == container.breed_for(body)
    assert item["probability"] == Decimal("0.6")
    assert item["top_k"][0]["breed"] == item["breed"]
    assert len(item["top_k"]) == 3  # TopK parameter of the stack
    assert item["etag"] == record["s3"]["object"]["eTag"]
    assert item["version_id"] == record["s3"]["object"]["versionId"]
    assert item["size"] == len(body)
    assert item["sequencer"].startswith(record["s3"]["object"]["sequencer"])
    assert item["endpoint_name"] == stack.environment["ENDPOINT_NAME"]
    assert item["model"] == {"name": "resnet50", "version": "0123456789ab", "runtime": "pytorch"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", item["predicted_at"])
    assert {"get_object", "invoke_endpoint", "total"} <= set(item["timings_ms"])
    assert "error_type" not in item
    # The endpoint got the raw bytes, typed, with top_k as a custom attribute.
    (call,) = container.calls
    assert call.body == body and call.content_type == "image/jpeg"
    assert call.custom_attributes == "top_k=3"
    # Readers find it by breed, newest first, without a scan.
    by_breed = table.query(
        IndexName="by_breed",
        KeyConditionExpression="breed = :b",
        ExpressionAttributeValues={":b": item["breed"]},
        ScanIndexForward=False,
    )["Items"]
    assert key in [i["key"] for i in by_breed]


def test_keys_with_spaces_plus_and_non_ascii_reach_the_object(
    upload, invoke, table, stack, unique_prefix, jpeg
):
    key = f"{unique_prefix}my dog+café (1) ü.jpg"
    record = upload(key, jpeg())
    assert "+" in record["s3"]["object"]["key"] and "%" in record["s3"]["object"]["key"]

    invoke({"Records": [record]})

    assert item_for(table, stack.bucket_name, key)["status"] == "PREDICTED"


def test_the_special_key_sample_event_decodes_like_s3_encoded_it(
    s3, invoke, table, stack, event_file, jpeg
):
    event = event_file("upload_special_key.json")
    s3.put_object(Bucket=stack.bucket_name, Key="uploads/my dog+café (1).jpg", Body=jpeg())

    invoke(event)

    item = item_for(table, stack.bucket_name, "uploads/my dog+café (1).jpg")
    assert item["status"] == "PREDICTED"


def test_s3_test_event_is_ignored(invoke, event_file, container, table):
    before = table.scan(Select="COUNT", ConsistentRead=True)["Count"]

    result = invoke(event_file("s3_test_event.json"))

    assert result["test_event"] is True
    assert container.calls == []
    assert table.scan(Select="COUNT", ConsistentRead=True)["Count"] == before


def test_keys_outside_the_upload_prefix_are_ignored(invoke, event_file, container, table, stack):
    result = invoke(event_file("upload_outside_prefix.json"))

    assert result["skipped"] == ["other/notes.txt"]
    assert container.calls == []
    assert item_for(table, stack.bucket_name, "other/notes.txt") is None


def test_every_record_of_a_multi_record_event_gets_an_item(
    s3, invoke, table, stack, event_file, container
):
    bodies = {}
    for key, fmt in [
        ("uploads/labrador.jpg", "JPEG"),
        ("uploads/beagle.png", "PNG"),
        ("uploads/poodle.webp", "WEBP"),
    ]:
        out = io.BytesIO()
        Image.new("RGB", (40, 30), (10, 200, 90)).save(out, format=fmt)
        bodies[key] = out.getvalue()
        s3.put_object(Bucket=stack.bucket_name, Key=key, Body=bodies[key])

    result = invoke(event_file("upload_many.json"))

    assert result["predicted"] == 3
    for key in bodies:
        assert item_for(table, stack.bucket_name, key)["status"] == "PREDICTED"
    sent_types = sorted(call.content_type for call in container.calls)
    assert sent_types == ["image/jpeg", "image/png", "image/webp"]


def test_a_zero_byte_upload_is_recorded_as_failed_without_calling_the_endpoint(
    upload, invoke, table, stack, container, unique_prefix
):
    key = f"{unique_prefix}empty.jpg"

    result = invoke({"Records": [upload(key, b"")]})

    item = item_for(table, stack.bucket_name, key)
    assert result["failed"] == 1
    assert item["status"] == "FAILED" and item["error_type"] == "EmptyObject"
    assert "breed" not in item  # FAILED items stay out of the by_breed index
    assert container.calls == []


def test_an_object_deleted_before_processing_is_recorded_as_failed(
    make_record, invoke, table, stack, container, unique_prefix
):
    key = f"{unique_prefix}gone.jpg"

    invoke({"Records": [make_record(stack.bucket_name, key, size=123, etag="abc")]})

    item = item_for(table, stack.bucket_name, key)
    assert item["status"] == "FAILED" and item["error_type"] == "ObjectNotFound"
    assert container.calls == []


def test_not_an_image_is_rejected_by_the_endpoint_and_not_retried(
    upload, invoke, table, stack, runtime, unique_prefix
):
    key = f"{unique_prefix}notes.jpg"

    result = invoke({"Records": [upload(key, b"this is a shopping list, not a photo")]})

    item = item_for(table, stack.bucket_name, key)
    assert result["failed"] == 1
    assert item["status"] == "FAILED"
    assert item["error_type"] == "ModelRejected400"
    assert "not a decodable image" in item["error_message"]
    assert [i.status for i in runtime.invocations] == [424]  # one call: a 4xx is final


@pytest.mark.parametrize(
    ("fault", "times"),
    [
        (Fault.service_unavailable(), 2),
        (Fault.model_not_ready(), 2),
        (Fault.throttling(), 1),
        (Fault.internal_failure(), 1),
        (Fault.model_error(503, "worker busy"), 2),
        (Fault.model_error(429, "queue full"), 1),
    ],
    ids=["503", "429-not-ready", "throttled", "500", "model-503", "model-429"],
)
def test_transient_endpoint_errors_are_retried_then_succeed(
    fault, times, upload, invoke, table, stack, runtime, unique_prefix, jpeg
):
    key = f"{unique_prefix}dog.jpg"
    runtime.inject_fault(fault, times=times)

    result = invoke({"Records": [upload(key, jpeg())]})

    item = item_for(table, stack.bucket_name, key)
    assert result["predicted"] == 1
    assert item["status"] == "PREDICTED" and item["attempts"] == times + 1
    statuses = [i.status for i in runtime.invocations]
    assert statuses == [fault.status] * times + [200]


def test_a_persistent_transient_error_fails_the_invocation_and_loses_nothing(
    upload, invoke, table, stack, runtime, unique_prefix, jpeg, app_module
):
    key = f"{unique_prefix}dog.jpg"
    event = {"Records": [upload(key, jpeg())]}
    runtime.inject_fault(Fault.service_unavailable(), times=1000)

    with pytest.raises(MessageFailed, match="ServiceUnavailable"):
        invoke(event)

    assert item_for(table, stack.bucket_name, key) is None
    # Our bounded retries only: botocore's own are off for the endpoint client.
    assert len(runtime.invocations) == app_module.RETRY_POLICY.max_attempts

    # Lambda's async retry delivers the same event once the endpoint is back.
    runtime.clear_faults()
    invoke(event)
    assert item_for(table, stack.bucket_name, key)["status"] == "PREDICTED"


def test_an_unreachable_endpoint_is_transient(
    upload, invoke, table, stack, unique_prefix, jpeg, app_module, monkeypatch
):
    import socket

    with socket.socket() as probe:  # a port with nothing listening
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", f"http://127.0.0.1:{closed_port}")
    app_module.get_clients.cache_clear()
    key = f"{unique_prefix}dog.jpg"
    try:
        with pytest.raises(MessageFailed, match="EndpointConnectionError"):
            invoke({"Records": [upload(key, jpeg())]})
    finally:
        app_module.get_clients.cache_clear()
    assert item_for(table, stack.bucket_name, key) is None


@pytest.mark.parametrize("problem", ["unknown-endpoint", "access-denied"])
def test_configuration_errors_fail_fast_and_blame_no_image(
    problem, upload, invoke, table, stack, runtime, unique_prefix, jpeg, app_module, monkeypatch
):
    if problem == "unknown-endpoint":
        from dataclasses import replace

        monkeypatch.setattr(
            app_module, "SETTINGS", replace(app_module.SETTINGS, endpoint_name="no-such-endpoint")
        )
    else:
        runtime.inject_fault(Fault.access_denied(), times=1000)
    key = f"{unique_prefix}dog.jpg"

    with pytest.raises(MessageFailed):
        invoke({"Records": [upload(key, jpeg())]})

    assert item_for(table, stack.bucket_name, key) is None
    assert len(runtime.invocations) == 1  # no retry inside the invocation


def test_one_event_with_good_bad_and_transient_records(
    upload, invoke, table, stack, container, unique_prefix, jpeg
):
    busy_body = jpeg(color=(1, 2, 3))
    records = [
        upload(f"{unique_prefix}good.jpg", jpeg(color=(9, 9, 9))),
        upload(f"{unique_prefix}text.jpg", b"not an image at all"),
        upload(f"{unique_prefix}busy.jpg", busy_body),
        upload(f"{unique_prefix}empty.jpg", b""),
    ]
    container.script[busy_body] = ContainerResponse(503, b"worker busy")
    event = {"Records": records}

    with pytest.raises(MessageFailed, match=r"busy\.jpg"):
        invoke(event)

    # The other records were not held back by the transient one.
    statuses = {i["key"].rsplit("/", 1)[1]: i["status"] for i in items_under(table, unique_prefix)}
    assert statuses == {"good.jpg": "PREDICTED", "text.jpg": "FAILED", "empty.jpg": "FAILED"}

    # Lambda redelivers the whole event: the busy one completes, the rest are no-ops.
    container.script.clear()
    result = invoke(event)
    assert result["predicted"] == 1 and result["duplicate_or_stale"] == 3
    items = items_under(table, unique_prefix)
    assert sorted(i["key"] for i in items) == sorted(r["s3"]["object"]["key"] for r in records)
    assert {i["key"].rsplit("/", 1)[1]: i["status"] for i in items}["busy.jpg"] == "PREDICTED"


def test_a_duplicate_delivery_changes_nothing(upload, invoke, table, stack, unique_prefix, jpeg):
    key = f"{unique_prefix}dog.jpg"
    event = {"Records": [upload(key, jpeg())]}
    invoke(event)
    first = item_for(table, stack.bucket_name, key)

    result = invoke(event)

    assert result["duplicate_or_stale"] == 1 and result["predicted"] == 0
    assert item_for(table, stack.bucket_name, key) == first
    assert len(items_under(table, unique_prefix)) == 1


def _two_versions(upload, container, jpeg, key):
    """Two uploads of one key whose images the model tells apart."""
    old_body = jpeg(color=(10, 10, 10))
    new_body = next(
        body
        for body in (jpeg(color=(c, 60, 200)) for c in range(0, 250, 7))
        if container.breed_for(body) != container.breed_for(old_body)
    )
    older = upload(key, old_body)
    newer = upload(key, new_body)
    assert older["s3"]["object"]["sequencer"] < newer["s3"]["object"]["sequencer"]
    return older, newer, container.breed_for(new_body)


def test_an_older_event_arriving_late_never_overwrites_a_newer_result(
    upload, invoke, table, stack, container, unique_prefix, jpeg
):
    key = f"{unique_prefix}dog.jpg"
    older, newer, newest_breed = _two_versions(upload, container, jpeg, key)

    invoke({"Records": [newer]})
    late = invoke({"Records": [older]})

    item = item_for(table, stack.bucket_name, key)
    assert late["duplicate_or_stale"] == 1
    assert item["version_id"] == newer["s3"]["object"]["versionId"]
    assert item["breed"] == newest_breed


def test_events_in_order_update_the_item_to_the_newest_upload(
    upload, invoke, table, stack, container, unique_prefix, jpeg
):
    key = f"{unique_prefix}dog.jpg"
    older, newer, newest_breed = _two_versions(upload, container, jpeg, key)

    invoke({"Records": [older]})
    invoke({"Records": [newer]})

    item = item_for(table, stack.bucket_name, key)
    assert item["version_id"] == newer["s3"]["object"]["versionId"]
    assert item["breed"] == newest_breed
    assert len(items_under(table, unique_prefix)) == 1


def _large_rotated_photo() -> bytes:
    """A camera-style JPEG over the 6 MiB limit: stored landscape, EXIF says rotate 90° CW.

    A red square marks the stored top-left corner; displayed upright it is at the top right.
    """
    pixels = np.random.default_rng(0).integers(0, 256, (2400, 3200, 3), dtype=np.uint8)
    pixels[:300, :300] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 CW to display
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="JPEG", quality=92, exif=exif)
    return out.getvalue()


def test_an_image_over_the_request_limit_is_downscaled_upright(
    upload, invoke, table, stack, container, unique_prefix
):
    body = _large_rotated_photo()
    assert len(body) > MAX_REQUEST_BYTES
    key = f"{unique_prefix}big.jpg"

    invoke({"Records": [upload(key, body)]})

    (call,) = container.calls
    assert len(call.body) <= MAX_REQUEST_BYTES
    assert call.content_type == "image/jpeg"
    width, height = call.image_size
    assert height > width  # the EXIF rotation was applied before re-encoding
    assert call.top_right_rgb[0] > 200 and call.top_right_rgb[1] < 60  # the red mark
    assert call.top_left_rgb[0] < 200 or call.top_left_rgb[1] > 60
    item = item_for(table, stack.bucket_name, key)
    assert item["status"] == "PREDICTED" and item["downscaled"] is True
    assert item["size"] == len(body)
    assert "downscale" in item["timings_ms"]


def test_a_serverless_request_limit_downscales_what_a_real_time_endpoint_would_take(
    upload, invoke, table, stack, container, unique_prefix, app_module, monkeypatch
):
    # MaxRequestBytes=4000000 (a serverless endpoint's 4 MB): a 4-6 MiB photo must shrink.
    limit = 4_000_000
    serverless = replace(app_module.SETTINGS, max_request_bytes=limit)
    monkeypatch.setattr(app_module, "SETTINGS", serverless)
    pixels = np.random.default_rng(1).integers(0, 256, (1800, 2400, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="JPEG", quality=95)
    body = out.getvalue()
    assert limit < len(body) <= MAX_REQUEST_BYTES
    key = f"{unique_prefix}mid.jpg"

    invoke({"Records": [upload(key, body)]})

    (call,) = container.calls
    assert len(call.body) <= limit
    item = item_for(table, stack.bucket_name, key)
    assert item["status"] == "PREDICTED" and item["downscaled"] is True


def test_each_uploaded_object_ends_as_exactly_one_item(upload, invoke, table, unique_prefix, jpeg):
    records = [upload(f"{unique_prefix}{n:02d}.jpg", jpeg(color=(n * 20, 5, 5))) for n in range(6)]
    # At-least-once delivery: some records twice, in one event and across events.
    invoke({"Records": records[:4] + records[:2]})
    invoke({"Records": records[2:]})

    items = items_under(table, unique_prefix)
    assert sorted(i["key"] for i in items) == sorted(r["s3"]["object"]["key"] for r in records)
    assert all(i["status"] == "PREDICTED" for i in items)


def _answer(payload: dict[str, Any]) -> ContainerResponse:
    return ContainerResponse(200, json.dumps(payload).encode())


def test_a_huge_rejection_message_is_stored_bounded(
    upload, invoke, table, stack, container, unique_prefix, jpeg
):
    body = jpeg(color=(7, 7, 7))
    container.script[body] = ContainerResponse(400, b"bad input: " + b"x" * 300_000, "text/plain")
    key = f"{unique_prefix}dog.jpg"

    result = invoke({"Records": [upload(key, body)]})

    item = item_for(table, stack.bucket_name, key)
    assert result["failed"] == 1 and item["error_type"] == "ModelRejected400"
    assert item["error_message"].startswith("bad input: xxx")
    assert len(item["error_message"]) <= MAX_ERROR_MESSAGE
    assert item["error_message"].endswith("characters, truncated]")


@pytest.mark.parametrize(
    "prediction",
    [
        {"breed": "Beagle", "probability": float("nan")},
        {"breed": "Beagle", "probability": float("inf")},
        {"breed": "B" * 3000, "probability": 0.9},  # over DynamoDB's 2048-byte index key
        {"breed": "", "probability": 0.9},  # an empty index key is rejected too
    ],
    ids=["nan", "inf", "long-breed", "empty-breed"],
)
def test_an_answer_the_table_cannot_hold_is_a_failed_item_not_a_lost_upload(
    prediction, upload, invoke, table, stack, container, runtime, unique_prefix, jpeg
):
    body = jpeg(color=(8, 8, 8))
    container.script[body] = _answer({"predictions": [prediction]})
    key = f"{unique_prefix}dog.jpg"

    result = invoke({"Records": [upload(key, body)]})

    item = item_for(table, stack.bucket_name, key)
    assert result["failed"] == 1 and result["retry_later"] == []
    assert item["status"] == "FAILED" and item["error_type"] == "BadModelResponse"
    assert len(runtime.invocations) == 1  # a broken answer is not retried


def test_a_huge_model_identity_is_kept_bounded(
    upload, invoke, table, stack, container, unique_prefix, jpeg
):
    body = jpeg(color=(9, 9, 9))
    model = {"name": "resnet50", "notes": "n" * 500_000, "extra": {"nested": True}}
    model |= {f"field{n}": n for n in range(100)}
    container.script[body] = _answer(
        {"predictions": [{"breed": "Beagle", "probability": 0.9}], "model": model}
    )
    key = f"{unique_prefix}dog.jpg"

    result = invoke({"Records": [upload(key, body)]})

    item = item_for(table, stack.bucket_name, key)
    assert result["predicted"] == 1
    assert item["model"]["name"] == "resnet50"
    assert len(item["model"]["notes"]) == MAX_MODEL_VALUE_CHARS
    assert "extra" not in item["model"] and len(item["model"]) <= MAX_MODEL_FIELDS


def test_a_missing_table_fails_the_invocation_and_blames_no_image(
    upload, invoke, unique_prefix, jpeg, app_module, monkeypatch
):
    from dataclasses import replace

    monkeypatch.setattr(
        app_module, "SETTINGS", replace(app_module.SETTINGS, table_name="no-such-table")
    )
    app_module.get_clients.cache_clear()
    try:
        with pytest.raises(MessageFailed, match="ResourceNotFoundException"):
            invoke({"Records": [upload(f"{unique_prefix}dog.jpg", jpeg())]})
    finally:
        app_module.get_clients.cache_clear()


def test_predictions_for_one_breed_are_listed_newest_first_without_a_scan(
    upload, invoke, table, container, unique_prefix, jpeg
):
    breed = f"Breed_{unique_prefix.split('/')[1]}"
    keys = []
    for n in range(3):
        body = jpeg(color=(n * 40, 90, 90))
        container.script[body] = _answer({"predictions": [{"breed": breed, "probability": 0.8}]})
        keys.append(f"{unique_prefix}{n}.jpg")
        invoke({"Records": [upload(keys[-1], body)]})
        time.sleep(0.005)  # predicted_at has millisecond resolution

    page = table.query(
        IndexName="by_breed",
        KeyConditionExpression="breed = :b",
        ExpressionAttributeValues={":b": breed},
        ScanIndexForward=False,
    )["Items"]

    assert [i["key"] for i in page] == keys[::-1]
    assert [i["predicted_at"] for i in page] == sorted(
        (i["predicted_at"] for i in page), reverse=True
    )


def test_a_console_folder_marker_gets_no_item(
    upload, invoke, table, stack, container, unique_prefix
):
    record = upload(unique_prefix, b"")  # what "Create folder" in the S3 console writes

    result = invoke({"Records": [record]})

    assert result["skipped"] == [unique_prefix]
    assert item_for(table, stack.bucket_name, unique_prefix) is None
    assert container.calls == []
