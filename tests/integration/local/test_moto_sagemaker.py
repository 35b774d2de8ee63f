"""``local.aws.moto_sagemaker``: the moto server's SageMaker refuses what SageMaker refuses, updates
endpoints, and lets an owner hold an endpoint's status, all seen through botocore."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
import requests
from botocore.exceptions import ClientError

from local.aws import moto_sagemaker

REGION = "us-east-1"
ACCOUNT = "123456789012"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/SageMakerExecution"
IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.6.0-cpu-py312"


@pytest.fixture(scope="module")
def strict(moto_url: str) -> Iterator[str]:
    moto_sagemaker.install()
    yield moto_url
    moto_sagemaker.uninstall()


@pytest.fixture
def sm(strict: str) -> Any:
    requests.post(f"{strict}/moto-api/reset", timeout=10)
    return boto3.client(
        "sagemaker",
        endpoint_url=strict,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def make_model(sm: Any, name: str, version: str = "v1") -> None:
    sm.create_model(
        ModelName=name,
        ExecutionRoleArn=ROLE,
        PrimaryContainer={
            "Image": IMAGE,
            "ModelDataUrl": f"s3://bucket/{version}/model.tar.gz",
            "Environment": {"SAGEMAKER_PROGRAM": "endpoint_inference.py", "VERSION": version},
        },
    )


def make_config(
    sm: Any,
    name: str,
    model: str,
    count: int = 1,
    variant: str = "AllTraffic",
    instance_type: str = "ml.t2.medium",
) -> None:
    sm.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {
                "VariantName": variant,
                "ModelName": model,
                "InitialInstanceCount": count,
                "InstanceType": instance_type,
            }
        ],
    )


def live_endpoint(sm: Any, count: int = 1) -> None:
    """Endpoint ``dogs`` on config ``dogs-v1`` (model ``m1``), and config ``dogs-v2`` ready."""
    make_model(sm, "m1", "v1")
    make_model(sm, "m2", "v2")
    make_config(sm, "dogs-v1", "m1", count)
    make_config(sm, "dogs-v2", "m2", count)
    sm.create_endpoint(EndpointName="dogs", EndpointConfigName="dogs-v1")


def refusal(call: Any, **params: Any) -> tuple[str, str]:
    with pytest.raises(ClientError) as raised:
        call(**params)
    error = raised.value.response["Error"]
    return error["Code"], error["Message"]


def arn(kind: str, name: str) -> str:
    return f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:{kind}/{name}"


def test_each_create_refuses_a_name_that_exists_as_sagemaker_does(sm):
    live_endpoint(sm)
    assert refusal(
        sm.create_model, ModelName="m1", ExecutionRoleArn=ROLE, PrimaryContainer={"Image": IMAGE}
    ) == ("ValidationException", f'Cannot create already existing model "{arn("model", "m1")}".')
    assert refusal(
        sm.create_endpoint_config,
        EndpointConfigName="dogs-v1",
        ProductionVariants=[{"VariantName": "AllTraffic", "ModelName": "m2",
                             "InitialInstanceCount": 1, "InstanceType": "ml.t2.medium"}],
    ) == (
        "ValidationException",
        "Cannot create already existing endpoint configuration "
        f'"{arn("endpoint-config", "dogs-v1")}".',
    )  # fmt: skip
    assert refusal(sm.create_endpoint, EndpointName="dogs", EndpointConfigName="dogs-v2") == (
        "ValidationException",
        f'Cannot create already existing endpoint "{arn("endpoint", "dogs")}".',
    )
    # Nothing was replaced.
    assert sm.describe_endpoint(EndpointName="dogs")["EndpointConfigName"] == "dogs-v1"
    assert sm.describe_model(ModelName="m1")["PrimaryContainer"]["ModelDataUrl"].endswith(
        "/v1/model.tar.gz"
    )


def test_a_name_deleted_may_be_created_again(sm):
    make_model(sm, "m1")
    sm.delete_model(ModelName="m1")
    make_model(sm, "m1")
    assert sm.describe_model(ModelName="m1")["ModelName"] == "m1"


def test_update_endpoint_switches_config_keeps_the_name_and_records_the_deployment(sm):
    live_endpoint(sm)
    deployment = {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 0},
            "TerminationWaitInSeconds": 300,
        },
        "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": "dogs-errors"}]},
    }
    answer = sm.update_endpoint(
        EndpointName="dogs", EndpointConfigName="dogs-v2", DeploymentConfig=deployment
    )
    assert answer["EndpointArn"] == arn("endpoint", "dogs")
    endpoint = sm.describe_endpoint(EndpointName="dogs")
    assert endpoint["EndpointStatus"] == "InService"
    assert endpoint["EndpointConfigName"] == "dogs-v2"
    assert endpoint["LastDeploymentConfig"] == deployment
    assert "PendingDeploymentSummary" not in endpoint
    # The previous config and its model stay: a rollback needs them.
    assert sm.describe_endpoint_config(EndpointConfigName="dogs-v1")["ProductionVariants"]
    assert sm.update_endpoint(EndpointName="dogs", EndpointConfigName="dogs-v1")["EndpointArn"]
    assert sm.describe_endpoint(EndpointName="dogs")["EndpointConfigName"] == "dogs-v1"


def test_update_of_an_unknown_endpoint_or_config_is_refused(sm):
    live_endpoint(sm)
    assert refusal(sm.update_endpoint, EndpointName="cats", EndpointConfigName="dogs-v2") == (
        "ValidationException",
        f'Could not find endpoint "{arn("endpoint", "cats")}".',
    )
    assert refusal(sm.update_endpoint, EndpointName="dogs", EndpointConfigName="dogs-v9") == (
        "ValidationException",
        f'Could not find endpoint configuration "{arn("endpoint-config", "dogs-v9")}".',
    )
    assert sm.describe_endpoint(EndpointName="dogs")["EndpointConfigName"] == "dogs-v1"


def test_retained_variant_properties_keep_a_scaled_out_instance_count(sm):
    live_endpoint(sm, count=3)
    make_model(sm, "m3", "v3")
    make_config(sm, "dogs-v3", "m3", count=1)
    sm.update_endpoint(
        EndpointName="dogs", EndpointConfigName="dogs-v3", RetainAllVariantProperties=True
    )
    (variant,) = sm.describe_endpoint(EndpointName="dogs")["ProductionVariants"]
    assert variant["DesiredInstanceCount"] == 3
    sm.update_endpoint(EndpointName="dogs", EndpointConfigName="dogs-v2")
    (variant,) = sm.describe_endpoint(EndpointName="dogs")["ProductionVariants"]
    assert variant["DesiredInstanceCount"] == 3  # dogs-v2 asks for 3 itself
    sm.update_endpoint(EndpointName="dogs", EndpointConfigName="dogs-v3")
    (variant,) = sm.describe_endpoint(EndpointName="dogs")["ProductionVariants"]
    assert variant["DesiredInstanceCount"] == 1


def test_a_canary_needs_at_least_two_instances_and_the_live_variant_name(sm):
    live_endpoint(sm, count=1)
    canary = {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": {
                "Type": "CANARY",
                "WaitIntervalInSeconds": 300,
                "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 50},
            }
        }
    }
    code, message = refusal(
        sm.update_endpoint, EndpointName="dogs", EndpointConfigName="dogs-v2",
        DeploymentConfig=canary,
    )  # fmt: skip
    assert code == "ValidationException" and "at most 50%" in message
    make_model(sm, "m4", "v4")
    make_config(sm, "dogs-v4", "m4", count=2)
    sm.update_endpoint(EndpointName="dogs", EndpointConfigName="dogs-v4", DeploymentConfig=canary)
    assert sm.describe_endpoint(EndpointName="dogs")["EndpointConfigName"] == "dogs-v4"

    make_config(sm, "dogs-renamed", "m2", count=2, variant="Blue")
    code, message = refusal(
        sm.update_endpoint, EndpointName="dogs", EndpointConfigName="dogs-renamed",
        DeploymentConfig=canary,
    )  # fmt: skip
    assert "variant names" in message


def test_an_autoscaled_variant_may_change_model_but_not_instance_type(sm, strict):
    live_endpoint(sm)
    scaling = boto3.client(
        "application-autoscaling", endpoint_url=strict, region_name=REGION,
        aws_access_key_id="testing", aws_secret_access_key="testing",
    )  # fmt: skip
    scaling.register_scalable_target(
        ServiceNamespace="sagemaker",
        ResourceId="endpoint/dogs/variant/AllTraffic",
        ScalableDimension="sagemaker:variant:DesiredInstanceCount",
        MinCapacity=1,
        MaxCapacity=3,
    )
    sm.update_endpoint(EndpointName="dogs", EndpointConfigName="dogs-v2")  # a new model: fine
    make_config(sm, "dogs-big", "m2", instance_type="ml.m5.large")
    code, message = refusal(sm.update_endpoint, EndpointName="dogs", EndpointConfigName="dogs-big")
    assert code == "ValidationException" and "deregister the scalable target first" in message
    scaling.deregister_scalable_target(
        ServiceNamespace="sagemaker",
        ResourceId="endpoint/dogs/variant/AllTraffic",
        ScalableDimension="sagemaker:variant:DesiredInstanceCount",
    )
    sm.update_endpoint(EndpointName="dogs", EndpointConfigName="dogs-big")
    assert sm.describe_endpoint(EndpointName="dogs")["EndpointConfigName"] == "dogs-big"


@pytest.fixture
def watched(sm) -> Iterator[list[moto_sagemaker.EndpointChange]]:
    seen: list[moto_sagemaker.EndpointChange] = []
    unwatch = moto_sagemaker.watch("dogs", seen.append)
    yield seen
    unwatch()


def test_a_watcher_sees_the_create_and_holds_creating_until_complete(sm, watched):
    make_model(sm, "m1", "v1")
    make_config(sm, "dogs-v1", "m1")
    sm.create_endpoint(EndpointName="dogs", EndpointConfigName="dogs-v1")
    (change,) = watched
    assert change == moto_sagemaker.EndpointChange(
        kind="create", account_id=ACCOUNT, region=REGION, endpoint_name="dogs",
        endpoint_config_name="dogs-v1", previous_config_name=None,
        model_data_urls=("s3://bucket/v1/model.tar.gz",),
        environments=({"SAGEMAKER_PROGRAM": "endpoint_inference.py", "VERSION": "v1"},),
    )  # fmt: skip
    assert sm.describe_endpoint(EndpointName="dogs")["EndpointStatus"] == "Creating"
    moto_sagemaker.complete("dogs", ok=True)
    assert sm.describe_endpoint(EndpointName="dogs")["EndpointStatus"] == "InService"


def test_a_failed_create_ends_failed_with_the_reason(sm, watched):
    make_model(sm, "m1")
    make_config(sm, "dogs-v1", "m1")
    sm.create_endpoint(EndpointName="dogs", EndpointConfigName="dogs-v1")
    moto_sagemaker.complete("dogs", ok=False, reason="The primary container failed to ping.")
    endpoint = sm.describe_endpoint(EndpointName="dogs")
    assert endpoint["EndpointStatus"] == "Failed"
    assert endpoint["FailureReason"] == "The primary container failed to ping."
    code, message = refusal(sm.update_endpoint, EndpointName="dogs", EndpointConfigName="dogs-v1")
    assert code == "ValidationException" and "Failed" in message


def test_a_watched_update_shows_the_old_config_and_the_pending_one_until_complete(sm, watched):
    live_endpoint(sm)
    moto_sagemaker.complete("dogs", ok=True)
    sm.update_endpoint(EndpointName="dogs", EndpointConfigName="dogs-v2")
    change = watched[-1]
    assert (change.kind, change.endpoint_config_name, change.previous_config_name) == (
        "update", "dogs-v2", "dogs-v1",
    )  # fmt: skip
    assert change.model_data_urls == ("s3://bucket/v2/model.tar.gz",)
    endpoint = sm.describe_endpoint(EndpointName="dogs")
    assert endpoint["EndpointStatus"] == "Updating"
    assert endpoint["EndpointConfigName"] == "dogs-v1"
    assert endpoint["PendingDeploymentSummary"]["EndpointConfigName"] == "dogs-v2"
    moto_sagemaker.complete("dogs", ok=True)
    endpoint = sm.describe_endpoint(EndpointName="dogs")
    assert (endpoint["EndpointStatus"], endpoint["EndpointConfigName"]) == ("InService", "dogs-v2")
    assert "PendingDeploymentSummary" not in endpoint


def test_an_update_while_updating_is_refused(sm, watched):
    live_endpoint(sm)
    moto_sagemaker.complete("dogs", ok=True)
    sm.update_endpoint(EndpointName="dogs", EndpointConfigName="dogs-v2")
    assert refusal(sm.update_endpoint, EndpointName="dogs", EndpointConfigName="dogs-v1") == (
        "ValidationException",
        f'Cannot update in-progress endpoint "{arn("endpoint", "dogs")}".',
    )
    moto_sagemaker.complete("dogs", ok=True)


def test_an_update_while_creating_is_refused(sm, watched):
    live_endpoint(sm)
    _, message = refusal(sm.update_endpoint, EndpointName="dogs", EndpointConfigName="dogs-v2")
    assert message.startswith("Cannot update in-progress endpoint")
    moto_sagemaker.complete("dogs", ok=True)


def test_a_failed_update_keeps_the_old_config_in_service_with_the_reason(sm, watched):
    live_endpoint(sm)
    moto_sagemaker.complete("dogs", ok=True)
    sm.update_endpoint(EndpointName="dogs", EndpointConfigName="dogs-v2")
    moto_sagemaker.complete("dogs", ok=False, reason="Alarm dogs-errors fired; rolled back.")
    endpoint = sm.describe_endpoint(EndpointName="dogs")
    assert endpoint["EndpointStatus"] == "InService"
    assert endpoint["EndpointConfigName"] == "dogs-v1"
    assert endpoint["FailureReason"] == "Alarm dogs-errors fired; rolled back."
    # The next update may go ahead, and a success clears the reason.
    sm.update_endpoint(EndpointName="dogs", EndpointConfigName="dogs-v2")
    moto_sagemaker.complete("dogs", ok=True)
    assert "FailureReason" not in sm.describe_endpoint(EndpointName="dogs")


def test_a_watcher_may_complete_from_its_own_thread(sm):
    """The callback runs on the request thread; the owner's work (a health check, a bake) runs
    on its own and completes later."""
    done = threading.Event()

    def finish_later(change: moto_sagemaker.EndpointChange) -> None:
        def work() -> None:
            moto_sagemaker.complete(change.endpoint_name, ok=True, region=change.region)
            done.set()

        threading.Thread(target=work, daemon=True).start()

    unwatch = moto_sagemaker.watch("dogs", finish_later)
    try:
        live_endpoint(sm)
        assert done.wait(5)
        assert sm.describe_endpoint(EndpointName="dogs")["EndpointStatus"] == "InService"
    finally:
        unwatch()


def test_complete_without_a_pending_change_and_a_second_owner_are_errors(sm, watched):
    with pytest.raises(LookupError):
        moto_sagemaker.complete("dogs", ok=True)
    with pytest.raises(ValueError):
        moto_sagemaker.watch("dogs", lambda change: None)


def test_installs_are_counted_and_the_last_uninstall_restores_moto(sm):
    backend = moto_sagemaker.SageMakerModelBackend
    strict_create = backend.create_endpoint
    moto_sagemaker.install()
    moto_sagemaker.uninstall()
    assert backend.create_endpoint is strict_create  # the module's own install still holds
    moto_sagemaker.uninstall()
    try:
        assert not moto_sagemaker.installed()
        assert not hasattr(moto_sagemaker.SageMakerResponse, "update_endpoint")
        make_model(sm, "m1", "v1")
        make_model(sm, "m1", "v2")  # moto as it ships: the same name is replaced silently
        assert sm.describe_model(ModelName="m1")["PrimaryContainer"]["ModelDataUrl"].endswith(
            "/v2/model.tar.gz"
        )
        with pytest.raises(ClientError):
            sm.update_endpoint(EndpointName="dogs", EndpointConfigName="dogs-v1")
    finally:
        moto_sagemaker.install()  # the module's, again, for the tests below
    assert backend.create_endpoint is strict_create
