"""``deploy`` to an endpoint that exists updates it in place; ``rollback`` and ``teardown``.

moto runs SageMaker's strict control plane here (``local.aws.moto_sagemaker``, installed by the
conftest), and what AWS would refuse is asserted from the request log as well: no Create* names a
model, endpoint config or endpoint that exists at that moment.
"""

from __future__ import annotations

import json
import os
import threading
import time
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any, cast

import boto3
import pytest
from launch_testkit import BUCKET, REGION, ROLE, Run, model_tarball, names_created_again

from local.aws import moto_sagemaker
from training.launch import autoscaling, endpoint, rollout
from training.launch.aws import Aws

ENDPOINT = "dogs-update"
V1, V2, V3, V4 = "aaaaaaaaaaa1", "bbbbbbbbbbb2", "ccccccccccc3", "ddddddddddd4"
SCALING_TARGET = f"endpoint/{ENDPOINT}/variant/AllTraffic"


def put_model(version: str) -> str:
    """A model.tar.gz whose config.json carries ``version``, as training writes it."""
    config = json.dumps({"model_version": version}).encode()
    data = model_tarball({"config.json": config, "classes.json": b'["A"]', "model.pth": b"w"})
    key = f"models/{version}/model.tar.gz"
    boto3.client("s3").put_object(Bucket=BUCKET, Key=key, Body=data)
    return f"s3://{BUCKET}/{key}"


@pytest.fixture
def deploy(run_launch):
    def run(version: str, *flags: str) -> Run:
        return run_launch(
            "deploy", "--role", ROLE, "--model-data", put_model(version),
            "--endpoint-name", ENDPOINT, *flags,
        )  # fmt: skip

    return run


@pytest.fixture
def sm() -> Any:
    return boto3.client("sagemaker", region_name=REGION)


@pytest.fixture
def endpoint_alarms(aws) -> list[str]:
    """The SAM stack's two alarms on the endpoint's invocation metrics, and two that are not."""
    cloudwatch = boto3.client("cloudwatch", region_name=REGION)

    def alarm(name: str, namespace: str, metric: str, endpoint_name: str = ENDPOINT) -> None:
        cloudwatch.put_metric_alarm(
            AlarmName=name, Namespace=namespace, MetricName=metric, Statistic="Sum",
            Dimensions=[{"Name": "EndpointName", "Value": endpoint_name},
                        {"Name": "VariantName", "Value": "AllTraffic"}],
            Period=300, EvaluationPeriods=1, Threshold=1,
            ComparisonOperator="GreaterThanOrEqualToThreshold",
        )  # fmt: skip

    alarm("stack-EndpointErrorsAlarm-1", "AWS/SageMaker", "Invocation5XXErrors")
    alarm("stack-EndpointLatencyAlarm-1", "AWS/SageMaker", "ModelLatency")
    alarm("stack-EndpointCpuAlarm-1", "/aws/sagemaker/Endpoints", "CPUUtilization")
    alarm("other-EndpointErrorsAlarm", "AWS/SageMaker", "Invocation5XXErrors", "other-endpoint")
    return ["stack-EndpointErrorsAlarm-1", "stack-EndpointLatencyAlarm-1"]


def live_config(sm: Any) -> str:
    return sm.describe_endpoint(EndpointName=ENDPOINT)["EndpointConfigName"]


def model_of(sm: Any, config: str) -> str:
    return sm.describe_endpoint_config(EndpointConfigName=config)["ProductionVariants"][0][
        "ModelName"
    ]


