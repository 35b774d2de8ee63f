"""Template tests: template.yaml translated by aws-sam-translator and deployed into the
session's moto server."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import boto3
import pytest

from local.aws.deploy import StackInfo, deploy_stack
from local.aws.intrinsics import Intrinsics
from local.aws.translate import load_template, translate

REPO_ROOT = Path(__file__).resolve().parents[3]
TEMPLATE = REPO_ROOT / "template.yaml"
REGION = "us-east-1"
# Non-default values everywhere, so the tests see each parameter flow to where it is used.
PARAMETERS = {
    "EndpointName": "dog-breeds-prod",
    "UploadPrefix": "incoming/photos/",
    "TopK": "5",
    "LogLevel": "DEBUG",
    "MaxConcurrency": "3",
    "QueueSenderArns": (
        "arn:aws:iam::123456789012:role/dog-breeds-ops-*,arn:aws:iam::123456789012:user/alice"
    ),
    "EndpointCpuAlarmPercent": "350",
}


@pytest.fixture(scope="module")
def sam_template() -> dict[str, Any]:
    return load_template(TEMPLATE)


@pytest.fixture(scope="module")
def translated(sam_template: dict[str, Any]) -> dict[str, Any]:
    """The CloudFormation template SAM's transform produces (CodeUri as sam package leaves it)."""
    packaged = dict(sam_template)
    resources = {k: dict(v) for k, v in sam_template["Resources"].items()}
    function = dict(resources["ClassifyUploadFunction"])
    function["Properties"] = {
        **function["Properties"],
        "CodeUri": {"Bucket": "artifacts", "Key": "code.zip"},
    }
    resources["ClassifyUploadFunction"] = function
    packaged["Resources"] = resources
    return translate(packaged, PARAMETERS, REGION)


@pytest.fixture(scope="module")
def moto_session(moto_url: str) -> tuple[boto3.session.Session, str]:
    session = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
    )
    return session, moto_url


@pytest.fixture(scope="module")
def deployed(moto_session: tuple[boto3.session.Session, str]) -> StackInfo:
    session, url = moto_session
    stack_name = "dog-breeds-template-tests"
    return deploy_stack(session, TEMPLATE, stack_name, PARAMETERS, endpoint_url=url)


@pytest.fixture(scope="module")
def aws(moto_session: tuple[boto3.session.Session, str]):
    session, url = moto_session
    return lambda service: session.client(service, endpoint_url=url)


