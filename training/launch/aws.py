"""Where the launchers meet AWS: one boto3 session, the SageMaker session, and dry runs.

Every AWS call of every stage goes through the boto3 session built here, so a dry run is one
botocore event handler: calls that would change something (Create*, Put*, Delete*, Invoke* ...)
are printed with their exact parameters and answered locally; reads (Describe*, Get*, List*, Head*)
still go to AWS, so a dry run may need credentials when a stage must look something up first.
"""

from __future__ import annotations

import io
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

import boto3
from botocore.awsrequest import AWSResponse
from botocore.response import StreamingBody

# Operations that only read. Everything else is treated as a change and stubbed in a dry run.
READ_ONLY_PREFIXES = ("Describe", "Get", "List", "Head", "Search", "BatchGet", "Scan", "Query")

# The SDK's opt-out of its usage telemetry (an HTTP GET per SDK call): a launcher that promises
# "a dry run sends nothing" must not phone home, and offline runs must not wait for it.
SDK_CONFIG: dict[str, Any] = {
    "SchemaVersion": "1.0",
    "SageMaker": {"PythonSDK": {"Modules": {"TelemetryOptOut": True}}},
}

DEFAULT_PREFIX = "dog-breeds"


class LaunchError(Exception):
    """A user-facing problem (missing role, bad argument): printed as one line, exit code 2."""


def resolve_region(explicit: str | None) -> str:
    region = explicit or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if not region:
        region = boto3.Session().region_name
    if not region:
        raise LaunchError("no AWS region: pass --region or set AWS_REGION")
    return region


def resolve_role(explicit: str | None) -> str:
    role = explicit or os.environ.get("SAGEMAKER_ROLE_ARN")
    if not role:
        raise LaunchError(
            "no SageMaker execution role: pass --role arn:aws:iam::ACCOUNT:role/NAME "
            "or set SAGEMAKER_ROLE_ARN"
        )
    if not role.startswith("arn:"):
        raise LaunchError(
            f"--role must be an IAM role ARN (arn:aws:iam::...:role/...), not {role!r}"
        )
    return role


def _printable(value: Any) -> Any:
    """Request parameters as JSON can show them: bytes and file objects become a size note."""
    if isinstance(value, dict):
        return {k: _printable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_printable(v) for v in value]
    if isinstance(value, bytes | bytearray):
        return f"<{len(value)} bytes>"
    if hasattr(value, "read"):
        return "<file body>"
    return value


@dataclass
class RequestLog:
    """Records the parameters of every AWS call; in a dry run, answers changes locally."""

    dry_run: bool = False
    out: TextIO = field(default_factory=lambda: sys.stdout)
    calls: list[dict[str, Any]] = field(default_factory=list)

    def attach(self, boto_session: boto3.Session) -> None:
        # Both must be registered before the SDK creates its clients (they copy the emitter).
        boto_session.events.register("before-parameter-build", self._remember_params)
        boto_session.events.register("before-call", self._before_call)

    def _remember_params(self, params: dict, model: Any, context: dict, **_: Any) -> None:
        context["launch_api_params"] = dict(params)

    def changes(self) -> list[dict[str, Any]]:
        return [c for c in self.calls if not c["operation"].startswith(READ_ONLY_PREFIXES)]

    def find(self, operation: str) -> list[dict[str, Any]]:
        return [c["params"] for c in self.calls if c["operation"] == operation]

    def _before_call(self, model: Any, context: dict, **_: Any) -> tuple | None:
        operation = model.name
        service = model.service_model.service_name
        params = context.get("launch_api_params", {})
        self.calls.append({"service": service, "operation": operation, "params": params})
        if not self.dry_run or operation.startswith(READ_ONLY_PREFIXES):
            return None
        print(f"# dry run: would call {service} {operation}", file=self.out)
        print(json.dumps(_printable(params), indent=2, sort_keys=True, default=str), file=self.out)
        response = _stub_response(operation, params)
        response["ResponseMetadata"] = {"HTTPStatusCode": 200, "RequestId": "dry-run"}
        return AWSResponse("https://dry-run.invalid", 200, {}, None), response


