"""The endpoint fails for a while: nothing is lost. It stays down: the events wait in the
failure queue (Lambda's on-failure destination), still not lost."""

from __future__ import annotations

import urllib.parse

import pytest

from local.sagemaker_runtime import Fault
from local.stack import LocalStack
from local.uploads import Upload, synthetic_images, upload_all, wait_for_items

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stack(served_model, tmp_path_factory):
    from local.model_container import ToolkitContainer

    log_dir = tmp_path_factory.mktemp("transient-logs")
    # Lambda's async retries come 0.5 s and 1 s apart here (minutes on AWS).
    with LocalStack(
        None, container=ToolkitContainer(served_model), retry_delays_s=(0.5, 1.0), log_dir=log_dir
    ) as running:
        yield running


@pytest.fixture(autouse=True)
def clean_endpoint(stack):
    stack.endpoint.clear_faults()
    stack.endpoint.reset_log()
    yield
    stack.endpoint.clear_faults()


def _uploads(prefix: str, count: int, seed: int) -> list[Upload]:
    images = synthetic_images(count, size=64, seed=seed)
    return [Upload(f"uploads/{prefix}/{i:03d}.jpg", body) for i, body in enumerate(images)]


def test_an_outage_is_ridden_out_by_the_handlers_and_lambdas_retries(stack):
    uploads = _uploads("outage", 12, seed=2)
    # The next 10 calls fail. The function has 2 sandboxes, so one of them meets at least 4 in a
    # row: all of its in-invocation attempts fail, and Lambda's async retry must take over. No
    # event can meet the 12 failures (3 invocations x 4 attempts) that would exhaust it.
    stack.endpoint.inject_fault(Fault.service_unavailable(), times=10)
    retries_before = stack.invoker.stats.retries
    upload_all(stack.client("s3"), stack.facts.bucket, uploads)

    items = wait_for_items(stack.table(), stack.facts.bucket, [u.key for u in uploads], 120)
    assert stack.wait_idle(30)

    assert sorted(items) == sorted(u.key for u in uploads)
    assert {items[u.key]["status"] for u in uploads} == {"PREDICTED"}
    errors = [i for i in stack.endpoint.invocations if i.error_code == "ServiceUnavailable"]
    assert len(errors) == 10
    assert stack.invoker.stats.retries > retries_before  # Lambda's own retry was needed
    assert stack.failure_records() == []


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

    items = wait_for_items(stack.table(), stack.facts.bucket, [u.key for u in uploads], 90)
    assert stack.wait_idle(30)
    assert {items[u.key]["status"] for u in uploads} == {"PREDICTED"}
    assert stack.failure_records() == []
    assert sum(i.status != 200 for i in stack.endpoint.invocations) == 8


def test_when_the_endpoint_stays_down_the_events_wait_in_the_failure_queue(stack):
    uploads = _uploads("down", 4, seed=4)
    stack.endpoint.inject_fault(Fault.service_unavailable(), seconds=600)
    upload_all(stack.client("s3"), stack.facts.bucket, uploads)

    assert stack.wait_idle(120), "the function never gave up"
    records = stack.failure_records()
    failed_keys = sorted(
        urllib.parse.unquote_plus(r["requestPayload"]["Records"][0]["s3"]["object"]["key"])
        for r in records
    )
    assert failed_keys == sorted(u.key for u in uploads)
    for record in records:
        context = record["requestContext"]
        assert context["condition"] == "RetriesExhausted"
        assert context["approximateInvokeCount"] == 1 + stack.facts.function.max_retry_attempts
        assert context["functionArn"].startswith(stack.facts.function.function_arn)
        assert record["responseContext"]["functionError"] == "Unhandled"
        assert record["responsePayload"]["errorMessage"]
    # Nothing half-done: no item claims a result for an image that was never classified.
    items = wait_for_items(stack.table(), stack.facts.bucket, [], 0)
    assert not {u.key for u in uploads} & set(items)
