"""Deploy ``template.yaml`` into moto's CloudFormation, the way ``sam deploy`` would into AWS.

The SAM template is translated by ``aws-sam-translator`` (the library behind the
``AWS::Serverless-2016-10-31`` transform) with an empty managed-policy map, every local
``CodeUri`` is zipped and uploaded to an artifacts bucket (what ``sam package`` does), and the
result goes through ``create_stack``. Names, environment variables, policies and limits therefore
come from the real template, not from a second description of it.

moto's CloudFormation skips resource types it does not model (``AWS::Lambda::EventInvokeConfig``,
``AWS::CloudWatch::Alarm``, ``AWS::S3::BucketPolicy`` ...): they stay in the translated template,
which ``StackInfo`` carries, and the async settings are read from there.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import time
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = REPO_ROOT / "template.yaml"
DEFAULT_REGION = "us-east-1"
ARTIFACTS_BUCKET = "sam-artifacts-local"
# Never packed: caches and build leftovers inside a CodeUri.
EXCLUDED_PARTS = {"__pycache__", ".pytest_cache", ".aws-sam"}


@dataclass(frozen=True)
class StackInfo:
    """What the deployed stack holds, read back from moto."""

    stack_name: str
    stack_id: str
    outputs: dict[str, str]
    resources: dict[str, str]  # logical id -> physical id
    resource_types: dict[str, str]  # logical id -> type
    bucket_name: str
    table_name: str
    function_name: str
    function_arn: str
    failure_queue_url: str | None
    failure_queue_arn: str | None
    environment: dict[str, str]
    function_configuration: dict[str, Any]
    reserved_concurrency: int | None
    event_invoke_config: dict[str, Any]  # MaximumRetryAttempts, MaximumEventAgeInSeconds, ...
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


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    """The SAM template as a dict, short-form intrinsics (``!Sub``) in their long form."""
    from samtranslator.yaml_helper import yaml_parse

    return yaml_parse(Path(path).read_text(encoding="utf-8"))


def zip_code(code_dir: Path) -> bytes:
    """A deterministic zip of a CodeUri directory, as ``sam package`` uploads it."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(code_dir.rglob("*")):
            relative = path.relative_to(code_dir)
            if path.is_dir() or EXCLUDED_PARTS & set(relative.parts) or path.suffix == ".pyc":
                continue
            info = zipfile.ZipInfo(relative.as_posix(), date_time=(2020, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())
    return buffer.getvalue()


def package_code(
    template: dict[str, Any], base_dir: Path, s3: Any, bucket: str = ARTIFACTS_BUCKET
) -> dict[str, Any]:
    """Replace each function's local ``CodeUri`` with an S3 location holding its zip."""
    packaged = copy.deepcopy(template)
    functions = [
        r
        for r in packaged.get("Resources", {}).values()
        if r.get("Type") == "AWS::Serverless::Function"
    ]
    code_uris = [f.get("Properties", {}).get("CodeUri") for f in functions]
    if not any(isinstance(uri, str) and not uri.startswith("s3://") for uri in code_uris):
        return packaged
    try:
        s3.head_bucket(Bucket=bucket)
    except Exception:
        s3.create_bucket(Bucket=bucket)
    for function in functions:
        properties = function.setdefault("Properties", {})
        uri = properties.get("CodeUri")
        if not isinstance(uri, str) or uri.startswith("s3://"):
            continue
        body = zip_code((base_dir / uri).resolve())
        key = f"{hashlib.sha256(body).hexdigest()}.zip"
        s3.put_object(Bucket=bucket, Key=key, Body=body)
        properties["CodeUri"] = {"Bucket": bucket, "Key": key}
    return packaged


def translate(template: dict[str, Any], parameters: Mapping[str, Any], region: str) -> dict:
    """SAM → CloudFormation with ``aws-sam-translator``, no IAM lookups (empty policy map)."""
    from samtranslator.parser.parser import Parser
    from samtranslator.translator.translator import Translator
    from samtranslator.utils.py27hash_fix import (
        to_py27_compatible_template,
        undo_mark_unicode_str_in_template,
    )

    fragment = copy.deepcopy(template)
    values = dict(parameters)
    to_py27_compatible_template(fragment, values)
    # The translator only asks the session for its region (pseudo parameters).
    translator = Translator(None, Parser(), boto_session=SimpleNamespace(region_name=region))
    translated = translator.translate(
        fragment, parameter_values=values, get_managed_policy_map=dict
    )
    return undo_mark_unicode_str_in_template(translated)


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


def _event_invoke_config(translated: dict[str, Any], function_logical_id: str) -> dict[str, Any]:
    for resource in translated.get("Resources", {}).values():
        if resource.get("Type") != "AWS::Lambda::EventInvokeConfig":
            continue
        properties = resource.get("Properties", {})
        if properties.get("FunctionName", {}).get("Ref") == function_logical_id:
            return copy.deepcopy(properties)
    return {}


def _only(types: Mapping[str, str], resource_type: str) -> str:
    found = [logical for logical, t in types.items() if t == resource_type]
    if len(found) != 1:
        raise RuntimeError(f"expected exactly one {resource_type} in the stack, found {found}")
    return found[0]


def deploy_stack(
    session_or_clients: Any,
    template_path: Path | str = TEMPLATE,
    stack_name: str = "dog-breeds",
    parameters: Mapping[str, Any] | None = None,
    *,
    endpoint_url: str | None = None,
    code_bucket: str = ARTIFACTS_BUCKET,
    timeout_s: float = 60.0,
) -> StackInfo:
    """Translate, package and ``create_stack`` the template in moto; return what it created.

    ``session_or_clients``: a boto3 Session (its clients should reach moto: pass ``endpoint_url``
    or set ``AWS_ENDPOINT_URL``), any object with ``.client(name)``, or a dict of clients for
    ``s3``, ``cloudformation``, ``lambda`` and ``sqs``.
    """
    clients = _Clients(session_or_clients, endpoint_url)
    template_path = Path(template_path)
    parameters = {k: str(v) for k, v in (parameters or {}).items()}
    template = load_template(template_path)
    packaged = package_code(template, template_path.parent, clients("s3"), code_bucket)
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
    concurrency = awslambda.get_function_concurrency(
        FunctionName=configuration["FunctionName"]
    ).get("ReservedConcurrentExecutions")

    invoke_config = _event_invoke_config(translated, function_logical)
    queue_url = queue_arn = None
    destination = invoke_config.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")
    if isinstance(destination, dict) and "Fn::GetAtt" in destination:
        queue_url = resources.get(destination["Fn::GetAtt"][0])
    if queue_url:
        sqs = clients("sqs")
        name = queue_url.rstrip("/").rsplit("/", 1)[-1]
        queue_url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        invoke_config["DestinationConfig"]["OnFailure"]["Destination"] = queue_arn

    return StackInfo(
        stack_name=stack_name,
        stack_id=stack["StackId"],
        outputs=outputs,
        resources=resources,
        resource_types=types,
        bucket_name=resources[_only(types, "AWS::S3::Bucket")],
        table_name=resources[_only(types, "AWS::DynamoDB::Table")],
        function_name=configuration["FunctionName"],
        function_arn=configuration["FunctionArn"],
        failure_queue_url=queue_url,
        failure_queue_arn=queue_arn,
        # Lambda's variables are strings; moto hands Number parameters back as ints.
        environment={
            k: str(v) for k, v in configuration.get("Environment", {}).get("Variables", {}).items()
        },
        function_configuration=configuration,
        reserved_concurrency=concurrency,
        event_invoke_config=invoke_config,
        translated_template=translated,
    )
