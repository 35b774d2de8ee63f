"""What moto's CloudFormation leaves undone, applied from the translated template.

moto's CloudFormation drops some properties of resources it does create; these apply them, with
``Ref``/``Fn::GetAtt``/``Fn::Sub`` resolved (``local.aws.intrinsics``):
- the bucket's ``VersioningConfiguration`` (``PutBucketVersioning``);
- the bucket's ``NotificationConfiguration`` (``PutBucketNotificationConfiguration``): S3 then
  sends each upload's event to the upload queue, as on AWS (and an ``s3:TestEvent`` first);
- the function's SQS event source mapping, should moto's CloudFormation ever not create it.
moto's own trigger of the mapping is detached from the queue (``detach_moto_event_source_mapping``):
moto would otherwise run the function in Docker on every SendMessage.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from local.aws.intrinsics import Intrinsics

EVENT_SOURCE_MAPPING = "AWS::Lambda::EventSourceMapping"


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
