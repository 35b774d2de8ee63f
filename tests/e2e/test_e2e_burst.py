"""A burst of uploads against the event source's concurrency cap and the endpoint's two model
server workers (TorchServe's one per vCPU of an ml.t2.medium): the burst waits in the queue,
nothing is lost, nothing is done twice, and the end-to-end rate is measured.

200 uploads in `make test`; DOG_BREEDS_BURST_UPLOADS=1000 (with -s to see the printed rate) runs
docs/testing.md's burst of 1,000, and DOG_BREEDS_BURST_WORKERS=1 the endpoint with one worker."""

from __future__ import annotations

import os
import threading
import time
from collections import Counter

import pytest

from local.demo.uploads import Upload, synthetic_images, upload_all, wait_for_items
from local.endpoint.container import ENDPOINT_WORKERS, WorkerPool
from local.stack import LocalStack

BURST = int(os.environ.get("DOG_BREEDS_BURST_UPLOADS", "200"))
WORKERS = int(os.environ.get("DOG_BREEDS_BURST_WORKERS", str(ENDPOINT_WORKERS)))
CONCURRENCY_CAP = 2


class ConcurrencyMeter:
    """Wraps a container and records the most invocations it ever served at once."""

    def __init__(self, inner):
        self._inner = inner
        self._lock = threading.Lock()
        self._now = 0
        self.peak = 0
        self.calls = 0

    def ping(self) -> bool:
        return self._inner.ping()

    def invoke(self, *args, **kwargs):
        with self._lock:
            self._now += 1
            self.calls += 1
            self.peak = max(self.peak, self._now)
        try:
            return self._inner.invoke(*args, **kwargs)
        finally:
            with self._lock:
                self._now -= 1


@pytest.mark.slow
def test_a_burst_of_uploads_ends_as_exactly_one_item_each(served_model, tmp_path, capsys):
    uploads = [
        Upload(f"uploads/burst/{i:04d}.jpg", body)
        for i, body in enumerate(synthetic_images(BURST, size=64, seed=1))
    ]
    with (
        WorkerPool(served_model, WORKERS) as workers,
        LocalStack(
            None,
            container=(container := ConcurrencyMeter(workers)),
            parameters={"MaxConcurrency": str(CONCURRENCY_CAP)},
            endpoint_workers=WORKERS,
            log_dir=tmp_path / "logs",
        ) as stack,
    ):
        assert stack.facts.event_source.maximum_concurrency == CONCURRENCY_CAP
        started = time.perf_counter()
        upload_all(stack.client("s3"), stack.facts.bucket, uploads, workers=16)
        uploaded_in = time.perf_counter() - started
        items = wait_for_items(
            stack.table(), stack.facts.bucket, [u.key for u in uploads], timeout_s=900
        )
        seconds = time.perf_counter() - started
        assert stack.wait_idle(60)
        stats = stack.event_source.stats
        results = list(stack.event_source.results)
        dead_letters = stack.dead_letters()
        endpoint_calls = [i for i in stack.endpoint.invocations if i.status == 200]

    assert len(items) == BURST, f"{BURST - len(items)} uploads have no item"
    assert {item["status"] for item in items.values()} == {"PREDICTED"}
    assert dead_letters == []
    # Nothing twice: each message (every upload's, plus S3's test event) was received once and
    # deleted once, and the model saw each upload once.
    assert stats.messages_received == stats.messages_deleted == BURST + 1
    assert stats.errors == 0 and stats.messages_reported_failed == 0
    assert len(endpoint_calls) == BURST == container.calls
    received = Counter(m for r in results for m in r.message_ids)
    assert len(received) == BURST + 1 and max(received.values()) == 1
    # The caps held: never more invocations than MaximumConcurrency, nor model calls than workers,
    # and both workers were used; the burst went in batches rather than one invocation per upload.
    assert stats.max_concurrency_seen <= CONCURRENCY_CAP
    assert container.peak == min(CONCURRENCY_CAP, WORKERS)
    assert stats.invocations < BURST

    rate = BURST / seconds
    with capsys.disabled():
        print(
            f"\nburst: {BURST} uploads → {len(items)} items in {seconds:.1f} s end to end "
            f"({rate:.1f} uploads/s; uploading took {uploaded_in:.1f} s; "
            f"{stats.invocations} invocations, {BURST / stats.invocations:.1f} messages each; "
            f"MaximumConcurrency {CONCURRENCY_CAP}, endpoint workers {WORKERS})"
        )
