"""The whole system offline: the real template in moto, S3 notifying the upload queue, the queue's
event source mapping invoking the real handler as Lambda runs it, the real inference script
behind a SageMaker runtime stand-in. A user uploads through the S3 API and reads the table."""

from __future__ import annotations

import io
import math
from decimal import Decimal

import pytest
from boto3.dynamodb.conditions import Key
from PIL import Image

from local.demo.uploads import (
    Upload,
    bad_uploads,
    upload_all,
    uploads_from_test_split,
    wait_for_items,
)
from local.stack import LocalStack

pytestmark = pytest.mark.slow


# A flat grey picture: no class's hue or stripes. The model is still fairly sure of something
# (about 0.6 measured), so the stack runs with a threshold above its answer: it must come out LOW.
AMBIGUOUS_KEY = "uploads/ambiguous/grey.jpg"


def grey_jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (128, 128, 128)).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def threshold_above(body: bytes, served_model) -> str:
    """A LowConfidenceThreshold halfway between the model's answer for ``body`` and 1."""
    from dog_breeds.serving import inference

    model = inference.model_fn(str(served_model))
    best = inference.predict_fn(inference.input_fn(body, "image/jpeg"), model)["predictions"][0]
    return f"{math.ceil((best['probability'] + 1) / 2 * 1000) / 1000:g}"


@pytest.fixture(scope="module")
def run(served_model, tiny_dataset, tmp_path_factory):
    """Upload the test split plus the bad files once; the tests read what came of it."""
    log_dir = tmp_path_factory.mktemp("e2e-logs")
    grey = grey_jpeg()
    parameters = {"LowConfidenceThreshold": threshold_above(grey, served_model)}
    with LocalStack(served_model, parameters=parameters, log_dir=log_dir) as stack:
        good = uploads_from_test_split(tiny_dataset, "uploads/")
        uploads = [*good, *bad_uploads(good[0], "uploads/"), Upload(AMBIGUOUS_KEY, grey)]
        # A key outside the notification's prefix: S3 never sends it to the queue.
        stack.client("s3").put_object(
            Bucket=stack.facts.bucket, Key="elsewhere/ignored.jpg", Body=good[0].body
        )
        upload_all(stack.client("s3"), stack.facts.bucket, uploads)
        items = wait_for_items(stack.table(), stack.facts.bucket, [u.key for u in uploads], 180)
        assert stack.wait_idle(60)
        yield stack, uploads, items
    # Stopped in order, every function sandbox and endpoint worker (OpenVINO loaded) exits 0.
    sandboxes = stack.facts.event_source.maximum_concurrency
    assert stack.event_source.worker_exit_codes == [0] * sandboxes
    assert stack.container.worker_exit_codes == [0] * stack.endpoint_workers


def test_every_upload_ends_as_exactly_one_item(run):
    stack, uploads, items = run
    assert sorted(items) == sorted(u.key for u in uploads)  # nothing more, nothing less
    assert stack.dead_letters() == []


def test_bad_files_are_failed_items_with_a_reason_and_images_are_predicted(run):
    _, uploads, items = run
    for upload in uploads:
        item = items[upload.key]
        assert item["status"] == upload.expect, (upload.key, item)
        if upload.expect == "FAILED":
            assert item["error_type"] and item["error_message"]
            assert "breed" not in item
    failed = {
        u.key.rsplit("/", 1)[-1]: items[u.key]["error_type"]
        for u in uploads
        if u.expect == "FAILED"
    }
    # The failure table (docs/architecture.md): an empty object is refused by the function
    # without a call; the endpoint answers 400 to what is not an image or is cut short.
    assert failed == {
        "zero-bytes.jpg": "EmptyObject",
        "not-an-image.jpg": "ModelRejected400",
        "truncated.jpg": "ModelRejected400",
    }


def test_a_key_with_spaces_plus_and_accents_is_classified(run):
    _, _, items = run
    item = items["uploads/mon chien café (1)+copie.jpg"]
    assert item["status"] == "PREDICTED"


def test_top1_is_what_the_inference_script_gives_directly(run, served_model):
    from dog_breeds.serving import inference

    _, uploads, items = run
    model = inference.model_fn(str(served_model))
    for upload in uploads:
        if upload.expect != "PREDICTED":
            continue
        direct = inference.predict_fn(inference.input_fn(upload.body, "image/jpeg"), model)
        best = direct["predictions"][0]
        item = items[upload.key]
        assert item["breed"] == best["breed"], upload.key
        assert float(item["probability"]) == pytest.approx(best["probability"], abs=1e-4)
        assert item["model"]["version"] == model.version
        ranked = [p["breed"] for p in item["top_k"]]
        assert ranked[0] == item["breed"] and len(ranked) == int(
            run[0].facts.function.environment["TOP_K"]
        )


def test_the_model_beats_chance_on_the_uploaded_test_images(run):
    _, uploads, items = run
    scored = [u for u in uploads if u.true_class]
    correct = sum(items[u.key].get("breed") == u.true_class for u in scored)
    assert correct / len(scored) > 0.5  # 4 classes: chance is 0.25


def test_users_list_one_breeds_predictions_newest_first_without_a_scan(run):
    stack, _, items = run
    breed = next(i["breed"] for i in items.values() if i["status"] == "PREDICTED")
    page = stack.table().query(
        IndexName="by_breed",
        KeyConditionExpression=Key("breed").eq(breed),
        ScanIndexForward=False,
    )
    expected = {k for k, i in items.items() if i.get("breed") == breed}
    assert {i["key"] for i in page["Items"]} == expected
    times = [i["predicted_at"] for i in page["Items"]]
    assert times == sorted(times, reverse=True)
    assert all(isinstance(i["probability"], Decimal) for i in page["Items"])


def test_low_confidence_predictions_are_listed_by_their_index(run):
    stack, _, items = run
    threshold = float(stack.facts.function.environment["LOW_CONFIDENCE_THRESHOLD"])
    page = stack.table().query(
        IndexName="low_confidence",
        KeyConditionExpression=Key("confidence").eq("LOW"),
        ScanIndexForward=False,
    )
    expected = {
        k for k, i in items.items() if i["status"] == "PREDICTED" and i["probability"] < threshold
    }
    assert AMBIGUOUS_KEY in expected  # built to be below the threshold: never an empty check
    assert items[AMBIGUOUS_KEY]["confidence"] == "LOW"
    assert {i["key"] for i in page["Items"]} == expected
    assert all(i["confidence_threshold"] == Decimal(str(threshold)) for i in page["Items"])


def test_the_function_ran_as_the_stack_configured_it(run):
    stack, uploads, _ = run
    stats = stack.event_source.stats
    mapping = stack.facts.event_source
    # Every upload's message plus S3's test event was received once and deleted once; the key
    # outside the prefix never reached the queue.
    assert stats.messages_received == stats.messages_deleted == len(uploads) + 1
    assert stats.errors == 0 and stats.messages_reported_failed == 0
    assert all(len(r.message_ids) <= mapping.batch_size for r in stack.event_source.results)
    assert stats.max_concurrency_seen <= mapping.maximum_concurrency == 2  # the template's default
    assert mapping.report_batch_item_failures
    assert stack.facts.function.environment["ENDPOINT_NAME"] == stack.endpoint_name
    assert stack.facts.function.environment["TABLE_NAME"] == stack.facts.table
