"""The function's guards, through the whole offline stack: an object over MaxObjectBytes becomes
a FAILED item without ever being read (S3 never answers a GetObject for it), and a record naming
another bucket, even one S3 really sent to the upload queue, writes nothing. The sandbox's peak
memory for such an upload is measured by ``make hostile``, not asserted here."""

from __future__ import annotations

import pytest

from local.demo.uploads import read_items, synthetic_images
from local.stack import LocalStack

pytestmark = pytest.mark.slow

LARGE_BYTES = 300 * 1024 * 1024
JPEG_START = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00"


@pytest.fixture(scope="module")
def stack(served_model, tmp_path_factory):
    from local.endpoint.container import ToolkitContainer

    log_dir = tmp_path_factory.mktemp("guards-logs")
    with (
        ToolkitContainer(served_model) as container,
        LocalStack(None, container=container, log_dir=log_dir) as running,
    ):
        assert running.wait_idle(60)  # S3's test event, consumed
        yield running


@pytest.fixture
def object_reads(monkeypatch):
    """The keys moto's S3 answers a GetObject for, in this process (the stack's moto server runs
    here; the function's sandboxes call it over HTTP)."""
    from moto.s3.responses import S3Response

    reads: list[str] = []
    get_object = S3Response.get_object

    def recording_get_object(self):
        reads.append(self.parse_key_name())
        return get_object(self)

    monkeypatch.setattr(S3Response, "get_object", recording_get_object)
    return reads


def test_a_300_mb_upload_is_a_too_large_item_and_is_never_read(stack, object_reads):
    key = "uploads/huge/300mb.jpg"
    (small,) = synthetic_images(1, seed=3)
    body = JPEG_START + bytes(LARGE_BYTES - len(JPEG_START))
    stack.client("s3").put_object(Bucket=stack.facts.bucket, Key=key, Body=body)
    del body
    # An ordinary upload after it, so the recorder is shown to see the function's reads.
    stack.client("s3").put_object(
        Bucket=stack.facts.bucket, Key="uploads/huge/small.jpg", Body=small
    )
    assert stack.wait_idle(120)

    items = read_items(stack.table(), stack.facts.bucket)
    item = items[key]
    assert item["status"] == "FAILED" and item["error_type"] == "TooLarge"
    assert int(item["size"]) == LARGE_BYTES
    assert str(LARGE_BYTES) in item["error_message"]
    assert "get_object" not in item["timings_ms"], item["timings_ms"]
    # Refused on the event's size: S3 was never asked for the body, and the endpoint never saw
    # it; the ordinary upload was read (once) and classified.
    assert key not in object_reads
    assert object_reads.count("uploads/huge/small.jpg") == 1
    assert items["uploads/huge/small.jpg"]["status"] == "PREDICTED"
    assert len(stack.endpoint.invocations) == 1


def test_a_record_for_another_bucket_writes_nothing(stack):
    s3, upload_queue = stack.client("s3"), stack.facts.upload_queue
    other = "someone-elses-bucket"
    s3.create_bucket(Bucket=other)
    deleted_before = stack.event_source.stats.messages_deleted
    invocations_before = len(stack.endpoint.invocations)
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
    assert len(stack.endpoint.invocations) == invocations_before
    # The message was consumed (deleted, not retried): its test event and its upload event.
    assert stack.event_source.stats.messages_deleted == deleted_before + 2
    assert stack.event_source.stats.errors == 0
    assert stack.dead_letters() == []
