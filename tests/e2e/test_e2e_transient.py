"""The endpoint fails for a while: nothing is lost. What the function cannot classify comes back
through the queue (visibility timeout), and what failed every one of its maxReceiveCount receives
waits in the dead-letter queue until ``classify_ops redrive`` moves it back and it gets its item.

The upload queue's visibility timeout is cut from the template's 1800 s to seconds here, so that
redeliveries come in seconds; nothing else differs from the deployed stack. It stays above the
longest invocation (AWS's advice): a batch still running is never handed out a second time.
"""

from __future__ import annotations

import threading

import pytest

from local.demo.uploads import Upload, read_items, synthetic_images, upload_all, wait_for_items
from local.endpoint.runtime import ContainerResponse, Fault
from local.function.event_source import queue_depth
from local.stack import LocalStack

pytestmark = pytest.mark.slow

VISIBILITY_TIMEOUT_S = 5  # above one image's endpoint retries (at most 1.75 s of backoff)


class PoisonableContainer:
    """The real container, except that it fails (HTTP 500, as a crashing model does) on the
    bodies in ``poisoned``."""

    def __init__(self, inner):
        self._inner = inner
        self._lock = threading.Lock()
        self.poisoned: set[bytes] = set()

    def ping(self) -> bool:
        return self._inner.ping()

    def invoke(self, body: bytes, *args, **kwargs) -> ContainerResponse:
        with self._lock:
            poisoned = body in self.poisoned
        if poisoned:
            return ContainerResponse(500, b"worker died on this image", "text/plain")
        return self._inner.invoke(body, *args, **kwargs)


@pytest.fixture(scope="module")
def container(served_model):
    from local.endpoint.container import ToolkitContainer

    with ToolkitContainer(served_model) as served:
        yield PoisonableContainer(served)


@pytest.fixture(scope="module")
def stack(container, tmp_path_factory):
    log_dir = tmp_path_factory.mktemp("transient-logs")
    with LocalStack(
        None, container=container, visibility_timeout_s=VISIBILITY_TIMEOUT_S, log_dir=log_dir
    ) as running:
        yield running


@pytest.fixture(autouse=True)
def clean_endpoint(stack, container):
    stack.endpoint.clear_faults()
    stack.endpoint.reset_log()
    container.poisoned.clear()
    yield
    stack.endpoint.clear_faults()
    container.poisoned.clear()


def _uploads(prefix: str, count: int, seed: int) -> list[Upload]:
    images = synthetic_images(count, size=64, seed=seed)
    return [Upload(f"uploads/{prefix}/{i:03d}.jpg", body) for i, body in enumerate(images)]


def _dead_letter_count(stack: LocalStack) -> int:
    return queue_depth(stack.client("sqs"), stack.facts.dead_letter_queue.url)


def test_a_mix_of_transient_endpoint_errors_loses_nothing(stack):
    uploads = _uploads("flaky", 8, seed=3)
    # Throttling, a model still loading, SageMaker's own 500 and a model's 5xx: all transient.
    for fault in (
        Fault.model_not_ready(),
        Fault.internal_failure(),
        Fault.model_error(503, "worker restarting"),
        Fault.service_unavailable(),
    ):
        stack.endpoint.inject_fault(fault, times=2)
    upload_all(stack.client("s3"), stack.facts.bucket, uploads)

    items = wait_for_items(stack.table(), stack.facts.bucket, [u.key for u in uploads], 120)
    assert stack.wait_idle(60)
    assert {items[u.key]["status"] for u in uploads} == {"PREDICTED"}
    assert _dead_letter_count(stack) == 0
    assert sum(i.status != 200 for i in stack.endpoint.invocations) == 8


def test_an_image_that_always_fails_waits_in_the_dead_letter_queue_until_redriven(
    stack, container, classify_ops
):
    uploads = _uploads("poison", 4, seed=5)
    poison = uploads[0]
    container.poisoned.add(poison.body)
    upload_all(stack.client("s3"), stack.facts.bucket, uploads)

    # Five receives, each failing only that message; then SQS moves it to the dead-letter queue.
    assert stack.wait_idle(180)
    items = read_items(stack.table(), stack.facts.bucket)
    assert {u.key for u in uploads[1:]} <= set(items) and poison.key not in items
    assert _dead_letter_count(stack) == 1

    container.poisoned.clear()  # the cause is fixed
    done = classify_ops(stack, "redrive")
    assert done.returncode == 0, done.stdout + done.stderr
    items = wait_for_items(stack.table(), stack.facts.bucket, [poison.key], 120)
    assert items[poison.key]["status"] == "PREDICTED"
    assert stack.wait_idle(60)
    assert _dead_letter_count(stack) == 0
