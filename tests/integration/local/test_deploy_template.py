"""The offline deployment of ``template.yaml`` into the session's moto server: what it reads back
(queues, dead-letter queue, event source mapping) and what it applies that moto's CloudFormation
drops (versioning, the bucket's notification to the upload queue), so that an upload reaches the
upload queue as on AWS, with a sequencer, and moto itself never tries to run the function."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import unquote_plus

import boto3
import pytest
from moto.sqs.models import sqs_backends

from local.aws import moto_s3_events
from local.aws.deploy import deploy_stack
from local.aws.intrinsics import Intrinsics
from local.aws.moto_fixups import s3_notification_configuration

REPO_ROOT = Path(__file__).resolve().parents[3]
REGION = "us-east-1"


@pytest.fixture(scope="module")
def session() -> boto3.session.Session:
    return boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
    )


@pytest.fixture(scope="module")
def deployed(moto_url, session):
    moto_s3_events.install()  # as LocalStack does when it starts moto, and undoes when it stops
    yield deploy_stack(
        session,
        REPO_ROOT / "template.yaml",
        "dog-breeds-local-deploy",
        {"EndpointName": "some-endpoint", "UploadPrefix": "incoming/", "MaxConcurrency": "3"},
        endpoint_url=moto_url,
    )
    moto_s3_events.uninstall()


@pytest.fixture(scope="module")
def aws(moto_url, session):
    return lambda service: session.client(service, endpoint_url=moto_url)


def test_the_upload_queue_and_its_dead_letter_queue_are_read_back(deployed):
    queue, dlq = deployed.upload_queue, deployed.dead_letter_queue
    assert queue.logical_id == "UploadQueue" and dlq.logical_id == "DeadLetterQueue"
    assert queue.visibility_timeout_s == 1800
    assert queue.redrive_policy == {"deadLetterTargetArn": dlq.arn, "maxReceiveCount": 5}
    assert queue.url.endswith("/" + queue.name) and queue.url.startswith("http://127.0.0.1:")
    assert deployed.outputs["UploadQueueArn"] == queue.arn
    assert deployed.outputs["DeadLetterQueueArn"] == dlq.arn


def test_the_event_source_mapping_is_moto_s_with_the_template_s_settings(deployed):
    mapping = deployed.event_source_mapping
    assert mapping["EventSourceArn"] == deployed.upload_queue.arn
    assert mapping["FunctionArn"] == deployed.function_arn
    assert mapping["BatchSize"] == 10
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert int(mapping["ScalingConfig"]["MaximumConcurrency"]) == 3
    assert deployed.parameters["MaxConcurrency"] == "3"
    assert deployed.parameters["TopK"] == "3"  # the template's default


def test_moto_no_longer_triggers_the_function_itself(deployed):
    _, _, _, region, account, name = deployed.upload_queue.arn.split(":")
    assert sqs_backends[account][region].queues[name].lambda_event_source_mappings == {}


def test_versioning_and_the_queue_notification_come_from_the_template(deployed, aws):
    s3 = aws("s3")
    assert s3.get_bucket_versioning(Bucket=deployed.bucket_name)["Status"] == "Enabled"
    (config,) = s3.get_bucket_notification_configuration(Bucket=deployed.bucket_name)[
        "QueueConfigurations"
    ]
    assert config["QueueArn"] == deployed.upload_queue.arn
    assert config["Events"] == ["s3:ObjectCreated:*"]
    assert config["Filter"]["Key"]["FilterRules"] == [{"Name": "prefix", "Value": "incoming/"}]


def test_an_upload_under_the_prefix_reaches_the_upload_queue_with_sequencer_and_version(
    deployed, aws
):
    s3, sqs, url = aws("s3"), aws("sqs"), deployed.upload_queue.url
    s3.put_object(Bucket=deployed.bucket_name, Key="elsewhere/no.jpg", Body=b"x")
    versions = [
        s3.put_object(Bucket=deployed.bucket_name, Key="incoming/a dog.jpg", Body=b"x")["VersionId"]
        for _ in range(2)
    ]
    bodies = []
    while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages"):
        bodies += [json.loads(m["Body"]) for m in messages]
        sqs.delete_message_batch(
            QueueUrl=url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)
            ],
        )
    assert [b.get("Event") for b in bodies if "Event" in b] == ["s3:TestEvent"]
    records = [r for b in bodies for r in b.get("Records", [])]
    # URL-encoded as S3 sends keys (moto also encodes the slash; decoding gives the key back).
    keys = [unquote_plus(r["s3"]["object"]["key"]) for r in records]
    assert keys == ["incoming/a dog.jpg"] * 2
    first, second = (r["s3"]["object"]["sequencer"] for r in records)
    assert len(first) == len(second) == 18 and first < second  # S3's: later write, larger value
    # The bucket is versioned (from the template): each record names the version it created.
    assert [r["s3"]["object"]["versionId"] for r in records] == versions


def test_intrinsics_resolve_against_the_deployed_stack(deployed):
    attributes = {("UploadQueue", "Arn"): "arn:q"}
    resolve = Intrinsics(
        {"UploadPrefix": "incoming/"},
        {"UploadBucket": "bucket-1"},
        {"AWS::Region": REGION, "AWS::AccountId": "123456789012"},
        lambda logical, name: attributes[(logical, name)],
    )
    assert resolve({"Ref": "UploadPrefix"}) == "incoming/"
    assert resolve({"Fn::GetAtt": ["UploadQueue", "Arn"]}) == "arn:q"
    assert resolve({"Fn::GetAtt": "UploadQueue.Arn"}) == "arn:q"
    assert resolve({"Fn::Sub": "${UploadBucket}/${UploadPrefix}${UploadQueue.Arn}"}) == (
        "bucket-1/incoming/arn:q"
    )
    assert resolve({"Fn::Sub": ["${X}-${AWS::Region}", {"X": {"Ref": "UploadBucket"}}]}) == (
        f"bucket-1-{REGION}"
    )
    split = {"Fn::Select": [1, {"Fn::Split": ["-", "a-b-c"]}]}
    assert resolve({"Fn::Join": ["/", [split, {"Ref": "AWS::AccountId"}]]}) == "b/123456789012"


def test_cloudformation_s_notification_shape_becomes_the_s3_api_s():
    cfn = {
        "QueueConfigurations": [
            {
                "Event": "s3:ObjectCreated:*",
                "Queue": "arn:aws:sqs:us-east-1:1:q",
                "Filter": {"S3Key": {"Rules": [{"Name": "prefix", "Value": "uploads/"}]}},
            }
        ],
        "LambdaConfigurations": [{"Event": "s3:ObjectRemoved:*", "Function": "arn:f"}],
    }
    assert s3_notification_configuration(cfn, "Bucket") == {
        "QueueConfigurations": [
            {
                "Id": "Bucket-Queue-0",
                "QueueArn": "arn:aws:sqs:us-east-1:1:q",
                "Events": ["s3:ObjectCreated:*"],
                "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "uploads/"}]}},
            }
        ],
        "LambdaFunctionConfigurations": [
            {
                "Id": "Bucket-Function-0",
                "LambdaFunctionArn": "arn:f",
                "Events": ["s3:ObjectRemoved:*"],
            }
        ],
    }


def test_the_sequencer_patch_is_counted_and_undone_by_the_last_uninstall(deployed):
    from moto.s3 import notifications

    patched = notifications._get_s3_event
    moto_s3_events.install()
    moto_s3_events.uninstall()
    assert notifications._get_s3_event is patched  # the module's install still holds
    moto_s3_events.uninstall()
    assert notifications._get_s3_event is patched.__wrapped__  # moto's own builder
    moto_s3_events.install()  # the module's, again (its fixture undoes it)
