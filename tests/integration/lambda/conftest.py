"""Handler tests: the real template deployed into a moto server, the endpoint over real HTTP.

S3 and DynamoDB are the session's moto server (``tests/integration/conftest.py``); the endpoint
is ``local.endpoint.runtime`` serving a scripted container; boto3 reaches both only through
``AWS_ENDPOINT_URL_*``, as on Lambda.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import boto3
import pytest
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError
from PIL import Image

from local.aws.deploy import StackInfo, deploy_stack
from local.aws.translate import load_template
from local.endpoint.runtime import ContainerResponse, SageMakerRuntimeServer

REPO_ROOT = Path(__file__).resolve().parents[3]
EVENTS_DIR = REPO_ROOT / "events"
ENDPOINT_NAME = "dog-breeds-test"
REGION = "us-east-1"
BREEDS = ["Labrador_retriever", "Beagle", "Poodle", "Dachshund", "Boxer"]

# Read by Powertools when app.py is imported: no X-Ray daemon here, metrics need a namespace.
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "1")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "DogBreeds")
os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "classify_upload")
# The modules' child loggers need their parent, which app.py creates on Lambda; tests that call the
# modules without importing app (tests/lambda/test_upload_units.py run alone) get it from here.
Logger()

# Imported after the parent logger exists: their child loggers attach to it at import.
from classify_upload.classify import EventSummary  # noqa: E402
from classify_upload.errors import MessageFailed  # noqa: E402


@dataclass
class ContainerCall:
    body: bytes
    content_type: str
    custom_attributes: str | None
    image_size: tuple[int, int] | None
    top_left_rgb: tuple[int, ...] | None
    top_right_rgb: tuple[int, ...] | None


@dataclass
class ScriptedContainer:
    """A serving container whose answers the test decides.

    Default: decodes the body with Pillow (400 if it cannot, as the real endpoint does), then
    answers the endpoint contract's JSON with ``BREEDS`` ranked by ``breed_for`` (a function of
    the body, so different images get different breeds), truncated to ``top_k`` from the custom
    attributes. ``script[body] = ContainerResponse(...)`` overrides the answer for one body.
    """

    calls: list[ContainerCall] = field(default_factory=list)
    script: dict[bytes, ContainerResponse] = field(default_factory=dict)
    model_version: str = "0123456789ab"
    probabilities: tuple[float, ...] = (0.6, 0.2, 0.1, 0.06, 0.04)

    def ping(self) -> bool:
        return True

    @staticmethod
    def breed_for(body: bytes) -> str:
        return BREEDS[sum(body[-64:]) % len(BREEDS)]

    def invoke(
        self,
        body: bytes,
        content_type: str,
        accept: str = "application/json",
        custom_attributes: str | None = None,
    ) -> ContainerResponse:
        size = top_left = top_right = None
        try:
            with Image.open(io.BytesIO(body)) as image:
                rgb = image.convert("RGB")
                size = rgb.size
                top_left = rgb.getpixel((5, 5))
                top_right = rgb.getpixel((rgb.width - 6, 5))
        except Exception:
            pass
        self.calls.append(
            ContainerCall(body, content_type, custom_attributes, size, top_left, top_right)
        )
        if body in self.script:
            return self.script[body]
        if size is None:
            message = json.dumps({"error": "the body is not a decodable image"}).encode()
            return ContainerResponse(400, message)
        top_k = 5
        for part in (custom_attributes or "").split(","):
            name, _, value = part.strip().partition("=")
            if name == "top_k":
                top_k = int(value)
        best = self.breed_for(body)
        ranked = [best] + [b for b in BREEDS if b != best]
        predictions = [
            {"breed": b, "index": BREEDS.index(b), "probability": p}
            for b, p in zip(ranked, self.probabilities, strict=True)
        ][:top_k]
        payload = {
            "predictions": predictions,
            "top_k": top_k,
            "model": {"name": "resnet50", "version": self.model_version, "runtime": "pytorch"},
        }
        return ContainerResponse(200, json.dumps(payload).encode())


@dataclass
class FakeLambdaContext:
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_name: str = "classify_upload"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = f"arn:aws:lambda:{REGION}:123456789012:function:classify_upload"
    log_group_name: str = "/aws/lambda/classify_upload"
    log_stream_name: str = "local"
    remaining_ms: int = 300_000

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


@pytest.fixture(scope="module")
def container() -> ScriptedContainer:
    return ScriptedContainer()


@pytest.fixture(scope="module")
def runtime(container: ScriptedContainer) -> Iterator[SageMakerRuntimeServer]:
    with SageMakerRuntimeServer({ENDPOINT_NAME: container}, max_workers=1) as server:
        yield server


@pytest.fixture(scope="module")
def aws_env(moto_url: str, runtime: SageMakerRuntimeServer) -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        for name, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "AWS_ENDPOINT_URL_S3": moto_url,
            "AWS_ENDPOINT_URL_DYNAMODB": moto_url,
            "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": runtime.url,
        }.items():
            mp.setenv(name, value)
        mp.delenv("AWS_PROFILE", raising=False)
        yield


@pytest.fixture(scope="module")
def stack(aws_env: None, moto_url: str, request: pytest.FixtureRequest) -> StackInfo:
    """One stack per test module (they share the session's moto server)."""
    session = boto3.session.Session(region_name=REGION)
    module = request.module.__name__.rsplit(".", 1)[-1].replace("_", "-")
    info = deploy_stack(
        session,
        REPO_ROOT / "template.yaml",
        f"dog-breeds-{module}",
        {"EndpointName": ENDPOINT_NAME, "TopK": "3"},
        endpoint_url=moto_url,
    )
    # moto's CloudFormation does not apply VersioningConfiguration; the template enables it.
    status = load_template()["Resources"]["UploadBucket"]["Properties"]["VersioningConfiguration"]
    session.client("s3").put_bucket_versioning(
        Bucket=info.bucket_name, VersioningConfiguration=status
    )
    return info


@pytest.fixture(scope="module")
def app_module(stack: StackInfo) -> Iterator[Any]:
    """``app`` imported with the deployed function's environment, as Lambda would run it."""
    with pytest.MonkeyPatch.context() as mp:
        for name, value in stack.environment.items():
            mp.setenv(name, value)
        from classify_upload import handler
        from classify_upload.endpoint import RetryPolicy
        from classify_upload.settings import Settings

        mp.setattr(handler, "SETTINGS", Settings.from_env())
        # Same backoff shape, milliseconds instead of seconds: the tests stay fast.
        mp.setattr(handler, "RETRY_POLICY", RetryPolicy(max_attempts=4, base_delay_s=0.005))
        handler.get_clients.cache_clear()
        yield handler
        handler.get_clients.cache_clear()


@pytest.fixture
def fresh(runtime: SageMakerRuntimeServer, container: ScriptedContainer) -> Iterator[None]:
    """Each test starts with no faults, an empty call log and no scripted answers."""
    runtime.clear_faults()
    runtime.reset_log()
    container.calls.clear()
    container.script.clear()
    container.model_version = "0123456789ab"
    container.probabilities = (0.6, 0.2, 0.1, 0.06, 0.04)
    yield
    runtime.clear_faults()


@pytest.fixture(scope="module")
def s3(aws_env: None) -> Any:
    return boto3.client("s3", region_name=REGION)


@pytest.fixture(scope="module")
def table(aws_env: None, stack: StackInfo) -> Any:
    return boto3.resource("dynamodb", region_name=REGION).Table(stack.table_name)


_sequencers = itertools.count(0x62F4E7A1B2C30000)


def next_sequencer() -> str:
    """Increasing, realistically shaped S3 sequencers (uppercase hex, leading zeros)."""
    return f"00{next(_sequencers):X}"


def s3_record(
    bucket: str,
    key: str,
    *,
    size: int = 0,
    etag: str = "",
    version_id: str | None = None,
    sequencer: str | None = None,
    event_name: str = "ObjectCreated:Put",
) -> dict[str, Any]:
    """One record exactly as S3 shapes it: the key URL-encoded with ``+`` for spaces."""
    obj: dict[str, Any] = {
        "key": quote_plus(key, safe="/"),
        "size": size,
        "eTag": etag,
        "sequencer": sequencer or next_sequencer(),
    }
    if version_id:
        obj["versionId"] = version_id
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": REGION,
        "eventTime": "2026-11-25T03:00:00.000Z",
        "eventName": event_name,
        "userIdentity": {"principalId": "AWS:AIDAEXAMPLE"},
        "requestParameters": {"sourceIPAddress": "203.0.113.10"},
        "responseElements": {"x-amz-request-id": uuid.uuid4().hex[:16].upper(), "x-amz-id-2": "x"},
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "ClassifyUploadFunctionImageUploaded",
            "bucket": {
                "name": bucket,
                "ownerIdentity": {"principalId": "A3NL1KOZZKExample"},
                "arn": f"arn:aws:s3:::{bucket}",
            },
            "object": obj,
        },
    }