def test_a_second_deploy_updates_the_endpoint_in_place_with_no_teardown(
    deploy, sm, endpoint_alarms
):
    first = deploy(V1)
    assert first.rc == 0, first.err
    (created,) = first.requests("CreateEndpoint")
    assert created["EndpointName"] == ENDPOINT
    old_config = live_config(sm)
    assert old_config.startswith(f"{ENDPOINT}-{V1}-")
    assert f"version: {V1} (the artifact's config.json)" in first.out

    second = deploy(V2)
    assert second.rc == 0, second.err
    print(second.out)
    assert second.requests("CreateEndpoint") == []
    (update,) = second.requests("UpdateEndpoint")
    (config,) = second.requests("CreateEndpointConfig")
    assert update["EndpointName"] == ENDPOINT
    assert update["EndpointConfigName"] == config["EndpointConfigName"] == live_config(sm)
    assert config["ProductionVariants"][0]["VariantName"] == "AllTraffic"  # the live one's
    assert update["DeploymentConfig"] == {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 300},
            "TerminationWaitInSeconds": 300,
            "MaximumExecutionTimeoutInSeconds": 2400,
        },
        "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": a} for a in endpoint_alarms]},
    }
    assert "RetainAllVariantProperties" not in update  # nothing autoscales it

    # The endpoint kept its name; the previous config and its model stay for a rollback.
    assert [e["EndpointName"] for e in sm.list_endpoints()["Endpoints"]] == [ENDPOINT]
    assert sm.describe_endpoint_config(EndpointConfigName=old_config)
    assert sm.describe_model(ModelName=model_of(sm, old_config))
    assert names_created_again(first, second) == []

    out = second.out
    assert f"endpoint {ENDPOINT} exists (InService on {old_config}): updating it" in out
    assert f"endpoint config: {old_config} -> {update['EndpointConfigName']}" in out
    assert f"model version:   {V1} -> {V2}" in out
    assert f"rollback alarms: {', '.join(endpoint_alarms)}" in out
    assert f"status: InService on {update['EndpointConfigName']}" in out
    # No stack names the endpoint: the default stack, said so; the moto server's URL, as
    # AWS_ENDPOINT_URL pointed the launcher there.
    url = os.environ["AWS_ENDPOINT_URL"]
    assert f'make reprocess STACK=dog-breeds ARGS="--all --wait --endpoint-url {url}"' in out
    assert f"(the default stack: no one stack has EndpointName={ENDPOINT}; give yours)" in out
    assert f"SAM parameter: EndpointName={ENDPOINT} (unchanged" in out


def test_the_reprocess_line_names_the_stack_whose_endpoint_it_is(deploy):
    """The SAM stack is found by its EndpointName parameter; another endpoint's stack is not."""
    cfn = boto3.client("cloudformation", region_name=REGION)
    template = json.dumps(
        {
            "Parameters": {"EndpointName": {"Type": "String"}},
            "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
        }
    )
    for stack, name in (("my-dogs", ENDPOINT), ("their-dogs", "another-endpoint")):
        cfn.create_stack(
            StackName=stack,
            TemplateBody=template,
            Parameters=[{"ParameterKey": "EndpointName", "ParameterValue": name}],
        )
    assert deploy(V1).rc == 0
    second = deploy(V2)
    assert second.rc == 0, second.err
    url = os.environ["AWS_ENDPOINT_URL"]
    assert f'make reprocess STACK=my-dogs ARGS="--all --wait --endpoint-url {url}"' in second.out
    assert "the default stack" not in second.out


def test_the_reprocess_line_carries_the_endpoint_url_only_when_the_launcher_had_one(
    monkeypatch, capsys
):
    """On AWS the line is ``make reprocess`` as typed; pointed at moto by AWS_ENDPOINT_URL (the
    offline stack's deploy line), the line points ``classify_ops`` there too."""
    monkeypatch.setattr(endpoint, "stack_of", lambda _aws, _name: "my-dogs")
    aws = cast(Aws, SimpleNamespace(dry_run=False))
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    endpoint._print_reprocess(aws, ENDPOINT, "the new model")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:5000")
    endpoint._print_reprocess(aws, ENDPOINT, "the new model")
    lines = [line.strip() for line in capsys.readouterr().out.splitlines() if "make" in line]
    assert lines == [
        'make reprocess STACK=my-dogs ARGS="--all --wait"',
        'make reprocess STACK=my-dogs ARGS="--all --wait --endpoint-url http://127.0.0.1:5000"',
    ]


