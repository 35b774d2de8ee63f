"""The function's guards, through the whole offline stack: an object over MaxObjectBytes becomes
a FAILED item without ever being read (the sandbox's peak memory shows it), and a record naming
another bucket, even one S3 really sent to the upload queue, writes nothing."""

from __future__ import annotations

import pytest

from local.stack import LocalStack
from local.uploads import read_items, synthetic_images

pytestmark = pytest.mark.slow

LARGE_BYTES = 300 * 1024 * 1024
JPEG_START = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00"


@pytest.fixture(scope="module")
def stack(served_model, tmp_path_factory):
    from local.model_container import ToolkitContainer

    log_dir = tmp_path_factory.mktemp("guards-logs")
    with (
        ToolkitContainer(served_model) as container,
        LocalStack(None, container=container, log_dir=log_dir) as running,
    ):
        assert running.wait_idle(60)  # S3's test event, consumed
        yield running


def test_a_300_mb_upload_is_a_too_large_item_and_is_never_read(stack, capsys):
    key = "uploads/huge/300mb.jpg"
    body = JPEG_START + bytes(LARGE_BYTES - len(JPEG_START))
    stack.client("s3").put_object(Bucket=stack.facts.bucket, Key=key, Body=body)
    del body
    assert stack.wait_idle(120)

    item = read_items(stack.table(), stack.facts.bucket)[key]
    assert item["status"] == "FAILED" and item["error_type"] == "TooLarge"
    assert int(item["size"]) == LARGE_BYTES
    assert str(LARGE_BYTES) in item["error_message"]
    assert stack.endpoint.invocations == []
    # Refused on the event's size: no get_object step ran (a failed step would have no timing,
    # so this alone is not proof) ...
    assert "get_object" not in item["timings_ms"], item["timings_ms"]
    # ... and the body was never held: the sandbox's peak (Lambda's Max Memory Used) is below
    # the object's own size, which reading it would need. Not a tuned threshold: the figure
    # itself is printed below.
    peak = stack.event_source.stats.peak_memory_used_mb
    memory_size = stack.facts.function.memory_mb
    assert 0 < peak < LARGE_BYTES / 2**20
    with capsys.disabled():
        print(f"\n300 MB upload: TooLarge item; sandbox peak memory {peak} MB of {memory_size} MB")


def test_a_record_for_another_bucket_writes_nothing(stack):
    s3, upload_queue = stack.client("s3"), stack.facts.upload_queue
    other = "someone-elses-bucket"
    s3.create_bucket(Bucket=other)
    deleted_before = stack.event_source.stats.messages_deleted
    # The queue policy admits only the stack's bucket on AWS; moto does not enforce it, so
    # another bucket can really notify the upload queue, and only the function's guard remains.
    s3.put_bucket_notification_configuration(
        Bucket=other,
        NotificationConfiguration={
            "QueueConfigurations": [
                {"QueueArn": upload_queue.arn, "Events": ["s3:ObjectCreated:*"]}
            ]
        },
    )
    (image,) = synthetic_images(1, seed=7)
    s3.put_object(Bucket=other, Key="uploads/not-ours.jpg", Body=image)
    assert stack.wait_idle(60)

    assert read_items(stack.table(), other) == {}
    assert "uploads/not-ours.jpg" not in read_items(stack.table(), stack.facts.bucket)
    assert stack.endpoint.invocations == []
    # The message was consumed (deleted, not retried): its test event and its upload event.
    assert stack.event_source.stats.messages_deleted == deleted_before + 2
    assert stack.event_source.stats.errors == 0
    assert stack.dead_letters() == []