@pytest.fixture
def upload(s3: Any, stack: StackInfo) -> Callable[..., dict[str, Any]]:
    """Put an object in the stack's bucket; return the S3 record its upload would produce."""

    def _upload(key: str, body: bytes, sequencer: str | None = None) -> dict[str, Any]:
        response = s3.put_object(Bucket=stack.bucket_name, Key=key, Body=body)
        return s3_record(
            stack.bucket_name,
            key,
            size=len(body),
            etag=response["ETag"].strip('"'),
            version_id=response.get("VersionId"),
            sequencer=sequencer,
        )

    return _upload


def sqs_record(body: Any, *, receive_count: int = 1) -> dict[str, Any]:
    """One message of the upload queue as Lambda's SQS event source hands it to the function."""
    text = body if isinstance(body, str) else json.dumps(body)
    return {
        "messageId": str(uuid.uuid4()),
        "receiptHandle": uuid.uuid4().hex,
        "body": text,
        "attributes": {
            "ApproximateReceiveCount": str(receive_count),
            "SentTimestamp": "1764558000000",
            "SenderId": "AIDAEXAMPLE",
            "ApproximateFirstReceiveTimestamp": "1764558000100",
        },
        "messageAttributes": {},
        "md5OfBody": hashlib.md5(text.encode()).hexdigest(),
        "eventSource": "aws:sqs",
        "eventSourceARN": f"arn:aws:sqs:{REGION}:123456789012:dog-breeds-UploadQueue",
        "awsRegion": REGION,
    }