def test_an_update_dry_run_reads_the_live_endpoint_and_changes_nothing(deploy, sm):
    assert deploy(V1).rc == 0
    s3 = boto3.client("s3")

    def state() -> tuple[Any, ...]:
        return (
            live_config(sm),
            sorted(c["EndpointConfigName"] for c in sm.list_endpoint_configs()["EndpointConfigs"]),
            sorted(m["ModelName"] for m in sm.list_models()["Models"]),
            {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]},
        )

    before = state()
    run = deploy(V2, "--dry-run")
    assert run.rc == 0, run.err
    operations = [op for op, _ in run.dry_run_requests()]
    assert operations[-3:] == ["CreateModel", "CreateEndpointConfig", "UpdateEndpoint"]
    assert "CreateEndpoint" not in operations
    assert "DescribeEndpoint" in [c["operation"] for c in run.log.calls]  # read, not printed
    assert "would update endpoint: dogs-update: blue/green, all at once, bake 5 min" in run.out
    after = state()
    assert after[:3] == before[:3]
    assert after[3] - before[3] == {f"models/{V2}/model.tar.gz"}  # the test's own upload only


def test_a_canary_on_one_instance_is_refused_in_one_line_before_any_call(run_launch):
    run = run_launch(
        "deploy", "--role", ROLE, "--model-data", "s3://b/m.tar.gz", "--endpoint-name", ENDPOINT,
        "--canary-percent", "10",
    )  # fmt: skip
    assert run.rc == 2
    assert run.err.count("\n") == 1
    assert "--canary-percent 10: a canary needs at least 2 instances" in run.err
    assert run.log.calls == []


def test_a_canary_on_two_instances_shifts_part_of_the_capacity_first(deploy):
    assert deploy(V1).rc == 0
    run = deploy(V2, "--instance-count", "2", "--canary-percent", "50", "--bake-minutes", "10")
    assert run.rc == 0, run.err
    (update,) = run.requests("UpdateEndpoint")
    policy = update["DeploymentConfig"]["BlueGreenUpdatePolicy"]
    assert policy["TrafficRoutingConfiguration"] == {
        "Type": "CANARY",
        "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 50},
        "WaitIntervalInSeconds": 600,
    }
    assert policy["TerminationWaitInSeconds"] == 600
    assert policy["MaximumExecutionTimeoutInSeconds"] > 600 * 3
    assert "blue/green, canary 50% first, bake 10 min a step" in run.out


def test_named_rollback_alarms_must_exist(deploy, endpoint_alarms):
    assert deploy(V1).rc == 0
    run = deploy(V2, "--rollback-alarm", "no-such-alarm")
    assert run.rc == 2 and run.err.count("\n") == 1
    assert "--rollback-alarm no-such-alarm: no such CloudWatch alarm" in run.err
    assert run.requests("CreateModel") == []
    run = deploy(V2, "--rollback-alarm", endpoint_alarms[0])
    assert run.rc == 0, run.err
    (update,) = run.requests("UpdateEndpoint")
    alarms = update["DeploymentConfig"]["AutoRollbackConfiguration"]["Alarms"]
    assert alarms == [{"AlarmName": endpoint_alarms[0]}]


def test_without_alarms_the_update_says_nothing_rolls_it_back(deploy):
    assert deploy(V1).rc == 0
    run = deploy(V2)
    assert run.rc == 0, run.err
    (update,) = run.requests("UpdateEndpoint")
    assert "AutoRollbackConfiguration" not in update["DeploymentConfig"]
    assert "rollback alarms: none: no CloudWatch alarm" in run.out


def test_rollback_returns_to_the_previous_config_and_model(deploy, run_launch, sm):
    runs = [deploy(V1), deploy(V2)]
    assert [r.rc for r in runs] == [0, 0]
    first_config = runs[0].requests("CreateEndpointConfig")[0]["EndpointConfigName"]
    second_config = live_config(sm)

    back = run_launch("rollback", "--endpoint-name", ENDPOINT)
    assert back.rc == 0, back.err
    (update,) = back.requests("UpdateEndpoint")
    assert update == {"EndpointName": ENDPOINT, "EndpointConfigName": first_config}
    assert back.requests("CreateModel") == back.requests("CreateEndpointConfig") == []
    assert live_config(sm) == first_config
    assert f"rolling endpoint {ENDPOINT} back: {second_config} -> {first_config}" in back.out
    assert f"model version:   {V2} -> {V1}" in back.out
    assert f"status: InService on {first_config}" in back.out

    # Nothing older than the first: one line, exit 2. --to goes anywhere kept.
    again = run_launch("rollback", "--endpoint-name", ENDPOINT)
    assert again.rc == 2 and again.err.count("\n") == 1
    assert f"no endpoint config older than {first_config}" in again.err
    forward = run_launch("rollback", "--endpoint-name", ENDPOINT, "--to", second_config)
    assert forward.rc == 0, forward.err
    assert live_config(sm) == second_config
    assert names_created_again(*runs, back, forward) == []


