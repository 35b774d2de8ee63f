"""The endpoint goes down for a minute in the middle of a burst: nothing is lost. The handler
reports the messages it could not classify, the queue hands them out again after its visibility
timeout, and whatever failed all of its maxReceiveCount receives meanwhile waits in the
dead-letter queue until ``classify_ops redrive`` moves it back.

The visibility timeout is cut from the template's 1800 s to 5 s, below the up to 17.5 s a failing
batch of ten spends in the handler's backoff: during the outage messages are handed out again while
their batch still runs, as SQS does when the timeout is that short, so the first ones to fail reach
maxReceiveCount (5) within the 60 s outage and really go to the dead-letter queue; the redrive then
brings every one of them back as an item. (With the earlier 25 s, about three receives fit in the
outage and the dead-letter queue stayed empty: measured 0 of 200 twice.) A stack of its own: moto's
backends are per process, and this one must not share them with another module's stack.
"""

from __future__ import annotations

import time

import pytest

from local.demo.uploads import Upload, read_items, synthetic_images, upload_all, wait_for_items
from local.endpoint.runtime import Fault
from local.function.event_source import queue_depth
from local.stack import LocalStack

pytestmark = pytest.mark.slow

OUTAGE_S = 60
OUTAGE_VISIBILITY_TIMEOUT_S = 5
BURST = 200


@pytest.fixture(scope="module")
def container(served_model):
    from local.endpoint.container import ToolkitContainer

    with ToolkitContainer(served_model) as served:
        yield served


def test_an_outage_in_the_middle_of_a_burst_loses_nothing(
    container, classify_ops, tmp_path, capsys
):
    images = synthetic_images(BURST, size=64, seed=2)
    uploads = [Upload(f"uploads/outage/{i:03d}.jpg", body) for i, body in enumerate(images)]
    keys = [u.key for u in uploads]
    with LocalStack(
        None,
        container=container,
        visibility_timeout_s=OUTAGE_VISIBILITY_TIMEOUT_S,
        log_dir=tmp_path / "logs",
    ) as stack:
        s3, table, bucket = stack.client("s3"), stack.table(), stack.facts.bucket
        upload_all(s3, bucket, uploads[:100])
        wait_for_items(table, bucket, keys[:10], 120)  # the burst is being classified ...
        stack.endpoint.inject_fault(Fault.service_unavailable(), seconds=OUTAGE_S)  # ... not now
        outage_ends = time.monotonic() + OUTAGE_S
        upload_all(s3, bucket, uploads[100:])

        time.sleep(max(0.0, outage_ends - time.monotonic()))
        assert stack.wait_idle(600)
        before = {k: i for k, i in read_items(table, bucket).items() if k in set(keys)}
        dead = queue_depth(stack.client("sqs"), stack.facts.dead_letter_queue.url)
        failed = sum(i.error_code == "ServiceUnavailable" for i in stack.endpoint.invocations)
        stats = stack.event_source.stats
        # Every upload is either classified or waits in the dead-letter queue; none is lost, and
        # some really went there (five receives within the outage).
        assert len(before) + dead == len(uploads)
        assert dead > 0
        assert {i["status"] for i in before.values()} == {"PREDICTED"}
        # The outage was met: whole batches failed (every message of them back) or single ones.
        assert failed > 0 and stats.errors + stats.messages_reported_failed > 0

        done = classify_ops(stack, "redrive")
        assert done.returncode == 0, done.stdout + done.stderr
        after = wait_for_items(table, bucket, keys, 300)
        assert stack.wait_idle(120)
        assert {after[k]["status"] for k in keys} == {"PREDICTED"}
        assert queue_depth(stack.client("sqs"), stack.facts.dead_letter_queue.url) == 0
    with capsys.disabled():
        print(
            f"\noutage of {OUTAGE_S} s mid-burst: {len(uploads)} uploads; when it ended "
            f"{len(before)} items, {dead} in the dead-letter queue ({failed} failed endpoint "
            f"calls; {stats.errors} invocations failed whole, "
            f"{stats.messages_reported_failed} messages reported failed alone, all redelivered); "
            f"after the redrive {sum(k in after for k in keys)} items"
        )
