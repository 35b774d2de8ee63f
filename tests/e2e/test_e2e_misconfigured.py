"""The stack points at an endpoint that does not exist (not deployed yet, or torn down): no upload
is lost. Every message fails at once as a configuration error (no FAILED item blames the image),
goes round its maxReceiveCount receives into the dead-letter queue, and once the endpoint is back
``make redrive`` (the Make target, typed as docs/operations.md says) brings every upload back to
an item.

The visibility timeout is cut to seconds (a configuration error fails its message without any
retry inside the invocation), so the five receives take seconds, not five half-hours.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from local.demo.uploads import Upload, read_items, synthetic_images, upload_all, wait_for_items
from local.endpoint.container import ToolkitContainer
from local.function.event_source import queue_depth
from local.stack import LocalStack, offline_environ

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]
VISIBILITY_TIMEOUT_S = 2
UPLOADS = 3


def wait_for_dead_letters(stack: LocalStack, count: int, timeout: float) -> int:
    """The dead-letter queue's depth once it reaches ``count`` (or the timeout passes)."""
    sqs, url = stack.client("sqs"), stack.facts.dead_letter_queue.url
    deadline = time.monotonic() + timeout
    depth = queue_depth(sqs, url)
    while depth < count and time.monotonic() < deadline:
        time.sleep(0.5)
        depth = queue_depth(sqs, url)
    return depth


def make_redrive(stack: LocalStack) -> subprocess.CompletedProcess:
    """``make redrive STACK=... ARGS="--endpoint-url ..."`` with only the offline stack's dummy
    credentials, as ``make local`` prints it."""
    return subprocess.run(
        ["make", "--no-print-directory", "redrive", f"STACK={stack.stack_name}",
         f"ARGS=--endpoint-url {stack.moto_url}"],
        cwd=REPO_ROOT, env=offline_environ(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_an_unknown_endpoint_dead_letters_every_upload_until_fixed_and_make_redrive(
    served_model, tmp_path
):
    bodies = synthetic_images(UPLOADS, size=64, seed=7)
    uploads = [Upload(f"uploads/misconfigured/{i}.jpg", body) for i, body in enumerate(bodies)]
    keys = [u.key for u in uploads]
    with (
        ToolkitContainer(served_model) as container,
        LocalStack(
            None,
            container=container,
            visibility_timeout_s=VISIBILITY_TIMEOUT_S,
            log_dir=tmp_path / "logs",
        ) as stack,
    ):
        # The endpoint the stack names is gone: SageMaker answers ValidationError, not found.
        served = stack.endpoint.endpoints.pop(stack.endpoint_name)
        upload_all(stack.client("s3"), stack.facts.bucket, uploads)

        assert wait_for_dead_letters(stack, UPLOADS, 120) == UPLOADS
        assert stack.wait_idle(60)
        assert not set(keys) & set(read_items(stack.table(), stack.facts.bucket))
        unknown = [i for i in stack.endpoint.invocations if i.error_code == "ValidationError"]
        # Five receives of each message, each a single call: no retry of a configuration error.
        assert len(unknown) == 5 * UPLOADS

        stack.endpoint.endpoints[stack.endpoint_name] = served  # deployed again
        done = make_redrive(stack)
        assert done.returncode == 0, done.stdout + done.stderr
        items = wait_for_items(stack.table(), stack.facts.bucket, keys, 120)
        assert {items[k]["status"] for k in keys} == {"PREDICTED"}
        assert stack.wait_idle(60)
        assert queue_depth(stack.client("sqs"), stack.facts.dead_letter_queue.url) == 0
    assert container.last_exit_code == 0