def test_rollback_dry_run_changes_nothing(deploy, run_launch, sm):
    assert deploy(V1).rc == 0 and deploy(V2).rc == 0
    live = live_config(sm)
    run = run_launch("rollback", "--endpoint-name", ENDPOINT, "--dry-run")
    assert run.rc == 0, run.err
    assert [op for op, _ in run.dry_run_requests()] == ["UpdateEndpoint"]
    assert live_config(sm) == live


def test_a_deploy_keeps_the_live_config_and_two_before_it_and_prunes_the_rest(deploy, sm):
    runs = [deploy(v) for v in (V1, V2, V3)]
    assert [r.rc for r in runs] == [0, 0, 0]
    first_config = runs[0].requests("CreateEndpointConfig")[0]["EndpointConfigName"]
    first_model = runs[0].requests("CreateModel")[0]["ModelName"]
    assert "pruned" not in runs[2].out

    fourth = deploy(V4)
    assert fourth.rc == 0, fourth.err
    assert fourth.requests("DeleteEndpointConfig") == [{"EndpointConfigName": first_config}]
    assert fourth.requests("DeleteModel") == [{"ModelName": first_model}]
    assert f"pruned endpoint config {first_config} and model(s) {first_model}" in fourth.out
    configs = {c["EndpointConfigName"] for c in sm.list_endpoint_configs()["EndpointConfigs"]}
    assert configs == {r.requests("CreateEndpointConfig")[0]["EndpointConfigName"]
                       for r in (*runs[1:], fourth)}  # fmt: skip
    assert len(sm.list_models()["Models"]) == 3
    assert names_created_again(*runs, fourth) == []


def test_autoscaling_registers_the_variant_and_prints_the_queue_concurrency(deploy, sm):
    run = deploy(V1, "--max-instances", "3")
    assert run.rc == 0, run.err
    (target,) = run.requests("RegisterScalableTarget")
    assert target == {
        "ServiceNamespace": "sagemaker",
        "ResourceId": SCALING_TARGET,
        "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
        "MinCapacity": 1,
        "MaxCapacity": 3,
    }
    (policy,) = run.requests("PutScalingPolicy")
    tracking = policy["TargetTrackingScalingPolicyConfiguration"]
    assert tracking["PredefinedMetricSpecification"] == {
        "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"
    }
    assert tracking["TargetValue"] == autoscaling.TARGET_INVOCATIONS_PER_INSTANCE
    assert f"sam deploy --parameter-overrides EndpointName={ENDPOINT} MaxConcurrency=6" in run.out
    scaling = boto3.client("application-autoscaling", region_name=REGION)
    (registered,) = scaling.describe_scalable_targets(ServiceNamespace="sagemaker")[
        "ScalableTargets"
    ]
    assert (registered["MinCapacity"], registered["MaxCapacity"]) == (1, 3)

    # An update keeps what autoscaling decided: the live instance count is retained.
    update_run = deploy(V2)
    assert update_run.rc == 0, update_run.err
    (update,) = update_run.requests("UpdateEndpoint")
    assert update["RetainAllVariantProperties"] is True
    assert update_run.requests("DeregisterScalableTarget") == []


def test_an_autoscaled_endpoint_changing_instance_type_is_deregistered_then_registered(deploy, sm):
    assert deploy(V1, "--max-instances", "3").rc == 0
    run = deploy(V2, "--instance-type", "ml.m5.large")
    assert run.rc == 0, run.err
    operations = [c["operation"] for c in run.log.calls]
    assert (
        operations.index("DeregisterScalableTarget")
        < operations.index("UpdateEndpoint")
        < operations.index("RegisterScalableTarget")
    )
    (update,) = run.requests("UpdateEndpoint")
    assert "RetainAllVariantProperties" not in update
    config = sm.describe_endpoint_config(EndpointConfigName=live_config(sm))
    assert config["ProductionVariants"][0]["InstanceType"] == "ml.m5.large"
    scaling = boto3.client("application-autoscaling", region_name=REGION)
    (registered,) = scaling.describe_scalable_targets(ServiceNamespace="sagemaker")[
        "ScalableTargets"
    ]
    assert (registered["MinCapacity"], registered["MaxCapacity"]) == (1, 3)


