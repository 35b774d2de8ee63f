"""Deploy ``template.yaml`` into moto's CloudFormation, the way ``sam deploy`` would into AWS.

The SAM template is translated by ``aws-sam-translator`` (the library behind the
``AWS::Serverless-2016-10-31`` transform, ``local.aws.translate``) with an empty managed-policy
map, every local ``CodeUri`` is zipped and uploaded to an artifacts bucket (what ``sam package``
does, ``local.aws.package``), and the result goes through ``create_stack``. Names, environment
variables, policies and limits therefore come from the real template, not from a second
description of it.

What the stack holds is then read back from moto (``StackInfo``): the function, the upload queue
its event source mapping consumes, that queue's dead-letter queue (its ``RedrivePolicy``), and
the mapping itself (``ListEventSourceMappings``). moto's CloudFormation creates the mapping; were
it ever missing, it is created from the translated template's resource.

moto's CloudFormation drops some properties of resources it does create, and ``deploy_stack``
applies them from the translated template (``local.aws.moto_fixups``), with ``Ref``/
``Fn::GetAtt``/``Fn::Sub`` resolved to the deployed resources and parameters to their given or
default values (``local.aws.intrinsics``):
- the bucket's ``VersioningConfiguration`` (``PutBucketVersioning``);
- the bucket's ``NotificationConfiguration`` (``PutBucketNotificationConfiguration``): S3 then
  sends each upload's event to the upload queue, as on AWS (and an ``s3:TestEvent`` first).
Before the notifications, moto's own trigger of the mapping is detached from the queue: moto
would otherwise run the function in Docker on every SendMessage. The moto server must therefore
run in this process (``local.function.event_source`` runs the mapping instead). Types moto does
not model at all (alarms, bucket and queue policies) stay in the translated template, which
``StackInfo`` carries.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from local.aws.intrinsics import Intrinsics, attribute_reader, pseudo_parameters
from local.aws.moto_fixups import (
    configure_bucket,
    detach_moto_event_source_mapping,
    ensure_event_source_mapping,
)
from local.aws.package import ARTIFACTS_BUCKET, package_code
from local.aws.translate import TEMPLATE, load_template, template_parameters, translate

DEFAULT_REGION = "us-east-1"


@dataclass(frozen=True)
class QueueInfo:
    """One deployed SQS queue, read back from moto."""

    logical_id: str
    name: str
    url: str  # as the endpoint answers GetQueueUrl (moto's address offline)
    arn: str
    attributes: dict[str, str]  # GetQueueAttributes(All)

    @property
    def visibility_timeout_s(self) -> int:
        return int(self.attributes["VisibilityTimeout"])

    @property
    def redrive_policy(self) -> dict[str, Any] | None:
        """``deadLetterTargetArn`` and ``maxReceiveCount`` (an int), or None."""
        policy = self.attributes.get("RedrivePolicy")
        if not policy:
            return None
        parsed = json.loads(policy)
        return {**parsed, "maxReceiveCount": int(parsed["maxReceiveCount"])}


@dataclass(frozen=True)
class StackInfo:
    """What the deployed stack holds, read back from moto."""

    stack_name: str
    stack_id: str
    outputs: dict[str, str]
    resources: dict[str, str]  # logical id -> physical id
    resource_types: dict[str, str]  # logical id -> type
    parameters: dict[str, str]  # the values deployed: those given, the template's defaults
    bucket_name: str
    table_name: str
    function_name: str
    function_arn: str
    environment: dict[str, str]
    function_configuration: dict[str, Any]
    upload_queue: QueueInfo  # the queue the function's event source mapping consumes
    dead_letter_queue: QueueInfo | None  # the upload queue's RedrivePolicy target
    # ListEventSourceMappings' entry: BatchSize, FunctionResponseTypes, ScalingConfig ...
    event_source_mapping: dict[str, Any]
    bucket_versioning: dict[str, Any]  # applied from the template (moto's CloudFormation drops it)
    bucket_notifications: dict[str, Any]  # likewise, in the S3 API's shape
    translated_template: dict[str, Any] = field(repr=False)


class _Clients:
    """Accepts a boto3 Session (or anything with ``.client(name)``) or a dict of clients."""

    def __init__(self, session_or_clients: Any, endpoint_url: str | None) -> None:
        self._source = session_or_clients
        self._endpoint_url = endpoint_url
        self._cache: dict[str, Any] = {}

    @property
    def region(self) -> str:
        region = getattr(self._source, "region_name", None)
        if not region and isinstance(self._source, Mapping):
            client = next(iter(self._source.values()), None)
            region = getattr(getattr(client, "meta", None), "region_name", None)
        return region or DEFAULT_REGION

    def __call__(self, name: str) -> Any:
        if name not in self._cache:
            if isinstance(self._source, Mapping):
                self._cache[name] = self._source[name]
            elif self._endpoint_url:
                self._cache[name] = self._source.client(name, endpoint_url=self._endpoint_url)
            else:
                self._cache[name] = self._source.client(name)
        return self._cache[name]


def _wait(cfn: Any, stack_name: str, timeout_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        stack = cfn.describe_stacks(StackName=stack_name)["Stacks"][0]
        status = stack["StackStatus"]
        if status.endswith("_COMPLETE") and "ROLLBACK" not in status:
            return stack
        if status.endswith("FAILED") or "ROLLBACK" in status:
            events = cfn.describe_stack_events(StackName=stack_name)["StackEvents"]
            reasons = [
                e.get("ResourceStatusReason") for e in events if "FAILED" in e["ResourceStatus"]
            ]
            raise RuntimeError(f"stack {stack_name} ended {status}: {reasons}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"stack {stack_name} still {status} after {timeout_s} s")
        time.sleep(0.2)


def _only(types: Mapping[str, str], resource_type: str) -> str:
    found = [logical for logical, t in types.items() if t == resource_type]
    if len(found) != 1:
        raise RuntimeError(f"expected exactly one {resource_type} in the stack, found {found}")
    return found[0]


def _read_queue(sqs: Any, logical_id: str, arn: str) -> QueueInfo:
    name = arn.rsplit(":", 1)[-1]
    url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return QueueInfo(logical_id, name, url, arn, attributes)


def deploy_stack(
    session_or_clients: Any,
    template_path: Path | str = TEMPLATE,
    stack_name: str = "dog-breeds",
    parameters: Mapping[str, Any] | None = None,
    *,
    endpoint_url: str | None = None,
    code_bucket: str = ARTIFACTS_BUCKET,
    timeout_s: float = 60.0,
    packages: Mapping[str, Path] | None = None,
) -> StackInfo:
    """Translate, package and ``create_stack`` the template in moto, apply what moto's
    CloudFormation drops, and return what the stack holds.

    ``session_or_clients``: a boto3 Session (its clients should reach moto: pass ``endpoint_url``
    or set ``AWS_ENDPOINT_URL``), any object with ``.client(name)``, or a dict of clients for
    ``s3``, ``cloudformation``, ``lambda`` and ``sqs``. The moto server must run in this process.
    ``packages``: code packages to deploy instead of zipping ``CodeUri`` (``package_code``).
    """
    clients = _Clients(session_or_clients, endpoint_url)
    template_path = Path(template_path)
    parameters = {k: str(v) for k, v in (parameters or {}).items()}
    template = load_template(template_path)
    packaged = package_code(template, template_path.parent, clients("s3"), code_bucket, packages)
    translated = translate(packaged, parameters, clients.region)

    cfn = clients("cloudformation")
    declared = translated.get("Parameters", {})
    cfn.create_stack(
        StackName=stack_name,
        TemplateBody=json.dumps(translated),
        Parameters=[
            {"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items() if k in declared
        ],
        Capabilities=["CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"],
    )
    stack = _wait(cfn, stack_name, timeout_s)
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    # Types moto skips are listed without LogicalResourceId: they exist only in the template.
    listed = [
        r
        for r in cfn.describe_stack_resources(StackName=stack_name)["StackResources"]
        if "LogicalResourceId" in r
    ]
    resources = {r["LogicalResourceId"]: r.get("PhysicalResourceId", "") for r in listed}
    types = {r["LogicalResourceId"]: r["ResourceType"] for r in listed}

    function_logical = _only(types, "AWS::Lambda::Function")
    awslambda = clients("lambda")
    configuration = awslambda.get_function_configuration(FunctionName=resources[function_logical])
    configuration.pop("ResponseMetadata", None)
    function_arn = configuration["FunctionArn"]
    values = template_parameters(translated, parameters)
    resolve = Intrinsics(
        values,
        resources,
        pseudo_parameters(function_arn, stack_name, stack["StackId"]),
        attribute_reader(clients, resources, types),
    )

    mapping = ensure_event_source_mapping(
        awslambda, translated, configuration["FunctionName"], resolve
    )
    upload_queue, dead_letter_queue = _queues(clients("sqs"), mapping["EventSourceArn"], resources)
    detach_moto_event_source_mapping(upload_queue.arn)  # before S3 sends its first message
    bucket_logical = _only(types, "AWS::S3::Bucket")
    versioning, notifications = configure_bucket(
        clients("s3"), resources[bucket_logical], translated, bucket_logical, resolve
    )

    return StackInfo(
        stack_name=stack_name,
        stack_id=stack["StackId"],
        outputs=outputs,
        resources=resources,
        resource_types=types,
        parameters=values,
        bucket_name=resources[bucket_logical],
        table_name=resources[_only(types, "AWS::DynamoDB::Table")],
        function_name=configuration["FunctionName"],
        function_arn=function_arn,
        # Lambda's variables are strings; moto hands Number parameters back as ints.
        environment={
            k: str(v) for k, v in configuration.get("Environment", {}).get("Variables", {}).items()
        },
        function_configuration=configuration,
        upload_queue=upload_queue,
        dead_letter_queue=dead_letter_queue,
        event_source_mapping=mapping,
        bucket_versioning=versioning,
        bucket_notifications=notifications,
        translated_template=translated,
    )


def _queues(
    sqs: Any, source_arn: str, resources: Mapping[str, str]
) -> tuple[QueueInfo, QueueInfo | None]:
    """The mapping's queue and the dead-letter queue its RedrivePolicy names."""

    def logical_id(arn: str) -> str:
        name = arn.rsplit(":", 1)[-1]
        return next((k for k, v in resources.items() if v.rstrip("/").endswith("/" + name)), "")

    source = _read_queue(sqs, logical_id(source_arn), source_arn)
    policy = source.redrive_policy
    if not policy:
        return source, None
    target = policy["deadLetterTargetArn"]
    return source, _read_queue(sqs, logical_id(target), target)
