"""Deploy ``template.yaml`` into moto's CloudFormation, the way ``sam deploy`` would into AWS.

The SAM template is translated by ``aws-sam-translator`` (the library behind the
``AWS::Serverless-2016-10-31`` transform) with an empty managed-policy map, every local
``CodeUri`` is zipped and uploaded to an artifacts bucket (what ``sam package`` does), and the
result goes through ``create_stack``. Names, environment variables, policies and limits therefore
come from the real template, not from a second description of it.

What the stack holds is then read back from moto (``StackInfo``): the function, the upload queue
its event source mapping consumes, that queue's dead-letter queue (its ``RedrivePolicy``), and
the mapping itself (``ListEventSourceMappings``). moto's CloudFormation creates the mapping; were
it ever missing, it is created from the translated template's resource.

moto's CloudFormation drops some properties of resources it does create, and ``deploy_stack``
applies them from the translated template, with ``Ref``/``Fn::GetAtt``/``Fn::Sub`` resolved to
the deployed resources and parameters to their given or default values:
- the bucket's ``VersioningConfiguration`` (``PutBucketVersioning``);
- the bucket's ``NotificationConfiguration`` (``PutBucketNotificationConfiguration``): S3 then
  sends each upload's event to the upload queue, as on AWS (and an ``s3:TestEvent`` first).
Before the notifications, moto's own trigger of the mapping is detached from the queue: moto
would otherwise run the function in Docker on every SendMessage. The moto server must therefore
run in this process (``local.event_source`` runs the mapping instead). Types moto does not model
at all (alarms, bucket and queue policies) stay in the translated template, which ``StackInfo``
carries.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import time
import zipfile
from collections.abc import Callable, Mapping
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
EVENT_SOURCE_MAPPING = "AWS::Lambda::EventSourceMapping"


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
    template: dict[str, Any],
    base_dir: Path,
    s3: Any,
    bucket: str = ARTIFACTS_BUCKET,
    packages: Mapping[str, Path] | None = None,
) -> dict[str, Any]:
    """Replace each function's local ``CodeUri`` with an S3 location holding its zip.

    ``packages``: logical id -> a zip to upload instead of zipping ``CodeUri`` (what ``sam build``
    made of it, see ``local.function_build``).
    """
    packages = dict(packages or {})
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
    for logical_id, function in packaged.get("Resources", {}).items():
        if function.get("Type") != "AWS::Serverless::Function":
            continue
        properties = function.setdefault("Properties", {})
        uri = properties.get("CodeUri")
        if not isinstance(uri, str) or uri.startswith("s3://"):
            continue
        if logical_id in packages:
            body = packages[logical_id].read_bytes()
        else:
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


def _only(types: Mapping[str, str], resource_type: str) -> str:
    found = [logical for logical, t in types.items() if t == resource_type]
    if len(found) != 1:
        raise RuntimeError(f"expected exactly one {resource_type} in the stack, found {found}")
    return found[0]


def template_parameters(translated: Mapping[str, Any], given: Mapping[str, str]) -> dict[str, str]:
    """Every parameter's deployed value: the one given, else the template's default."""
    values = {
        name: str(spec["Default"])
        for name, spec in translated.get("Parameters", {}).items()
        if "Default" in spec
    }
    values.update({k: str(v) for k, v in given.items()})
    return values


class Intrinsics:
    """Resolves ``Ref``, ``Fn::GetAtt``, ``Fn::Sub``, ``Fn::Join``, ``Fn::Select`` and
    ``Fn::Split`` against the deployed stack: parameters to their values, resources to their
    physical ids, attributes through ``attribute(logical_id, name)``."""

    def __init__(
        self,
        parameters: Mapping[str, str],
        resources: Mapping[str, str],
        pseudo: Mapping[str, str],
        attribute: Callable[[str, str], str],
    ) -> None:
        self._refs = {**resources, **pseudo, **parameters}
        self._attribute = attribute

    def __call__(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self(v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((name, arg),) = value.items()
            if name == "Ref":
                return self._ref(arg)
            if name == "Fn::GetAtt":
                logical, attr = arg.split(".", 1) if isinstance(arg, str) else arg
                return self._attribute(logical, attr)
            if name == "Fn::Sub":
                return self._sub(arg)
            if name == "Fn::Join":
                separator, parts = arg
                return separator.join(str(p) for p in self(parts))
            if name == "Fn::Select":
                index, items = self(arg)
                return items[int(index)]
            if name == "Fn::Split":
                separator, text = self(arg)
                return text.split(separator)
        return {k: self(v) for k, v in value.items()}

    def _ref(self, name: str) -> str:
        if name not in self._refs:
            raise KeyError(f"Ref {name!r}: not a parameter, resource or pseudo parameter")
        return self._refs[name]

    def _sub(self, arg: Any) -> str:
        text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], self(arg[1]))
        out, rest = [], text
        while "${" in rest:
            before, _, after = rest.partition("${")
            name, _, rest = after.partition("}")
            out.append(before)
            if name.startswith("!"):  # ${!Literal} is the literal ${Literal}
                out.append("${" + name[1:] + "}")
            elif name in variables:
                out.append(str(variables[name]))
            elif "." in name and not name.startswith("AWS::"):  # ${Logical.Attribute}
                out.append(self._attribute(*name.split(".", 1)))
            else:
                out.append(str(self._ref(name)))
        out.append(rest)
        return "".join(out)


def _read_queue(sqs: Any, logical_id: str, arn: str) -> QueueInfo:
    name = arn.rsplit(":", 1)[-1]
    url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return QueueInfo(logical_id, name, url, arn, attributes)


def _attribute_reader(
    clients: Callable[[str], Any], resources: Mapping[str, str], types: Mapping[str, str]
) -> Callable[[str, str], str]:
    """``Fn::GetAtt`` for the resource types this stack names in properties moto drops."""

    def attribute(logical_id: str, name: str) -> str:
        kind, physical = types.get(logical_id), resources.get(logical_id, "")
        if kind == "AWS::SQS::Queue":
            queue_name = physical.rstrip("/").rsplit("/", 1)[-1]
            sqs = clients("sqs")
            url = sqs.get_queue_url(QueueName=queue_name)["QueueUrl"]
            if name == "QueueUrl":
                return url
            if name == "QueueName":
                return queue_name
            if name == "Arn":
                attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
                return attrs["Attributes"]["QueueArn"]
        if kind == "AWS::Lambda::Function" and name == "Arn":
            return clients("lambda").get_function_configuration(FunctionName=physical)[
                "FunctionArn"
            ]
        if kind == "AWS::S3::Bucket" and name == "Arn":
            return f"arn:aws:s3:::{physical}"
        if kind == "AWS::SNS::Topic" and name == "TopicArn":
            return physical
        raise KeyError(f"Fn::GetAtt {logical_id}.{name}: not resolvable offline ({kind})")

    return attribute


def ensure_event_source_mapping(
    awslambda: Any, translated: Mapping[str, Any], function_name: str, resolve: Intrinsics
) -> dict[str, Any]:
    """The function's SQS event source mapping as moto holds it; created from the translated
    template's resource if moto's CloudFormation did not create it."""
    mappings = awslambda.list_event_source_mappings(FunctionName=function_name)
    found = [m for m in mappings["EventSourceMappings"] if ":sqs:" in m["EventSourceArn"]]
    if not found:
        declared = [
            resolve(r.get("Properties", {}))
            for r in translated.get("Resources", {}).values()
            if r.get("Type") == EVENT_SOURCE_MAPPING
        ]
        for properties in declared:
            named = str(properties.get("FunctionName", ""))
            if named == function_name or named.endswith(f":function:{function_name}"):
                found.append(awslambda.create_event_source_mapping(**_api_types(properties)))
    if len(found) != 1:
        raise RuntimeError(f"expected one SQS event source mapping for {function_name}: {found}")
    mapping = dict(found[0])
    mapping.pop("ResponseMetadata", None)
    return mapping


def _api_types(properties: Mapping[str, Any]) -> dict[str, Any]:
    """CloudFormation hands parameter values over as strings; the Lambda API wants numbers."""
    numeric = {"BatchSize", "MaximumBatchingWindowInSeconds", "MaximumConcurrency"}
    out: dict[str, Any] = {}
    for key, value in properties.items():
        if isinstance(value, dict):
            out[key] = _api_types(value)
        elif key in numeric:
            out[key] = int(value)
        elif key == "Enabled" and isinstance(value, str):
            out[key] = value.lower() == "true"
        else:
            out[key] = value
    return out


def detach_moto_event_source_mapping(queue_arn: str) -> None:
    """Stop moto from invoking the function itself on each message sent to the queue.

    moto's SQS ``add_message`` runs every mapping attached to the queue object, and moto runs
    Lambda functions only in Docker. The mapping itself stays (ListEventSourceMappings still
    shows it): only its in-process trigger goes. Needs the moto server in this process.
    """
    from moto.sqs.models import sqs_backends

    _, _, _, region, account, name = queue_arn.split(":", 5)
    queue = sqs_backends[account][region].queues.get(name)
    if queue is None:
        raise RuntimeError(
            f"queue {name} is not in this process's moto: the offline stack needs the moto "
            "server to run in-process (ThreadedMotoServer)"
        )
    queue.lambda_event_source_mappings.clear()


def s3_notification_configuration(cfn: Mapping[str, Any], bucket_logical_id: str) -> dict:
    """A bucket's ``NotificationConfiguration`` (CloudFormation's shape, intrinsics resolved) in
    the shape ``PutBucketNotificationConfiguration`` takes."""
    kinds = [
        ("QueueConfigurations", "QueueConfigurations", "Queue", "QueueArn"),
        ("LambdaConfigurations", "LambdaFunctionConfigurations", "Function", "LambdaFunctionArn"),
        ("TopicConfigurations", "TopicConfigurations", "Topic", "TopicArn"),
    ]
    api: dict[str, Any] = {}
    for cfn_key, api_key, target, api_target in kinds:
        for i, entry in enumerate(cfn.get(cfn_key, [])):
            converted: dict[str, Any] = {
                "Id": f"{bucket_logical_id}-{target}-{i}",
                api_target: entry[target],
                "Events": [entry["Event"]],
            }
            rules = entry.get("Filter", {}).get("S3Key", {}).get("Rules", [])
            if rules:
                filter_rules = [{"Name": r["Name"], "Value": r["Value"]} for r in rules]
                converted["Filter"] = {"Key": {"FilterRules": filter_rules}}
            api.setdefault(api_key, []).append(converted)
    if cfn.get("EventBridgeConfiguration", {}).get("EventBridgeEnabled") in (True, "true"):
        api["EventBridgeConfiguration"] = {}
    return api


def configure_bucket(
    s3: Any, bucket: str, translated: Mapping[str, Any], bucket_logical_id: str, resolve: Intrinsics
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Apply the bucket's versioning and notifications from the translated template; returns
    both as applied (S3 API shapes; empty when the template has none)."""
    properties = translated["Resources"][bucket_logical_id].get("Properties", {})
    versioning = resolve(properties.get("VersioningConfiguration", {}))
    if versioning:
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration=versioning)
    notifications = s3_notification_configuration(
        resolve(properties.get("NotificationConfiguration", {})), bucket_logical_id
    )
    if notifications:
        s3.put_bucket_notification_configuration(
            Bucket=bucket, NotificationConfiguration=notifications
        )
    return versioning, notifications


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
        _pseudo_parameters(function_arn, stack_name, stack["StackId"]),
        _attribute_reader(clients, resources, types),
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


def _pseudo_parameters(function_arn: str, stack_name: str, stack_id: str) -> dict[str, str]:
    _, partition, _, region, account, _ = function_arn.split(":", 5)
    return {
        "AWS::AccountId": account,
        "AWS::Region": region,
        "AWS::Partition": partition,
        "AWS::StackName": stack_name,
        "AWS::StackId": stack_id,
        "AWS::URLSuffix": "amazonaws.com",
        "AWS::NoValue": "",
    }


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