def test_max_instances_below_two_is_refused(run_launch):
    run = run_launch(
        "deploy", "--role", ROLE, "--model-data", "s3://b/m.tar.gz", "--max-instances", "1"
    )  # fmt: skip
    assert run.rc == 2 and "--max-instances 1: use 2 or more" in run.err
    assert run.log.calls == []


def test_teardown_leaves_no_model_config_endpoint_or_scalable_target(deploy, run_launch, sm):
    runs = [deploy(V1, "--max-instances", "2"), deploy(V2), deploy(V3)]
    assert [r.rc for r in runs] == [0, 0, 0]
    dry = run_launch("teardown", "--endpoint-name", ENDPOINT, "--dry-run")
    assert dry.rc == 0, dry.err
    assert len(sm.list_endpoint_configs()["EndpointConfigs"]) == 3  # a dry run deletes nothing

    run = run_launch("teardown", "--endpoint-name", ENDPOINT)
    assert run.rc == 0, run.err
    assert sm.list_endpoints()["Endpoints"] == []
    assert sm.list_endpoint_configs()["EndpointConfigs"] == []
    assert sm.list_models()["Models"] == []
    scaling = boto3.client("application-autoscaling", region_name=REGION)
    assert scaling.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"] == []
    assert scaling.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"] == []
    assert f"deleted scalable target {SCALING_TARGET}" in run.out
    assert f"deleted endpoint {ENDPOINT}" in run.out
    would = [ln[len("would delete ") :] for ln in dry.out.splitlines() if ln.startswith("would")]
    did = [ln[len("deleted ") :] for ln in run.out.splitlines() if ln.startswith("deleted")]
    assert would == did  # the dry run named exactly what went


def test_a_serverless_endpoint_updates_without_guardrails(run_launch, sm):
    def serverless(version: str, *flags: str) -> Run:
        return run_launch(
            "deploy", "--role", ROLE, "--model-data", put_model(version), "--endpoint-name",
            ENDPOINT, "--serverless-memory-mb", "2048", *flags,
        )  # fmt: skip

    assert serverless(V1).rc == 0
    run = serverless(V2)
    assert run.rc == 0, run.err
    (update,) = run.requests("UpdateEndpoint")
    assert update == {"EndpointName": ENDPOINT, "EndpointConfigName": live_config(sm)}
    assert "rollback alarms: none: deployment guardrails do not apply to serverless" in run.out
    refused = serverless(V3, "--canary-percent", "10")
    assert refused.rc == 2 and "--canary-percent: not for a serverless endpoint" in refused.err


@pytest.fixture
def owned(monkeypatch):
    """The endpoint's status held by an owner, as the offline stack holds it: creates succeed;
    updates end as ``outcome["update"]`` says (None: they stay Updating)."""
    monkeypatch.setattr(endpoint, "POLL_SECONDS", 0.01)
    outcome: dict[str, Any] = {"update": (True, None)}

    def finish(change: moto_sagemaker.EndpointChange) -> None:
        result = (True, None) if change.kind == "create" else outcome["update"]
        if result is None:
            return

        def later() -> None:
            time.sleep(0.05)
            moto_sagemaker.complete(change.endpoint_name, result[0], result[1])

        threading.Thread(target=later, daemon=True).start()

    unwatch = moto_sagemaker.watch(ENDPOINT, finish)
    yield outcome
    unwatch()


def test_a_failed_update_prints_the_reason_and_the_endpoint_keeps_serving(deploy, sm, owned):
    first = deploy(V1)
    assert first.rc == 0, first.err
    old_config = live_config(sm)
    owned["update"] = (False, "Alarm stack-EndpointErrorsAlarm-1 fired: rolled back")

    run = deploy(V2)
    assert run.rc == 1
    assert "status: the update failed: Alarm stack-EndpointErrorsAlarm-1 fired" in run.out
    assert f"the endpoint still serves {old_config}" in run.out
    assert run.err.startswith("training.launch deploy: failed: endpoint dogs-update: the update")
    assert run.err.count("\n") == 1
    assert live_config(sm) == old_config
    assert sm.describe_endpoint(EndpointName=ENDPOINT)["EndpointStatus"] == "InService"
    assert run.requests("DeleteEndpointConfig") == []  # nothing pruned after a failure
    assert "make reprocess" not in run.out  # the stored items are still the serving model's


