"""What `sam deploy` creates: the resources the function needs, and no more permission than that."""

from __future__ import annotations

import ast
import fnmatch
import importlib.metadata
import io
import json
import subprocess
import tomllib
import zipfile
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import pytest
from cfnlint.api import lint_file

from local.aws.package import zip_code

REPO_ROOT = Path(__file__).resolve().parents[3]
TEMPLATE = REPO_ROOT / "template.yaml"
CHECKOV = REPO_ROOT / ".venv" / "tools" / "checkov" / "bin" / "checkov"
ACCOUNT = "123456789012"
REGION = "us-east-1"

pytestmark = pytest.mark.filterwarnings("ignore:Tried to parse AWS::")


def resources_of_type(template: dict[str, Any], resource_type: str) -> dict[str, Any]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == resource_type}


# -- a small reader of resource policies ----------------------------------------------------------


def _condition_holds(operator: str, key: str, expected: Any, context: dict[str, Any]) -> bool:
    """IAM's rule for one condition: a negated operator holds when the key is absent."""
    values = expected if isinstance(expected, list) else [expected]
    if operator == "Null":
        return (key not in context) == (str(values[0]).lower() == "true")
    negated = "Not" in operator
    if key not in context:
        return negated
    actual = context[key]
    base = operator.replace("Not", "", 1)
    if base in ("StringEquals", "ArnEquals"):
        hit = actual in values
    elif base in ("StringLike", "ArnLike"):
        hit = any(fnmatch.fnmatchcase(actual, v) for v in values)
    elif base == "Bool":
        hit = str(actual).lower() in {str(v).lower() for v in values}
    else:
        raise ValueError(f"operator {operator} is not modelled here")
    return hit != negated


def decide(
    document: dict[str, Any], action: str, principal: tuple[str, str], context: dict[str, Any]
) -> str:
    """What a resource policy says of one request: "denied" (an explicit Deny), "allowed" (an
    Allow, no Deny), or "iam" (neither: a principal of the account gets what its IAM grants).

    ``principal``: ("AWS", the caller's ARN) or ("Service", "s3.amazonaws.com")."""
    kind, name = principal

    def applies(statement: dict[str, Any]) -> bool:
        actions = statement["Action"]
        actions = [actions] if isinstance(actions, str) else actions
        named = statement["Principal"]
        if named != "*":
            names = named.get(kind, [])
            if name not in ([names] if isinstance(names, str) else names):
                return False
        return any(fnmatch.fnmatchcase(action, a) for a in actions) and all(
            _condition_holds(operator, key, expected, context)
            for operator, keys in statement.get("Condition", {}).items()
            for key, expected in keys.items()
        )

    effects = {s["Effect"] for s in document["Statement"] if applies(s)}
    return "denied" if "Deny" in effects else "allowed" if "Allow" in effects else "iam"


# -- linters -------------------------------------------------------------------------------------


def test_cfn_lint_reports_nothing():
    matches = lint_file(TEMPLATE)
    assert [str(m) for m in matches] == []