def deployed_resolver(
    deployed: StackInfo, overrides: Mapping[str, str] | None = None
) -> Callable[[Any], Any]:
    """Resolves a fragment of the translated template against the deployed stack, as
    CloudFormation would: conditions and ``Fn::If`` by the parameters' values (``overrides``
    replace some), list parameters as lists, then ``local.aws.intrinsics.Intrinsics``.

    For what moto's CloudFormation does not create (queue and bucket policies, alarms): the
    document these tests read is then the one AWS would hold for this stack."""
    template = deployed.translated_template
    values = {**deployed.parameters, **(overrides or {})}
    lists = {
        name: [item.strip() for item in values.get(name, "").split(",")]
        for name, spec in template.get("Parameters", {}).items()
        if spec["Type"] == "CommaDelimitedList" or spec["Type"].startswith("List<")
    }
    _, partition, _, region, account, _ = deployed.function_arn.split(":", 5)
    pseudo = {
        "AWS::AccountId": account,
        "AWS::Region": region,
        "AWS::Partition": partition,
        "AWS::StackName": deployed.stack_name,
        "AWS::StackId": deployed.stack_id,
        "AWS::URLSuffix": "amazonaws.com",
    }
    queues = {q.logical_id: q for q in (deployed.upload_queue, deployed.dead_letter_queue) if q}

    def attribute(logical_id: str, name: str) -> str:
        if logical_id in queues:
            queue = queues[logical_id]
            return {"Arn": queue.arn, "QueueName": queue.name, "QueueUrl": queue.url}[name]
        if deployed.resource_types.get(logical_id) == "AWS::S3::Bucket" and name == "Arn":
            return f"arn:{partition}:s3:::{deployed.resources[logical_id]}"
        raise KeyError(f"Fn::GetAtt {logical_id}.{name}")

    intrinsics = Intrinsics(values, deployed.resources, pseudo, attribute)

    def condition(name: str) -> bool:
        return evaluate(template["Conditions"][name])

    def evaluate(expression: dict[str, Any]) -> bool:
        ((function, argument),) = expression.items()
        if function == "Condition":
            return condition(argument)
        if function == "Fn::Not":
            return not evaluate(argument[0])
        if function == "Fn::And":
            return all(evaluate(a) for a in argument)
        if function == "Fn::Or":
            return any(evaluate(a) for a in argument)
        if function == "Fn::Equals":
            left, right = intrinsics(prepare(argument))
            return str(left) == str(right)
        raise ValueError(f"condition function {function} is not resolved offline")

    def prepare(value: Any) -> Any:
        if isinstance(value, list):
            return [prepare(v) for v in value]
        if not isinstance(value, dict):
            return value
        if set(value) == {"Fn::If"}:
            name, when_true, when_false = value["Fn::If"]
            return prepare(when_true if condition(name) else when_false)
        if set(value) == {"Ref"} and value["Ref"] in lists:
            return list(lists[value["Ref"]])
        return {k: prepare(v) for k, v in value.items()}

    return lambda fragment: intrinsics(prepare(fragment))


@pytest.fixture(scope="module")
def resolve_deployed(deployed: StackInfo) -> Callable[..., Callable[[Any], Any]]:
    """``resolve_deployed(**parameter_overrides)``: a ``deployed_resolver`` for this stack."""
    return lambda **overrides: deployed_resolver(deployed, overrides)


def _alarm_request(properties: Mapping[str, Any]) -> dict[str, Any]:
    """An alarm's CloudFormation properties as ``PutMetricAlarm`` takes them (CloudFormation
    hands parameters over as strings; the API wants numbers)."""
    numbers = {
        "Period": int,
        "EvaluationPeriods": int,
        "DatapointsToAlarm": int,
        "Threshold": float,
    }
    request = {k: numbers[k](v) if k in numbers else v for k, v in properties.items()}
    request["Metrics"] = [
        {
            **query,
            **(
                {
                    "MetricStat": {
                        **query["MetricStat"],
                        "Period": int(query["MetricStat"]["Period"]),
                    }
                }
                if "MetricStat" in query
                else {}
            ),
        }
        for query in request.get("Metrics", [])
    ]
    if not request["Metrics"]:
        del request["Metrics"]
    return request


@pytest.fixture(scope="module")
def deployed_alarms(deployed: StackInfo, aws) -> dict[str, dict[str, Any]]:
    """The template's alarms as CloudWatch holds them (``DescribeAlarms``), keyed by logical id.

    moto's CloudFormation skips ``AWS::CloudWatch::Alarm``: each is resolved against the deployed
    stack (``deployed_resolver``) and put into moto's CloudWatch under the name CloudFormation
    would give it (stack name, logical id)."""
    resolve = deployed_resolver(deployed)
    cloudwatch = aws("cloudwatch")
    names = {}
    for logical_id, resource in deployed.translated_template["Resources"].items():
        if resource["Type"] != "AWS::CloudWatch::Alarm":
            continue
        names[f"{deployed.stack_name}-{logical_id}"] = logical_id
        request = _alarm_request(resolve(resource["Properties"]))
        cloudwatch.put_metric_alarm(AlarmName=f"{deployed.stack_name}-{logical_id}", **request)
    described = cloudwatch.describe_alarms(AlarmNamePrefix=deployed.stack_name)["MetricAlarms"]
    return {names[a["AlarmName"]]: a for a in described}