def _stub_response(operation: str, params: dict) -> dict[str, Any]:
    """The least a caller reads back from a change it believes was made."""
    arn = "arn:aws:sagemaker:dry-run:000000000000:{}/{}"
    stubs: dict[str, Callable[[], dict[str, Any]]] = {
        "CreateTrainingJob": lambda: {
            "TrainingJobArn": arn.format("training-job", params.get("TrainingJobName"))
        },
        "CreateHyperParameterTuningJob": lambda: {
            "HyperParameterTuningJobArn": arn.format(
                "hyper-parameter-tuning-job", params.get("HyperParameterTuningJobName")
            )
        },
        "CreateModel": lambda: {"ModelArn": arn.format("model", params.get("ModelName"))},
        "CreateEndpointConfig": lambda: {
            "EndpointConfigArn": arn.format("endpoint-config", params.get("EndpointConfigName"))
        },
        "CreateEndpoint": lambda: {
            "EndpointArn": arn.format("endpoint", params.get("EndpointName"))
        },
        "UpdateEndpoint": lambda: {
            "EndpointArn": arn.format("endpoint", params.get("EndpointName"))
        },
        "RegisterScalableTarget": lambda: {
            "ScalableTargetARN": "arn:aws:application-autoscaling:dry-run:000000000000:"
            "scalable-target/dry-run"
        },
        "PutScalingPolicy": lambda: {
            "PolicyARN": "arn:aws:autoscaling:dry-run:000000000000:scalingPolicy:dry-run:"
            f"resource/sagemaker/{params.get('ResourceId')}:policyName/{params.get('PolicyName')}",
            "Alarms": [],
        },
        "PutObject": lambda: {"ETag": '"dry-run"'},
        "CreateMultipartUpload": lambda: {
            "UploadId": "dry-run",
            "Bucket": params.get("Bucket"),
            "Key": params.get("Key"),
        },
        "UploadPart": lambda: {"ETag": '"dry-run"'},
        "InvokeEndpoint": lambda: {
            "Body": StreamingBody(io.BytesIO(b"{}"), 2),
            "ContentType": "application/json",
        },
    }
    return stubs.get(operation, dict)()


@dataclass
class Aws:
    """What a stage needs: the boto3 session, the SageMaker session, the request log."""

    boto_session: boto3.Session
    sagemaker_session: Any
    log: RequestLog
    region: str
    explicit_bucket: str | None

    @property
    def dry_run(self) -> bool:
        return self.log.dry_run

    @property
    def bucket(self) -> str:
        # The SDK's default bucket (sagemaker-{region}-{account}) needs STS and S3 reads.
        return self.explicit_bucket or self.sagemaker_session.default_bucket()

    def client(self, service: str) -> Any:
        return self.boto_session.client(service)


def connect(
    region: str | None,
    bucket: str | None,
    dry_run: bool,
    boto_session: boto3.Session | None = None,
) -> Aws:
    """Build the sessions. ``boto_session`` lets tests pass one with their own handlers."""
    import sagemaker  # imported here: a few seconds, and not needed for --help

    region = resolve_region(region)
    session = boto_session or boto3.Session(region_name=region)
    log = RequestLog(dry_run=dry_run)
    log.attach(session)
    sm_session = sagemaker.Session(
        boto_session=session, default_bucket=bucket, sagemaker_config=SDK_CONFIG
    )
    return Aws(session, sm_session, log, region, bucket)


def s3_uri(bucket: str, *parts: str) -> str:
    key = "/".join(p.strip("/") for p in parts if p and p.strip("/"))
    return f"s3://{bucket}/{key}"


def split_s3_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise LaunchError(f"not an S3 URI: {uri!r} (expected s3://bucket/key)")
    bucket, _, key = uri[len("s3://") :].partition("/")
    if not bucket:
        raise LaunchError(f"not an S3 URI: {uri!r} (expected s3://bucket/key)")
    return bucket, key