def sqs_event(*bodies: Any) -> dict[str, Any]:
    return {"Records": [sqs_record(b) for b in bodies]}


@pytest.fixture
def summaries(app_module: Any, monkeypatch: pytest.MonkeyPatch) -> list[EventSummary]:
    """Every message's summary, as ``classify_event`` returned it (a spy: it changes nothing)."""
    seen: list[EventSummary] = []
    real = app_module.classify_event

    def spy(*args: Any, **kwargs: Any) -> EventSummary:
        summary = real(*args, **kwargs)
        seen.append(summary)
        return summary

    monkeypatch.setattr(app_module, "classify_event", spy)
    return seen


@pytest.fixture
def deliver(app_module: Any, fresh: None) -> Callable[..., dict[str, Any]]:
    """Run the handler as Lambda's SQS event source does: a batch of messages and a context.

    Returns the handler's response (``batchItemFailures``). A batch whose every message failed
    makes Powertools raise ``BatchProcessingError``, as on Lambda (the invocation errors).
    """

    def _deliver(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
        return app_module.lambda_handler(event, context or FakeLambdaContext())

    return _deliver


@pytest.fixture
def invoke(
    deliver: Callable[..., dict[str, Any]], summaries: list[EventSummary], app_module: Any
) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """Deliver one S3 event as the body of one queue message, through the real handler.

    Returns what that message came to (counts from its ``EventSummary``); raises
    ``MessageFailed`` with the handler's reason when the message was reported failed.
    """

    def _invoke(body: dict[str, Any]) -> dict[str, Any]:
        event = sqs_event(body)
        start = len(summaries)
        try:
            response = deliver(event)
            failed = bool(response["batchItemFailures"])
        except BatchProcessingError:
            failed = True
        summary = summaries[start] if len(summaries) > start else EventSummary()
        if failed:
            reason = app_module.retry_reason(summary) if summary.retry_later else "failed"
            raise MessageFailed(reason)
        return {
            "test_event": summary.test_event,
            "predicted": summary.count("PREDICTED"),
            "failed": summary.count("FAILED"),
            "duplicate_or_stale": summary.stale,
            "skipped": summary.skipped,
            "other_bucket": summary.foreign,
            "superseded": summary.superseded,
            "retry_later": [key for key, _ in summary.retry_later],
        }

    return _invoke


@pytest.fixture
def unique_prefix() -> str:
    """Keys of one test never meet another test's items."""
    return f"uploads/{uuid.uuid4().hex[:8]}/"


def jpeg_bytes(
    size: tuple[int, int] = (64, 48), color: tuple[int, int, int] = (200, 120, 40), **save: Any
) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, format="JPEG", **save)
    return out.getvalue()


def load_event(name: str, bucket: str) -> dict[str, Any]:
    """An event from events/, pointed at the test stack's bucket."""
    event = json.loads((EVENTS_DIR / name).read_text(encoding="utf-8"))
    for record in event.get("Records", []):
        record["s3"]["bucket"]["name"] = bucket
        record["s3"]["bucket"]["arn"] = f"arn:aws:s3:::{bucket}"
    if "Bucket" in event:
        event["Bucket"] = bucket
    return event


@pytest.fixture
def make_record() -> Callable[..., dict[str, Any]]:
    return s3_record


@pytest.fixture
def jpeg() -> Callable[..., bytes]:
    return jpeg_bytes


@pytest.fixture
def event_file(stack: StackInfo) -> Callable[[str], dict[str, Any]]:
    return lambda name: load_event(name, stack.bucket_name)


@dataclass(frozen=True)
class QueueMessages:
    """Builders for what Lambda's SQS event source hands the function (tests import no conftest)."""

    record: Callable[..., dict[str, Any]] = sqs_record
    event: Callable[..., dict[str, Any]] = sqs_event
    context: Callable[..., FakeLambdaContext] = FakeLambdaContext


@pytest.fixture
def messages() -> QueueMessages:
    return QueueMessages()


@pytest.fixture(scope="module")
def sam_alarm_metrics() -> list[tuple[str, str, list[dict[str, str]]]]:
    """(namespace, metric name, dimensions) of every metric the failed-ratio alarm reads."""
    alarm = load_template()["Resources"]["FailedRatioAlarm"]["Properties"]
    return [
        (
            m["MetricStat"]["Metric"]["Namespace"],
            m["MetricStat"]["Metric"]["MetricName"],
            m["MetricStat"]["Metric"]["Dimensions"],
        )
        for m in alarm["Metrics"]
        if "MetricStat" in m
    ]