def test_checkov_fails_nothing_and_every_suppression_has_a_reason(sam_template):
    completed = subprocess.run(
        [
            str(CHECKOV),
            "--file",
            str(TEMPLATE),
            "--framework",
            "cloudformation",
            "--output",
            "json",
            "--skip-download",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO_ROOT,
        check=False,
    )
    report = json.loads(completed.stdout)
    report = report[0] if isinstance(report, list) else report
    failed = [(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]]
    assert failed == []
    assert completed.returncode == 0
    skipped = report["results"]["skipped_checks"]
    assert skipped, "suppressions in the template were not seen by checkov"
    assert all(c["check_result"].get("suppress_comment", "").strip() for c in skipped)
    # Every suppression in the template has a one-line reason.
    declared = [
        skip
        for resource in sam_template["Resources"].values()
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", [])
    ]
    assert {s["id"] for s in declared} == {c["check_id"] for c in skipped}
    assert all(s.get("comment") and "\n" not in s["comment"] for s in declared)
    assert report["summary"]["passed"] >= 10


# -- parameters ----------------------------------------------------------------------------------


def test_parameters_and_their_defaults(sam_template):
    parameters = sam_template["Parameters"]
    assert "Default" not in parameters["EndpointName"]  # required at deploy time
    assert parameters["UploadPrefix"]["Default"] == "uploads/"
    assert parameters["TopK"]["Default"] == 3
    assert parameters["LogLevel"]["Default"] == "INFO"
    assert parameters["MaxConcurrency"]["Type"] == "Number"
    # An SQS event source mapping's MaximumConcurrency accepts 2 at least.
    assert parameters["MaxConcurrency"]["MinValue"] == 2
    assert parameters["MaxConcurrency"]["Default"] == 2
    # Well below the function's memory: the image and its decoded pixels must fit in it.
    memory_bytes = sam_template["Globals"]["Function"]["MemorySize"] * 1024 * 1024
    assert parameters["MaxObjectBytes"]["Default"] <= memory_bytes // 10
    assert parameters["LowConfidenceThreshold"]["Default"] == 0.5
    assert parameters["AlarmEmail"]["Default"] == ""  # optional
    # Empty: every IAM principal of the account may send, as before the parameter existed.
    assert parameters["QueueSenderArns"]["Type"] == "CommaDelimitedList"
    assert parameters["QueueSenderArns"]["Default"] == ""
    # CPUUtilization is summed over vCPUs: the default sits below an ml.t2.medium's 2 x 100 %.
    assert 100 < parameters["EndpointCpuAlarmPercent"]["Default"] < 200


# -- deployed into moto --------------------------------------------------------------------------


def test_the_stack_deploys_with_bucket_queues_function_mapping_and_table(deployed, aws):
    assert set(deployed.resource_types.values()) >= {
        "AWS::S3::Bucket",
        "AWS::DynamoDB::Table",
        "AWS::Lambda::Function",
        "AWS::Lambda::EventSourceMapping",
        "AWS::IAM::Role",
        "AWS::SQS::Queue",
    }
    outputs = deployed.outputs
    assert outputs["UploadBucketName"] == deployed.bucket_name
    assert outputs["PredictionsTableName"] == deployed.table_name
    assert outputs["ClassifyUploadFunctionName"] == deployed.function_name
    sqs = aws("sqs")
    for name in ("UploadQueue", "DeadLetterQueue"):
        url = outputs[f"{name}Url"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]
        assert arn["QueueArn"] == outputs[f"{name}Arn"]
    # Named without referring to itself (no circular dependency), unique per stack.
    stack_suffix = deployed.stack_id.split("/")[2].split("-")[0]
    assert deployed.bucket_name == f"dog-breed-uploads-{ACCOUNT}-{REGION}-{stack_suffix}"


def test_function_environment_is_exactly_what_the_handler_reads(deployed):
    assert deployed.environment == {
        "TABLE_NAME": deployed.table_name,
        "ENDPOINT_NAME": "dog-breeds-prod",
        "UPLOAD_BUCKET": deployed.bucket_name,
        "UPLOAD_PREFIX": "incoming/photos/",
        "TOP_K": "5",
        "MAX_OBJECT_BYTES": "26214400",
        "MAX_REQUEST_BYTES": "6291456",
        "LOW_CONFIDENCE_THRESHOLD": "0.5",
        "LOG_LEVEL": "DEBUG",
        "POWERTOOLS_SERVICE_NAME": "classify_upload",
        "POWERTOOLS_METRICS_NAMESPACE": "DogBreeds",
    }


def test_no_reserved_concurrency_so_a_new_account_can_deploy(deployed, translated, aws):
    config = deployed.function_configuration
    assert config["Runtime"] == "python3.12"
    assert config["Handler"] == "classify_upload.handler.lambda_handler"
    assert config["Timeout"] >= 120 and config["MemorySize"] >= 512
    function = translated["Resources"]["ClassifyUploadFunction"]["Properties"]
    assert "ReservedConcurrentExecutions" not in function
    concurrency = aws("lambda").get_function_concurrency(FunctionName=deployed.function_name)
    assert "ReservedConcurrentExecutions" not in concurrency
    assert function["TracingConfig"] == {"Mode": "Active"}
    # Nothing invokes it asynchronously any more: no async retry settings, no S3 permission.
    assert not resources_of_type(translated, "AWS::Lambda::EventInvokeConfig")
    assert not resources_of_type(translated, "AWS::Lambda::Permission")


def test_the_mapping_bounds_concurrency_and_reports_partial_batch_failures(deployed, aws):
    (mapping,) = aws("lambda").list_event_source_mappings(FunctionName=deployed.function_name)[
        "EventSourceMappings"
    ]
    assert mapping["EventSourceArn"] == deployed.outputs["UploadQueueArn"]
    assert mapping["BatchSize"] == 10
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["ScalingConfig"] == {"MaximumConcurrency": 3}  # the MaxConcurrency parameter


def test_the_queue_waits_six_function_timeouts_then_dead_letters(deployed, aws):
    sqs = aws("sqs")
    source = sqs.get_queue_attributes(
        QueueUrl=deployed.outputs["UploadQueueUrl"], AttributeNames=["All"]
    )["Attributes"]
    dead = sqs.get_queue_attributes(
        QueueUrl=deployed.outputs["DeadLetterQueueUrl"], AttributeNames=["All"]
    )["Attributes"]
    timeout = deployed.function_configuration["Timeout"]
    assert int(source["VisibilityTimeout"]) >= 6 * timeout  # AWS's advice for SQS event sources
    redrive = json.loads(source["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"] == deployed.outputs["DeadLetterQueueArn"]
    assert 3 <= int(redrive["maxReceiveCount"]) <= 10
    # A dead letter keeps its first enqueue time: the DLQ must keep messages longer.
    assert int(dead["MessageRetentionPeriod"]) > int(source["MessageRetentionPeriod"])
    assert source["SqsManagedSseEnabled"] == dead["SqsManagedSseEnabled"] == "true"


def test_only_this_bucket_may_send_to_the_upload_queue(translated):
    policies = resources_of_type(translated, "AWS::SQS::QueuePolicy")
    policy = policies["UploadQueuePolicy"]
    assert policy["Properties"]["Queues"] == [{"Ref": "UploadQueue"}]
    statements = {s["Sid"]: s for s in policy["Properties"]["PolicyDocument"]["Statement"]}
    assert list(statements) == [
        "OnlyThisBucketSendsUploads",
        "OnlyThisBucketAndOperatorsSend",
        "OnlyThisAccountsBucketAndOperatorsSend",
        "DenyInsecureTransport",
    ]
    allow = statements["OnlyThisBucketSendsUploads"]
    assert allow["Effect"] == "Allow"
    assert allow["Principal"] == {"Service": "s3.amazonaws.com"}
    assert allow["Action"] == "sqs:SendMessage"
    assert allow["Resource"] == {"Fn::GetAtt": ["UploadQueue", "Arn"]}
    source_arn = allow["Condition"]["ArnEquals"]["aws:SourceArn"]
    bucket_name = translated["Resources"]["UploadBucket"]["Properties"]["BucketName"]["Fn::Sub"]
    # The bucket's own computed name, same variables: this bucket and no other.
    assert source_arn["Fn::Sub"][0] == "arn:${AWS::Partition}:s3:::" + bucket_name[0]
    assert source_arn["Fn::Sub"][1] == bucket_name[1]
    assert allow["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
    # Two Denies on SendMessage alone (receiving is the function's IAM's business), one per key S3
    # sets, each waived for the named principals: the parameter, or the whole account.
    senders = {
        "Fn::If": [
            "HasQueueSenders",
            {"Ref": "QueueSenderArns"},
            [{"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:*"}],
        ]
    }
    by_bucket = statements["OnlyThisBucketAndOperatorsSend"]
    by_account = statements["OnlyThisAccountsBucketAndOperatorsSend"]
    for deny in (by_bucket, by_account):
        assert (deny["Effect"], deny["Principal"], deny["Action"]) == (
            "Deny",
            "*",
            "sqs:SendMessage",
        )
        assert deny["Resource"] == {"Fn::GetAtt": ["UploadQueue", "Arn"]}
        assert deny["Condition"]["ArnNotLike"] == {"aws:PrincipalArn": senders}
    assert by_bucket["Condition"]["ArnNotEquals"] == {"aws:SourceArn": source_arn}
    assert by_account["Condition"]["StringNotEquals"] == allow["Condition"]["StringEquals"]
    assert translated["Conditions"]["HasQueueSenders"] == {
        "Fn::Not": [{"Fn::Equals": [{"Fn::Join": ["", {"Ref": "QueueSenderArns"}]}, ""]}]
    }
    deny = statements["DenyInsecureTransport"]
    assert deny["Effect"] == "Deny"
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    # The dead-letter queue: nobody is allowed anything beyond the account's own IAM; TLS only.
    (dead_deny,) = policies["DeadLetterQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert dead_deny == {**deny, "Resource": {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}}


OPERATOR_ROLE = f"arn:aws:iam::{ACCOUNT}:role/dog-breeds-ops-reprocess"
OTHER_ROLE = f"arn:aws:iam::{ACCOUNT}:role/some-application"


def _iam_caller(role_arn: str, **context: Any) -> tuple[tuple[str, str], dict[str, Any]]:
    """A role session's request: the session's ARN as principal, the role's as aws:PrincipalArn."""
    session = role_arn.replace(":iam::", ":sts::").replace(":role/", ":assumed-role/") + "/cli"
    return ("AWS", session), {
        "aws:PrincipalArn": role_arn,
        "aws:PrincipalAccount": role_arn.split(":")[4],
        "aws:SecureTransport": "true",
        **context,
    }


def _s3_delivery(bucket_arn: str, account: str = ACCOUNT) -> tuple[tuple[str, str], dict]:
    return ("Service", "s3.amazonaws.com"), {
        "aws:SourceArn": bucket_arn,
        "aws:SourceAccount": account,
        "aws:SecureTransport": "true",
    }


def _upload_queue_requests(deployed) -> dict[str, tuple[tuple[str, str], dict[str, Any]]]:
    bucket_arn = f"arn:aws:s3:::{deployed.bucket_name}"
    return {
        "this bucket's notification": _s3_delivery(bucket_arn),
        "another bucket's notification": _s3_delivery("arn:aws:s3:::someone-elses-bucket"),
        "a bucket of that name in another account": _s3_delivery(bucket_arn, "999999999999"),
        "reprocess by the ops role": _iam_caller(OPERATOR_ROLE),
        # The move task sends as the identity that started it (see the template's comment).
        "redrive started by the ops role": _iam_caller(
            OPERATOR_ROLE, **{"aws:CalledVia": ["sqs.amazonaws.com"], "aws:ViaAWSService": "true"}
        ),
        "redrive started by another role": _iam_caller(
            OTHER_ROLE, **{"aws:CalledVia": ["sqs.amazonaws.com"], "aws:ViaAWSService": "true"}
        ),
        "the named user": (
            ("AWS", f"arn:aws:iam::{ACCOUNT}:user/alice"),
            {
                "aws:PrincipalArn": f"arn:aws:iam::{ACCOUNT}:user/alice",
                "aws:SecureTransport": "true",
            },
        ),
        "another role of the account": _iam_caller(OTHER_ROLE),
        "the account root": (
            ("AWS", f"arn:aws:iam::{ACCOUNT}:root"),
            {"aws:PrincipalArn": f"arn:aws:iam::{ACCOUNT}:root", "aws:SecureTransport": "true"},
        ),
        "a role of another account": _iam_caller("arn:aws:iam::999999999999:role/dog-breeds-ops-x"),
        "the ops role without TLS": _iam_caller(OPERATOR_ROLE, **{"aws:SecureTransport": "false"}),
    }


def _upload_queue_policy(deployed, resolve_deployed, **overrides: str) -> dict[str, Any]:
    """The upload queue's policy document as AWS would hold it for the deployed stack."""
    (policy,) = [
        r
        for r in resources_of_type(deployed.translated_template, "AWS::SQS::QueuePolicy").values()
        if r["Properties"]["Queues"] == [{"Ref": "UploadQueue"}]
    ]
    return resolve_deployed(**overrides)(policy["Properties"]["PolicyDocument"])


def test_with_operators_named_only_they_and_the_bucket_may_send_to_the_upload_queue(
    deployed, resolve_deployed
):
    # The stack is deployed with QueueSenderArns = role/dog-breeds-ops-*, user/alice.
    assert deployed.parameters["QueueSenderArns"].startswith(f"arn:aws:iam::{ACCOUNT}:role/")
    document = _upload_queue_policy(deployed, resolve_deployed)
    requests = _upload_queue_requests(deployed)
    verdicts = {name: decide(document, "sqs:SendMessage", *r) for name, r in requests.items()}
    assert verdicts == {
        "this bucket's notification": "allowed",
        "another bucket's notification": "denied",
        "a bucket of that name in another account": "denied",
        "reprocess by the ops role": "iam",  # its own IAM policy must allow sqs:SendMessage
        "redrive started by the ops role": "iam",
        "redrive started by another role": "denied",
        "the named user": "iam",
        "another role of the account": "denied",
        "the account root": "denied",
        "a role of another account": "denied",
        "the ops role without TLS": "denied",
    }
    # Only sending is restricted: the function still consumes with its role's permissions.
    function_role = deployed.function_configuration["Role"]
    principal, context = _iam_caller(function_role)
    assert decide(document, "sqs:ReceiveMessage", principal, context) == "iam"
    assert decide(document, "sqs:SendMessage", principal, context) == "denied"


def test_by_default_the_account_s_principals_may_still_send_and_no_one_else(
    deployed, resolve_deployed
):
    document = _upload_queue_policy(deployed, resolve_deployed, QueueSenderArns="")
    requests = _upload_queue_requests(deployed)
    verdicts = {name: decide(document, "sqs:SendMessage", *r) for name, r in requests.items()}
    assert verdicts == {
        "this bucket's notification": "allowed",
        "another bucket's notification": "denied",
        "a bucket of that name in another account": "denied",
        "reprocess by the ops role": "iam",
        "redrive started by the ops role": "iam",
        "redrive started by another role": "iam",
        "the named user": "iam",
        "another role of the account": "iam",
        "the account root": "iam",
        "a role of another account": "denied",
        "the ops role without TLS": "denied",
    }


def test_role_grants_exactly_what_the_function_needs(deployed, aws):
    iam = aws("iam")
    role_name = deployed.function_configuration["Role"].rsplit("/", 1)[1]
    statements = []
    for name in iam.list_role_policies(RoleName=role_name)["PolicyNames"]:
        document = iam.get_role_policy(RoleName=role_name, PolicyName=name)["PolicyDocument"]
        if isinstance(document, str):  # moto keeps CloudFormation's inline policies as repr()
            document = ast.literal_eval(document)
        statements += document["Statement"]

    def normalised(statement: dict[str, Any]) -> tuple:
        actions = statement["Action"]
        actions = [actions] if isinstance(actions, str) else actions
        resources = statement["Resource"]
        resources = [resources] if isinstance(resources, str) else resources
        return statement["Effect"], tuple(sorted(actions)), tuple(sorted(resources))

    table_arn = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{deployed.table_name}"
    assert sorted(normalised(s) for s in statements) == sorted(
        [
            (
                "Allow",
                ("s3:GetObject", "s3:GetObjectVersion"),
                (f"arn:aws:s3:::{deployed.bucket_name}/incoming/photos/*",),
            ),
            # So that a deleted upload reads as 404 NoSuchKey, not 403 (see the template).
            ("Allow", ("s3:ListBucket",), (f"arn:aws:s3:::{deployed.bucket_name}",)),
            ("Allow", ("dynamodb:PutItem",), (table_arn,)),
            (
                "Allow",
                (
                    "sqs:ChangeMessageVisibility",
                    "sqs:DeleteMessage",
                    "sqs:GetQueueAttributes",
                    "sqs:ReceiveMessage",
                ),
                (deployed.outputs["UploadQueueArn"],),
            ),
            (
                "Allow",
                ("sagemaker:InvokeEndpoint",),
                (f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/dog-breeds-prod",),
            ),
        ]
    )
    for statement in statements:
        for action in normalised(statement)[1]:
            assert "*" not in action


def test_role_managed_policies_are_logging_and_tracing_only(translated):
    role = translated["Resources"]["ClassifyUploadFunctionRole"]["Properties"]
    # No AWSLambdaSQSQueueExecutionRole (what a SAM SQS event adds): it reads every queue.
    assert sorted(role["ManagedPolicyArns"]) == [
        "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess",
        "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
    ]
    assert role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {
        "Service": ["lambda.amazonaws.com"]
    }
    # What those AWS-managed policies grant (moto ships a copy of their documents): named actions
    # only, for logs and X-Ray; "*" as resource because neither service scopes these actions.
    from moto.iam.aws_managed_policies import aws_managed_policies_data

    documents = json.loads(aws_managed_policies_data)
    granted = set()
    for arn in role["ManagedPolicyArns"]:
        for statement in documents[arn.rsplit("/", 1)[1]]["Document"]["Statement"]:
            assert statement["Effect"] == "Allow" and "Condition" not in statement
            granted |= set(statement["Action"])
    assert all("*" not in action for action in granted)
    assert {action.split(":")[0] for action in granted} == {"logs", "xray"}
    assert not {a for a in granted if not a.startswith(("logs:Create", "logs:Put", "xray:"))}


def test_the_bucket_notifies_the_queue_of_uploads_under_the_prefix(translated):
    bucket = translated["Resources"]["UploadBucket"]
    notification = bucket["Properties"]["NotificationConfiguration"]
    assert set(notification) == {"QueueConfigurations"}  # no Lambda trigger, no second route
    (trigger,) = notification["QueueConfigurations"]
    assert trigger["Event"] == "s3:ObjectCreated:*"
    rules = trigger["Filter"]["S3Key"]["Rules"]
    assert rules == [{"Name": "prefix", "Value": {"Ref": "UploadPrefix"}}]
    assert trigger["Queue"] == {"Fn::GetAtt": ["UploadQueue", "Arn"]}
    # S3 checks the queue policy when the notification is configured.
    assert bucket["DependsOn"] in ("UploadQueuePolicy", ["UploadQueuePolicy"])
    assert bucket["Properties"]["VersioningConfiguration"] == {"Status": "Enabled"}
    # The function never writes to the bucket: no recursive trigger is possible.
    role = translated["Resources"]["ClassifyUploadFunctionRole"]["Properties"]
    actions = json.dumps(role["Policies"])
    assert "s3:PutObject" not in actions


def test_the_bucket_is_private_encrypted_and_tls_only(translated, deployed, aws, resolve_deployed):
    properties = translated["Resources"]["UploadBucket"]["Properties"]
    assert properties["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    encryption = aws("s3").get_bucket_encryption(Bucket=deployed.bucket_name)
    rule = encryption["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    (policy,) = resources_of_type(translated, "AWS::S3::BucketPolicy").values()
    tls, sse_c = policy["Properties"]["PolicyDocument"]["Statement"]
    assert tls["Effect"] == "Deny" and tls["Principal"] == "*"
    assert tls["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert policy["Properties"]["Bucket"] == {"Ref": "UploadBucket"}
    # The function could not read an object under a key only the uploader holds.
    assert (sse_c["Effect"], sse_c["Principal"], sse_c["Action"]) == ("Deny", "*", "s3:PutObject")
    assert sse_c["Condition"] == {
        "Null": {"s3:x-amz-server-side-encryption-customer-algorithm": "false"}
    }
    document = resolve_deployed()(policy["Properties"]["PolicyDocument"])
    assert document["Statement"][1]["Resource"] == f"arn:aws:s3:::{deployed.bucket_name}/*"
    uploader, context = _iam_caller(OTHER_ROLE)
    assert decide(document, "s3:PutObject", uploader, context) == "iam"
    sse_c_context = {**context, "s3:x-amz-server-side-encryption-customer-algorithm": "AES256"}
    assert decide(document, "s3:PutObject", uploader, sse_c_context) == "denied"


def test_the_table_is_on_demand_recoverable_encrypted_and_queryable_without_a_scan(
    translated, deployed, aws
):
    table = aws("dynamodb").describe_table(TableName=deployed.table_name)["Table"]
    assert table["KeySchema"] == [
        {"AttributeName": "bucket", "KeyType": "HASH"},
        {"AttributeName": "key", "KeyType": "RANGE"},
    ]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    indexes = {i["IndexName"]: i for i in table["GlobalSecondaryIndexes"]}
    assert set(indexes) == {"by_breed", "low_confidence"}
    assert indexes["by_breed"]["KeySchema"] == [
        {"AttributeName": "breed", "KeyType": "HASH"},
        {"AttributeName": "predicted_at", "KeyType": "RANGE"},
    ]
    assert indexes["low_confidence"]["KeySchema"] == [
        {"AttributeName": "confidence", "KeyType": "HASH"},
        {"AttributeName": "predicted_at", "KeyType": "RANGE"},
    ]
    assert all(i["Projection"] == {"ProjectionType": "ALL"} for i in indexes.values())
    properties = translated["Resources"]["PredictionsTable"]["Properties"]
    assert properties["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert properties["SSESpecification"] == {"SSEEnabled": True}


def test_alarms_watch_errors_dead_letters_backlog_and_the_failed_ratio(translated):
    alarms = {
        k: v["Properties"]
        for k, v in resources_of_type(translated, "AWS::CloudWatch::Alarm").items()
    }
    assert set(alarms) == {
        "FunctionErrorsAlarm",
        "DeadLetterQueueDepthAlarm",
        "BacklogAgeAlarm",
        "FailedRatioAlarm",
        *WATCHED,
    }
    for alarm in alarms.values():
        # Told when it fires and when it clears.
        assert alarm["AlarmActions"] == alarm["OKActions"] == [{"Ref": "AlarmTopic"}]
    errors, dead = alarms["FunctionErrorsAlarm"], alarms["DeadLetterQueueDepthAlarm"]
    assert (errors["Namespace"], errors["MetricName"]) == ("AWS/Lambda", "Errors")
    assert errors["Dimensions"] == [
        {"Name": "FunctionName", "Value": {"Ref": "ClassifyUploadFunction"}}
    ]
    assert dead["MetricName"] == "ApproximateNumberOfMessagesVisible"
    assert dead["Dimensions"] == [
        {"Name": "QueueName", "Value": {"Fn::GetAtt": ["DeadLetterQueue", "QueueName"]}}
    ]
    for alarm in (errors, dead):
        assert alarm["Threshold"] == 1
        assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    backlog = alarms["BacklogAgeAlarm"]
    assert backlog["MetricName"] == "ApproximateAgeOfOldestMessage"
    assert backlog["Dimensions"][0]["Value"] == {"Fn::GetAtt": ["UploadQueue", "QueueName"]}
    assert backlog["Threshold"] == {"Ref": "BacklogAgeAlarmSeconds"}
    ratio = alarms["FailedRatioAlarm"]
    metrics = {m["Id"]: m for m in ratio["Metrics"]}
    # The function's own Powertools metrics: the names and dimension the handler emits.
    for metric_id, name in [("failed", "Failed"), ("predicted", "Predicted")]:
        stat = metrics[metric_id]["MetricStat"]["Metric"]
        assert (stat["Namespace"], stat["MetricName"]) == ("DogBreeds", name)
        assert stat["Dimensions"] == [{"Name": "service", "Value": "classify_upload"}]
    assert [m["Id"] for m in ratio["Metrics"] if m["ReturnData"]] == ["ratio"]
    assert ratio["Threshold"] == {"Ref": "FailedRatioAlarmThreshold"}
    # CloudWatch cannot use the AWS-managed SNS key (its key policy admits no service principal):
    # a topic encrypted with it swallows every alarm notification.
    topic = translated["Resources"]["AlarmTopic"]["Properties"]
    assert topic.get("KmsMasterKeyId") in (None, {"Ref": "AWS::NoValue"})


# What each alarm watches, as CloudWatch holds it once deployed: namespace, metric, dimensions
# (by what they name), statistic, threshold, comparison, missing data.
WATCHED = {
    "FunctionErrorsAlarm": ("AWS/Lambda", "Errors", "function", "Sum", 1, ">=", "notBreaching"),
    "DeadLetterQueueDepthAlarm": (
        "AWS/SQS",
        "ApproximateNumberOfMessagesVisible",
        "dead-letter queue",
        "Maximum",
        1,
        ">=",
        "notBreaching",
    ),
    "BacklogAgeAlarm": (
        "AWS/SQS",
        "ApproximateAgeOfOldestMessage",
        "upload queue",
        "Maximum",
        900,  # BacklogAgeAlarmSeconds' default
        ">",
        "notBreaching",
    ),
    "EndpointErrorsAlarm": (
        "AWS/SageMaker",
        "Invocation5XXErrors",
        "endpoint",
        "Sum",
        1,
        ">=",
        "notBreaching",
    ),
    # ModelLatency is in microseconds: 10 s, a sixth of the 60 s an invocation may take.
    "EndpointLatencyAlarm": (
        "AWS/SageMaker",
        "ModelLatency",
        "endpoint",
        "p99",
        10_000_000,
        ">",
        "notBreaching",
    ),
    # Instance metrics come every minute while the endpoint exists: missing is not healthy.
    "EndpointCpuAlarm": (
        "/aws/sagemaker/Endpoints",
        "CPUUtilization",
        "endpoint",
        "Average",
        350,  # the EndpointCpuAlarmPercent deployed
        ">",
        "missing",
    ),
    "EndpointMemoryAlarm": (
        "/aws/sagemaker/Endpoints",
        "MemoryUtilization",
        "endpoint",
        "Average",
        90,
        ">",
        "missing",
    ),
    "FunctionThrottlesAlarm": (
        "AWS/Lambda",
        "Throttles",
        "function",
        "Sum",
        1,
        ">=",
        "notBreaching",
    ),
    "FunctionDurationAlarm": (
        "AWS/Lambda",
        "Duration",
        "function",
        "p99",
        240_000,  # 80 % of the 300 s timeout, in ms (test below)
        ">",
        "notBreaching",
    ),
    "RetryLaterAlarm": ("DogBreeds", "RetryLater", "service", "Sum", 1, ">=", "notBreaching"),
    "DroppedMessagesAlarm": (
        "DogBreeds",
        "DroppedMessages",
        "service",
        "Sum",
        1,
        ">=",
        "notBreaching",
    ),
}
COMPARISONS = {">=": "GreaterThanOrEqualToThreshold", ">": "GreaterThanThreshold"}


@pytest.mark.parametrize("name", sorted(WATCHED))
def test_each_alarm_watches_its_metric_and_tells_the_topic_when_it_fires_and_clears(
    name, deployed, deployed_alarms
):
    namespace, metric, watched, statistic, threshold, comparison, missing = WATCHED[name]
    alarm = deployed_alarms[name]
    dimensions = {
        "function": [{"Name": "FunctionName", "Value": deployed.function_name}],
        "dead-letter queue": [{"Name": "QueueName", "Value": deployed.dead_letter_queue.name}],
        "upload queue": [{"Name": "QueueName", "Value": deployed.upload_queue.name}],
        "endpoint": [
            {"Name": "EndpointName", "Value": deployed.parameters["EndpointName"]},
            {"Name": "VariantName", "Value": "AllTraffic"},
        ],
        # What Powertools adds to every metric: service = POWERTOOLS_SERVICE_NAME, nothing else.
        "service": [{"Name": "service", "Value": deployed.environment["POWERTOOLS_SERVICE_NAME"]}],
    }[watched]
    if watched == "service":
        assert namespace == deployed.environment["POWERTOOLS_METRICS_NAMESPACE"]
    assert (alarm["Namespace"], alarm["MetricName"]) == (namespace, metric)
    assert alarm["Dimensions"] == dimensions
    if statistic.startswith("p"):
        assert alarm["ExtendedStatistic"] == statistic and not alarm.get("Statistic")
    else:
        assert alarm["Statistic"] == statistic and not alarm.get("ExtendedStatistic")
    assert alarm["Threshold"] == threshold
    assert alarm["ComparisonOperator"] == COMPARISONS[comparison]
    assert alarm["TreatMissingData"] == missing
    topic = deployed.resources["AlarmTopic"]
    assert topic.startswith("arn:aws:sns:")
    assert alarm["AlarmActions"] == alarm["OKActions"] == [topic]
    assert alarm["Period"] == 300 and alarm["AlarmDescription"]


def test_the_failed_ratio_alarm_deploys_and_tells_the_topic_when_it_fires_and_clears(
    deployed, deployed_alarms
):
    alarm = deployed_alarms["FailedRatioAlarm"]
    topic = deployed.resources["AlarmTopic"]
    assert alarm["AlarmActions"] == alarm["OKActions"] == [topic]
    assert [q["Id"] for q in alarm["Metrics"]] == ["failed", "predicted", "ratio"]
    assert alarm["Threshold"] == 0.5


def test_the_duration_alarm_fires_at_four_fifths_of_the_function_s_timeout(
    deployed, deployed_alarms
):
    timeout_ms = deployed.function_configuration["Timeout"] * 1000
    assert deployed_alarms["FunctionDurationAlarm"]["Threshold"] == 0.8 * timeout_ms


def test_the_alarmed_metrics_are_the_ones_the_handler_emits_with_its_only_dimension():
    source = (REPO_ROOT / "lambdas/classify_upload/classify_upload/handler.py").read_text()
    tree = ast.parse(source)
    (emit,) = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef) and node.name == "_emit_metrics"
    ]
    emitted = {
        element.elts[0].value
        for element in ast.walk(emit)
        if isinstance(element, ast.Tuple)
        and element.elts
        and isinstance(element.elts[0], ast.Constant)
        and isinstance(element.elts[0].value, str)
    }
    own = {metric for namespace, metric, *_ in WATCHED.values() if namespace == "DogBreeds"}
    assert own == {"RetryLater", "DroppedMessages"}
    assert own | {"Failed", "Predicted"} <= emitted  # FailedRatioAlarm's two
    # Metrics() with no arguments and no add_dimension: "service" is the only dimension.
    (constructed,) = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Metrics"
    ]
    assert not constructed.args and not constructed.keywords
    assert "add_dimension" not in source and "default_dimensions" not in source


def test_an_alarm_email_is_subscribed_only_when_given(translated):
    (subscription,) = resources_of_type(translated, "AWS::SNS::Subscription").values()
    assert subscription["Condition"] == "HasAlarmEmail"
    assert subscription["Properties"] == {
        "TopicArn": {"Ref": "AlarmTopic"},
        "Protocol": "email",
        "Endpoint": {"Ref": "AlarmEmail"},
    }
    assert translated["Conditions"]["HasAlarmEmail"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmEmail"}, ""]}]
    }


# -- what sam build packs, what sam deploy reads, what sam local invoke sends ---------------------


def test_the_code_package_holds_the_handler_and_its_modules_only():
    package = zip_code(REPO_ROOT / "lambdas" / "classify_upload")
    names = set(zipfile.ZipFile(io.BytesIO(package)).namelist())
    assert {
        "requirements.txt",
        "classify_upload/__init__.py",
        "classify_upload/handler.py",
        "classify_upload/table.py",
    } <= names
    assert all(n == "requirements.txt" or n.startswith("classify_upload/") for n in names)
    requirements = (REPO_ROOT / "lambdas/classify_upload/requirements.txt").read_text()
    pins = dict(
        line.split("==") for line in requirements.splitlines() if line and not line.startswith("#")
    )
    assert pins and all(pins.values())
    # Powertools' tracer extra packs botocore (through aws-xray-sdk): boto3 is packed beside it,
    # at the version the tests run, not left to whatever boto3 the runtime has.
    assert "aws-lambda-powertools[tracer]" in pins
    assert pins["boto3"] == importlib.metadata.version("boto3")


def test_samconfig_names_the_stack_and_capabilities():
    config = tomllib.loads((REPO_ROOT / "samconfig.toml").read_text())
    assert config["default"]["global"]["parameters"]["stack_name"]
    assert config["default"]["deploy"]["parameters"]["capabilities"] == "CAPABILITY_IAM"


@pytest.mark.parametrize(
    ("name", "keys"),
    [
        ("upload.json", ["uploads/dog.jpg"]),
        ("upload_special_key.json", ["uploads/my dog+café (1).jpg"]),
        ("upload_many.json", ["uploads/labrador.jpg", "uploads/beagle.png", "uploads/poodle.webp"]),
        ("upload_outside_prefix.json", ["other/notes.txt"]),
        ("s3_test_event.json", []),
    ],
)
def test_sample_events_are_shaped_like_s3_sends_them(name, keys):
    event = json.loads((REPO_ROOT / "events" / name).read_text(encoding="utf-8"))
    if not keys:
        assert event["Event"] == "s3:TestEvent" and "Records" not in event
        return
    decoded = []
    for record in event["Records"]:
        assert record["eventSource"] == "aws:s3"
        assert record["eventName"].startswith("ObjectCreated:")
        obj = record["s3"]["object"]
        assert int(obj["sequencer"], 16) >= 0 and obj["eTag"] and obj["size"] > 0
        assert " " not in obj["key"]  # S3 sends keys URL-encoded
        decoded.append(unquote_plus(obj["key"]))
    assert decoded == keys


@pytest.mark.parametrize(
    ("name", "kinds"),
    [
        ("queue_upload.json", ["upload"]),
        ("queue_batch.json", ["test", "upload", "upload"]),
        ("queue_reprocess.json", ["reprocess"]),
    ],
)
def test_sample_queue_events_are_shaped_like_lambdas_sqs_event_source(name, kinds):
    from classify_upload.events import is_test_event, reprocess_request, uploaded_objects

    event = json.loads((REPO_ROOT / "events" / name).read_text(encoding="utf-8"))
    found = []
    for record in event["Records"]:
        assert record["eventSource"] == "aws:sqs"
        assert record["messageId"] and record["receiptHandle"]
        assert record["attributes"]["ApproximateReceiveCount"] == "1"
        body = json.loads(record["body"])
        if is_test_event(body):
            found.append("test")
        elif reprocess_request(body) is not None:
            found.append("reprocess")
        else:
            assert uploaded_objects(body)
            found.append("upload")
    assert found == kinds