def test_a_deploy_while_the_endpoint_updates_is_refused_before_creating_anything(deploy, owned):
    assert deploy(V1).rc == 0
    owned["update"] = None  # the next update stays in progress
    assert deploy(V2, "--no-wait").rc == 0
    run = deploy(V3)
    assert run.rc == 2 and run.err.count("\n") == 1
    assert f"endpoint {ENDPOINT} is Updating: wait until it is InService" in run.err
    assert run.requests("CreateModel") == run.requests("CreateEndpointConfig") == []
    moto_sagemaker.complete(ENDPOINT, ok=True)


def test_unique_names_keep_version_and_time_and_trim_only_the_endpoint_part():
    when = datetime(2026, 12, 3, 14, 57, 52, 745000, tzinfo=UTC)
    assert rollout.unique_name("dog-breeds", V1, when) == f"dog-breeds-{V1}-20261203-145752-745"
    long_name = rollout.unique_name("d" * 63, V1, when)
    assert len(long_name) == 63 and long_name.endswith(f"-{V1}-20261203-145752-745")
    assert long_name.startswith(rollout.name_base("d" * 63))


def test_previous_and_pruned_configs_follow_creation_time():
    day = [datetime(2026, 12, d, tzinfo=UTC) for d in range(1, 6)]
    configs = [rollout.ConfigInfo(f"c{i}", day[i]) for i in range(5)]
    assert rollout.previous_config(configs, "c4").name == "c3"
    assert rollout.previous_config(configs, "c2").name == "c1"  # after a rollback to c2
    assert rollout.previous_config(configs, "c0") is None
    assert rollout.configs_to_prune(configs, "c4") == ["c0", "c1"]
    assert rollout.configs_to_prune(configs, "c2") == ["c0", "c1"]  # the two newest others stay


@pytest.mark.parametrize(
    ("count", "percent", "refused"),
    [(1, 10, True), (1, 50, True), (2, 50, False), (2, 51, True), (3, 33, False), (3, 50, True),
     (10, 10, False), (4, 0, True)],
)  # fmt: skip
def test_a_canary_is_at_most_half_the_instances(count, percent, refused):
    assert (rollout.canary_refusal(count, percent) is not None) is refused


def test_an_endpoint_made_before_tags_rolls_back_to_its_first_config_and_tears_down(
    deploy, run_launch, sm
):
    """An endpoint the SDK's own naming made (as the offline stack and earlier deploys do):
    its untagged config counts as made for it; another endpoint's never does."""
    first, other = (
        f"{ENDPOINT}-2026-12-01-10-00-00-000",
        f"{ENDPOINT}-staging-2026-12-01-10-00-00-000",
    )
    for name in (first, other):
        sm.create_model(
            ModelName=name, ExecutionRoleArn=ROLE,
            PrimaryContainer={"Image": "img", "ModelDataUrl": put_model(V1)},
        )  # fmt: skip
        sm.create_endpoint_config(
            EndpointConfigName=name,
            ProductionVariants=[{"VariantName": "AllTraffic", "ModelName": name,
                                 "InitialInstanceCount": 1, "InstanceType": "ml.t2.medium"}],
        )  # fmt: skip
    sm.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName=first)

    assert deploy(V2).rc == 0
    back = run_launch("rollback", "--endpoint-name", ENDPOINT)
    assert back.rc == 0, back.err
    assert live_config(sm) == first
    assert f"model version:   {V2} -> unknown" in back.out

    assert run_launch("teardown", "--endpoint-name", ENDPOINT).rc == 0
    assert [c["EndpointConfigName"] for c in sm.list_endpoint_configs()["EndpointConfigs"]] == [
        other
    ]
    assert [m["ModelName"] for m in sm.list_models()["Models"]] == [other]
