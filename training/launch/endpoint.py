"""The endpoint: create, update, roll back, invoke, remove.

Stages deploy, rollback, invoke and teardown: the model on an ml.t2.medium endpoint (or a
serverless one), updated in place, classified with, removed.

``deploy`` to an endpoint that does not exist creates it; to one that exists it is an update: a
new model and endpoint config under unique names (``rollout``), then UpdateEndpoint with
SageMaker's deployment guardrails, the endpoint's name unchanged, the previous config and model
kept for ``rollback`` and older ones pruned. No Create* call names something that exists
(SageMaker refuses that). ``teardown`` removes everything made for the endpoint, autoscaling
(``autoscaling``) included. Reads (Describe*, List*, GetObject) happen in a dry run too, so a dry
run takes the path the real run would.
"""

from __future__ import annotations

import io
import json
import os
import re
import tarfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from dog_breeds import contract
from dog_breeds.artifact import serving_code
from training.launch import autoscaling, rollout
from training.launch.aws import Aws, LaunchError, s3_uri, split_s3_uri

SOURCE_DIR = serving_code.SOURCE_DIR
ENTRY_POINT = serving_code.ENTRY_POINT

# The newest PyTorch inference image SageMaker SDK 2.257 knows (image_uri_config/pytorch.json).
INFERENCE_FRAMEWORK_VERSION = "2.6.0"
INFERENCE_PY_VERSION = "py312"
# What that image carries beside it; local/parity reproduces the image's runtime from these.
INFERENCE_PYTHON = "3.12"
INFERENCE_TORCHVISION_VERSION = "0.21.0"
INFERENCE_TOOLKIT_VERSION = "2.0.25"  # sagemaker-pytorch-inference
INFERENCE_TORCHSERVE_VERSION = "0.12.0"
ENDPOINT_INSTANCE = "ml.t2.medium"
DEFAULT_ENDPOINT_NAME = "dog-breeds"
# template.yaml's EndpointName pattern: lower case, as in the endpoint's ARN (and IAM policy).
ENDPOINT_NAME_PATTERN = re.compile(r"^[a-z0-9](-*[a-z0-9]){0,62}$")
DEFAULT_STACK = "dog-breeds"  # samconfig.toml's stack_name, the Makefile's STACK default
IN_PROGRESS = ("Creating", "Updating", "SystemUpdating", "RollingBack")
POLL_SECONDS = 30.0  # between DescribeEndpoint calls while waiting
# How much of model.tar.gz is read looking for config.json (tarballs written by
# serving_code.package_model have it before the weights; others may not: then the ETag names the
# version).
VERSION_SCAN_BYTES = 16 << 20

# What SageMaker Serverless Inference accepts (CreateEndpointConfig's ServerlessConfig).
SERVERLESS_MEMORY_MB = tuple(range(1024, 6144 + 1, 1024))
SERVERLESS_MAX_CONCURRENCY = (1, 200)
DEFAULT_SERVERLESS_MAX_CONCURRENCY = 2  # the upload queue's smallest MaximumConcurrency
# TorchServe's worker processes, each with its own copy of the model (about 1 GB resident) and
# runtimes.threads_per_worker() threads. Unset, TorchServe starts one per vCPU (2 on an
# ml.t2.medium, the measured best for two requests at once: see docs/performance.md's
# section). A serverless endpoint gets 1 unless told: its smallest memory size holds one copy.
MODEL_SERVER_WORKERS_ENV = contract.MODEL_SERVER_WORKERS_ENV
DEFAULT_SERVERLESS_WORKERS = 1


def model_server_env(workers: int | None, serverless: bool) -> dict[str, str]:
    """The model's environment for ``workers`` TorchServe workers (None: TorchServe's default,
    or DEFAULT_SERVERLESS_WORKERS on a serverless endpoint); refuses fewer than one."""
    if workers is None and serverless:
        workers = DEFAULT_SERVERLESS_WORKERS
    if workers is None:
        return {}
    if workers < 1:
        raise LaunchError(f"--model-server-workers {workers}: use 1 or more")
    return {MODEL_SERVER_WORKERS_ENV: str(workers)}


@dataclass(frozen=True)
class ServerlessCapacity:
    """A serverless endpoint's memory and concurrency; refused on construction if SageMaker
    would refuse it."""

    memory_mb: int
    max_concurrency: int = DEFAULT_SERVERLESS_MAX_CONCURRENCY

    def __post_init__(self) -> None:
        if self.memory_mb not in SERVERLESS_MEMORY_MB:
            sizes = ", ".join(str(m) for m in SERVERLESS_MEMORY_MB)
            raise LaunchError(f"--serverless-memory-mb {self.memory_mb}: use one of {sizes}")
        low, high = SERVERLESS_MAX_CONCURRENCY
        if not low <= self.max_concurrency <= high:
            raise LaunchError(
                f"--serverless-max-concurrency {self.max_concurrency}: use {low} to {high}"
            )

    def sdk_config(self) -> Any:
        from sagemaker.serverless import ServerlessInferenceConfig

        return ServerlessInferenceConfig(
            memory_size_in_mb=self.memory_mb, max_concurrency=self.max_concurrency
        )

    def production_variant_config(self) -> dict[str, int]:
        """CreateEndpointConfig's ServerlessConfig."""
        return {"MemorySizeInMB": self.memory_mb, "MaxConcurrency": self.max_concurrency}

    def describe(self) -> str:
        return f"serverless, {self.memory_mb} MB, at most {self.max_concurrency} at once"


CONTENT_TYPES = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".webp": "image/webp",
}


def stage_code_dir(target: Path, source_dir: Path | None = None) -> Path:
    """code/ as the serving container wants it: entry point, its modules, requirements.txt."""
    source_dir = source_dir or SOURCE_DIR
    entry = source_dir / ENTRY_POINT
    if not entry.exists():
        raise LaunchError(f"{entry} does not exist: nothing to serve")
    return serving_code.write_code_dir(target, source_dir)


def model_data_of(aws: Aws, training_job: str) -> str:
    desc = aws.client("sagemaker").describe_training_job(TrainingJobName=training_job)
    status = desc.get("TrainingJobStatus")
    artifact = (desc.get("ModelArtifacts") or {}).get("S3ModelArtifacts")
    if status != "Completed" or not artifact:
        raise LaunchError(f"training job {training_job} is {status}: no model artifact to deploy")
    return artifact


def training_data_of(aws: Aws, training_job: str) -> str | None:
    """The S3 URI of the job's ``training`` channel (the dataset root, whose test/ split compare
    scores on); None if the job had no such channel."""
    desc = aws.client("sagemaker").describe_training_job(TrainingJobName=training_job)
    for channel in desc.get("InputDataConfig") or []:
        if channel.get("ChannelName") == "training":
            return ((channel.get("DataSource") or {}).get("S3DataSource") or {}).get("S3Uri")
    return None


def check_endpoint_name(endpoint_name: str) -> None:
    if not ENDPOINT_NAME_PATTERN.match(endpoint_name):
        raise LaunchError(
            f"--endpoint-name {endpoint_name!r}: use lower-case letters, digits and hyphens "
            "(at most 63), as the SAM template's EndpointName parameter requires"
        )


# ---- the live endpoint, as SageMaker describes it -----------------------------------------------


@dataclass(frozen=True)
class LiveEndpoint:
    """What a deploy, a rollback or a teardown needs to know of an endpoint that exists."""

    name: str
    status: str
    failure_reason: str | None
    config_name: str
    variants: tuple[str, ...]
    instance_type: str | None  # None: serverless (or its config is gone)
    instance_count: int | None  # what the variant runs now (autoscaling may have changed it)
    serverless: bool
    model_name: str | None
    model_data: str | None  # the live model's ModelDataUrl (the SDK's repack, with code/)
    version: str | None  # the live config's TAG_VERSION, if this project made it

    @property
    def variant(self) -> str:
        return self.variants[0] if self.variants else rollout.DEFAULT_VARIANT


def _not_found(err: ClientError) -> bool:
    error = err.response.get("Error", {})
    return error.get("Code") == "ValidationException" and "Could not find" in str(
        error.get("Message")
    )


def describe_live(aws: Aws, endpoint_name: str) -> LiveEndpoint | None:
    """The endpoint, its config and model as they are (reads: they happen in a dry run too);
    None if there is no such endpoint."""
    sm = aws.client("sagemaker")
    try:
        desc = sm.describe_endpoint(EndpointName=endpoint_name)
    except ClientError as err:
        if _not_found(err):
            return None
        raise
    config_name = desc["EndpointConfigName"]
    live_variants = desc.get("ProductionVariants") or []
    try:
        config = sm.describe_endpoint_config(EndpointConfigName=config_name)
    except ClientError as err:
        if not _not_found(err):
            raise
        config = {"ProductionVariants": []}  # deleted by hand: SageMaker still serves it
    variants = config.get("ProductionVariants") or []
    first = variants[0] if variants else {}
    count = next(
        (
            v.get("CurrentInstanceCount") or v.get("DesiredInstanceCount")
            for v in live_variants
            if v.get("VariantName") == first.get("VariantName")
        ),
        None,
    )
    model_name = first.get("ModelName")
    model_data = None
    if model_name:
        try:
            container = sm.describe_model(ModelName=model_name).get("PrimaryContainer") or {}
            model_data = container.get("ModelDataUrl")
        except ClientError as err:
            if not _not_found(err):
                raise
    tags = _tags(sm, config.get("EndpointConfigArn")) if config.get("EndpointConfigArn") else []
    return LiveEndpoint(
        name=endpoint_name,
        status=desc["EndpointStatus"],
        failure_reason=desc.get("FailureReason"),
        config_name=config_name,
        variants=tuple(v["VariantName"] for v in variants or live_variants),
        instance_type=first.get("InstanceType"),
        instance_count=count or first.get("InitialInstanceCount"),
        serverless="ServerlessConfig" in first
        or any("CurrentServerlessConfig" in v for v in live_variants),
        model_name=model_name,
        model_data=model_data,
        version=rollout.tag(tags, rollout.TAG_VERSION),
    )


def check_updatable(live: LiveEndpoint) -> None:
    """Refuse, before anything is created, an endpoint SageMaker would not update."""
    if live.status in IN_PROGRESS:
        raise LaunchError(
            f"endpoint {live.name} is {live.status}: wait until it is InService, then run the "
            "command again"
        )
    if live.status != "InService":
        reason = f" ({live.failure_reason})" if live.failure_reason else ""
        raise LaunchError(
            f"endpoint {live.name} is {live.status}{reason}: SageMaker updates only an "
            f"InService endpoint; `python -m training.launch teardown --endpoint-name "
            f"{live.name}`, then deploy again"
        )
    if len(live.variants) > 1:
        raise LaunchError(
            f"endpoint {live.name} has {len(live.variants)} variants "
            f"({', '.join(live.variants)}): deploy manages one-variant endpoints"
        )


def _tags(sm: Any, arn: str) -> list[dict[str, str]]:
    try:
        return sm.list_tags(ResourceArn=arn).get("Tags") or []
    except ClientError as err:
        if _not_found(err):
            return []
        raise


def configs_made_for(
    aws: Aws, endpoint_name: str, live_config: str | None = None
) -> list[rollout.ConfigInfo]:
    """The endpoint configs made for the endpoint (tagged, or untagged and named for it by the
    SDK: ``rollout.named_by_the_sdk_for``) and the live one, oldest first."""
    sm = aws.client("sagemaker")
    found: list[rollout.ConfigInfo] = []
    paginator = sm.get_paginator("list_endpoint_configs")
    base = rollout.name_base(endpoint_name)
    for page in paginator.paginate(NameContains=base):
        for summary in page.get("EndpointConfigs", []):
            name = summary["EndpointConfigName"]
            tags = _tags(sm, summary["EndpointConfigArn"])
            owner = rollout.tag(tags, rollout.TAG_ENDPOINT)
            made_here = owner == endpoint_name or (
                owner is None and rollout.named_by_the_sdk_for(endpoint_name, name)
            )
            if made_here or name == live_config:
                version = rollout.tag(tags, rollout.TAG_VERSION)
                found.append(rollout.ConfigInfo(name, summary["CreationTime"], version))
    if live_config and live_config not in {c.name for c in found}:
        try:  # a live config whose name does not contain the endpoint's
            desc = sm.describe_endpoint_config(EndpointConfigName=live_config)
            found.append(rollout.ConfigInfo(live_config, desc["CreationTime"]))
        except ClientError as err:
            if not _not_found(err):
                raise
    return sorted(found, key=lambda c: c.created)


def models_of(aws: Aws, config_name: str) -> list[str]:
    sm = aws.client("sagemaker")
    try:
        config = sm.describe_endpoint_config(EndpointConfigName=config_name)
    except ClientError as err:
        if _not_found(err):
            return []
        raise
    return [v["ModelName"] for v in config.get("ProductionVariants", []) if v.get("ModelName")]


# ---- the model's version ------------------------------------------------------------------------


class _Limited(io.RawIOBase):
    """At most ``limit`` bytes of ``body``; reading further raises ``_TooFar``."""

    def __init__(self, body: Any, limit: int) -> None:
        self.body, self.left = body, limit

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.left <= 0:
            raise _TooFar
        data = self.body.read(min(len(buffer), self.left))
        self.left -= len(data)
        buffer[: len(data)] = data
        return len(data)


class _TooFar(Exception):
    pass


def model_version_of(aws: Aws, model_data: str) -> rollout.ModelVersion:
    """The artifact's own version from its config.json, read from the start of model.tar.gz (a
    read: in a dry run too); else a hash of its ETag, else of its URI (rollout's docstring)."""
    if not model_data.startswith("s3://"):
        return rollout.version_from_uri(model_data)
    bucket, key = split_s3_uri(model_data)
    try:
        answer = aws.client("s3").get_object(Bucket=bucket, Key=key)
    except ClientError:
        return rollout.version_from_uri(model_data)
    body = answer["Body"]
    try:
        config = _config_json(io.BufferedReader(_Limited(body, VERSION_SCAN_BYTES)))
    finally:
        body.close()
    version = rollout.version_from_config(config or {})
    if version:
        return rollout.ModelVersion(version, "the artifact's config.json")
    etag = answer.get("ETag")
    return rollout.version_from_etag(etag) if etag else rollout.version_from_uri(model_data)


def _config_json(stream: Any) -> dict[str, Any] | None:
    try:
        with tarfile.open(fileobj=stream, mode="r|gz") as tar:
            for member in tar:
                if member.isfile() and member.name.lstrip("./") == "config.json":
                    data = tar.extractfile(member)
                    return json.loads(data.read()) if data else None
    except (_TooFar, tarfile.TarError, OSError, ValueError, EOFError):
        return None
    return None


# ---- deploy: create the endpoint, or update it -----------------------------------------------


@dataclass(frozen=True)
class Guardrails:
    """How an update shifts traffic and what rolls it back (rollout.deployment_config)."""

    bake_minutes: int = rollout.DEFAULT_BAKE_MINUTES
    canary_percent: int | None = None
    rollback_alarms: tuple[str, ...] | None = None  # None: the endpoint's invocation alarms


@dataclass(frozen=True)
class NewModel:
    """The model and endpoint config a deploy creates."""

    name: str  # the model's and its endpoint config's (one unique name, two resource kinds)
    version: rollout.ModelVersion
    variant: dict[str, Any]  # the config's one production variant
    described: str  # its capacity, as printed


def deploy(
    aws: Aws,
    *,
    role: str,
    model_data: str,
    endpoint_name: str,
    prefix: str,
    instance_type: str,
    wait: bool,
    staging_dir: Path,
    framework_version: str = INFERENCE_FRAMEWORK_VERSION,
    py_version: str = INFERENCE_PY_VERSION,
    serverless: ServerlessCapacity | None = None,
    model_server_workers: int | None = None,
    instance_count: int = 1,
    max_instances: int | None = None,
    guardrails: Guardrails | None = None,
    live: LiveEndpoint | None = None,
    plan: UpdatePlan | None = None,
) -> str:
    """Deploy ``model_data`` to ``endpoint_name``: a new model (artifact repacked with code/) and
    endpoint config under unique names, then CreateEndpoint if ``live`` is None, else
    UpdateEndpoint with the guardrails. The endpoint's name never changes. ``live``: what
    ``describe_live`` read (the caller reads it first, so a dry run takes the same path);
    ``plan``: ``plan_update``'s for it (made here if not given).
    ``model_server_workers``: TorchServe's worker count (None: its default, one per vCPU;
    serverless: DEFAULT_SERVERLESS_WORKERS). ``max_instances``: register autoscaling."""
    check_endpoint_name(endpoint_name)
    guardrails = guardrails or Guardrails()
    container_env = model_server_env(model_server_workers, serverless is not None)
    if live is None:
        plan = None
    else:
        check_updatable(live)
        plan = plan or plan_update(
            aws, live, instance_type, instance_count, serverless, max_instances, wait, guardrails
        )
        print(f"endpoint {live.name} exists ({live.status} on {live.config_name}): updating it")
    version = model_version_of(aws, model_data)
    name = rollout.unique_name(endpoint_name, version.version, datetime.now(UTC))
    variant_name = live.variant if live else rollout.DEFAULT_VARIANT
    new = NewModel(
        name, version, *_variant(name, variant_name, instance_type, instance_count, serverless)
    )
    tags = rollout.tags_for(endpoint_name, version, model_data)
    _create_model(
        aws, new, role=role, model_data=model_data, prefix=prefix, staging_dir=staging_dir,
        framework_version=framework_version, py_version=py_version, serverless=serverless,
        instance_type=instance_type, env=container_env, tags=tags,
    )  # fmt: skip
    aws.client("sagemaker").create_endpoint_config(
        EndpointConfigName=new.name, ProductionVariants=[new.variant], Tags=tags
    )
    workers = container_env.get(MODEL_SERVER_WORKERS_ENV, "TorchServe's default, one per vCPU")
    if plan is None:
        _create_endpoint(aws, endpoint_name, new, workers, wait, max_instances, instance_count)
    else:
        _update_endpoint(aws, live, new, plan, workers, wait)
    return endpoint_name


def _variant(
    name: str,
    variant_name: str,
    instance_type: str,
    instance_count: int,
    serverless: ServerlessCapacity | None,
) -> tuple[dict[str, Any], str]:
    variant: dict[str, Any] = {
        "VariantName": variant_name,
        "ModelName": name,
        "InitialVariantWeight": 1.0,
    }
    if serverless is not None:
        variant["ServerlessConfig"] = serverless.production_variant_config()
        return variant, serverless.describe()
    variant.update(InstanceType=instance_type, InitialInstanceCount=instance_count)
    return variant, f"{instance_type}, {instance_count} instance{'s' * (instance_count > 1)}"


def _create_model(
    aws: Aws,
    new: NewModel,
    *,
    role: str,
    model_data: str,
    prefix: str,
    staging_dir: Path,
    framework_version: str,
    py_version: str,
    serverless: ServerlessCapacity | None,
    instance_type: str,
    env: dict[str, str],
    tags: list[dict[str, str]],
) -> None:
    """CreateModel through the SDK, which repacks model.tar.gz with our staged code/."""
    from sagemaker.pytorch import PyTorchModel

    model = PyTorchModel(
        model_data=model_data,
        role=role,
        entry_point=ENTRY_POINT,
        source_dir=str(stage_code_dir(staging_dir)),
        framework_version=framework_version,
        py_version=py_version,
        name=new.name,
        code_location=s3_uri(aws.bucket, prefix, "deploy"),
        sagemaker_session=aws.sagemaker_session,
        env=env,
    )
    model.create(
        instance_type=None if serverless else instance_type,
        serverless_inference_config=serverless.sdk_config() if serverless else None,
        tags=tags,
    )


def _create_endpoint(
    aws: Aws,
    endpoint_name: str,
    new: NewModel,
    workers: str,
    wait: bool,
    max_instances: int | None,
    instance_count: int,
) -> None:
    aws.client("sagemaker").create_endpoint(EndpointName=endpoint_name, EndpointConfigName=new.name)
    verb = "would create " if aws.dry_run else ""
    print(f"{verb}model: {new.name}")
    print(f"  version: {new.version.describe()}")
    print(f"{verb}endpoint config: {new.name}")
    print(f"{verb}endpoint: {endpoint_name} ({new.described})")
    print(f"  model server workers: {workers}")
    if wait and not aws.dry_run:
        desc = wait_until_settled(aws, endpoint_name)
        print(f"  status: {desc['EndpointStatus']}")
        if desc["EndpointStatus"] != "InService":
            _raise_failed(
                f"endpoint {endpoint_name} did not start: {desc['EndpointStatus']}: "
                f"{desc.get('FailureReason')}",
                desc["EndpointStatus"],
            )
    if max_instances is not None:
        scaling = autoscaling.Scaling(instance_count, max_instances)
        autoscaling.register(
            aws.client("application-autoscaling"), endpoint_name, rollout.DEFAULT_VARIANT, scaling
        )
        _print_scaling(aws, endpoint_name, scaling)
    print(f"  SAM parameter: EndpointName={endpoint_name}")


# ---- the update ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class UpdatePlan:
    """What an update does besides UpdateEndpoint, decided before anything is created."""

    deployment_config: dict[str, Any] | None
    alarms_note: str
    scaling: autoscaling.Scaling | None  # registered now
    rescale: autoscaling.Scaling | None  # to register once the update is done
    deregister_first: bool  # the instance type changes under autoscaling

    @property
    def retain(self) -> bool:
        """Keep the live instance count: autoscaling owns it (RetainAllVariantProperties)."""
        return self.scaling is not None and not self.deregister_first


def plan_update(
    aws: Aws,
    live: LiveEndpoint,
    instance_type: str | None,
    instance_count: int,
    serverless: ServerlessCapacity | None,
    max_instances: int | None,
    wait: bool,
    guardrails: Guardrails,
) -> UpdatePlan:
    """Reads and refusals only: the deployment config, the alarms, what autoscaling needs."""
    scaling = None
    if not live.serverless:
        scaling = autoscaling.registered(
            aws.client("application-autoscaling"), live.name, live.variant
        )
    deregister_first = bool(
        scaling and serverless is None and instance_type and instance_type != live.instance_type
    )
    if deregister_first and not (wait or aws.dry_run):
        raise LaunchError(
            f"endpoint {live.name} autoscales and its instance type changes "
            f"({live.instance_type} -> {instance_type}): SageMaker needs the scalable target "
            "deregistered during the update and registered again after it; run with --wait"
        )
    rescale = None
    if max_instances is not None:
        rescale = autoscaling.Scaling(instance_count, max_instances)
    elif deregister_first:
        rescale = scaling
    if serverless is not None or live.serverless:
        # Guardrails apply to real-time instance endpoints only (deployment-guardrails.html).
        return UpdatePlan(None, "none: deployment guardrails do not apply to serverless "
                          "endpoints", scaling, rescale, deregister_first)  # fmt: skip
    count = live.instance_count if scaling and not deregister_first else instance_count
    if guardrails.canary_percent is not None:
        why = rollout.canary_refusal(count or instance_count, guardrails.canary_percent)
        if why:
            raise LaunchError(why)
    alarms, note = _rollback_alarms(aws, live.name, guardrails.rollback_alarms)
    config = rollout.deployment_config(
        bake_minutes=guardrails.bake_minutes,
        canary_percent=guardrails.canary_percent,
        alarms=alarms,
    )
    return UpdatePlan(config, note, scaling, rescale, deregister_first)


def _rollback_alarms(
    aws: Aws, endpoint_name: str, named: tuple[str, ...] | None
) -> tuple[list[str], str]:
    """The alarms that roll the update back, and a line saying which and why."""
    cloudwatch = aws.client("cloudwatch")
    if named:
        found = set()
        for page in cloudwatch.get_paginator("describe_alarms").paginate(AlarmNames=list(named)):
            found |= {a["AlarmName"] for a in page.get("MetricAlarms", [])}
            found |= {a["AlarmName"] for a in page.get("CompositeAlarms", [])}
        missing = [n for n in named if n not in found]
        if missing:
            raise LaunchError(
                f"--rollback-alarm {missing[0]}: no such CloudWatch alarm in {aws.region}"
            )
        return list(named), f"{', '.join(named)} (--rollback-alarm)"
    alarms = []
    for page in cloudwatch.get_paginator("describe_alarms").paginate(AlarmTypes=["MetricAlarm"]):
        alarms += page.get("MetricAlarms", [])
    names = rollout.endpoint_alarms(alarms, endpoint_name)
    if not names:
        return [], (
            f"none: no CloudWatch alarm on {rollout.ROLLBACK_ALARM_NAMESPACE} metrics with "
            f"EndpointName={endpoint_name} (deploy the SAM stack, or pass --rollback-alarm NAME): "
            "nothing rolls the update back by itself"
        )
    return names, f"{', '.join(names)} (the alarms on the endpoint's invocation metrics)"


def _update_endpoint(
    aws: Aws, live: LiveEndpoint, new: NewModel, plan: UpdatePlan, workers: str, wait: bool
) -> None:
    verb = "would " if aws.dry_run else ""
    print(f"{verb}create model: {new.name}")
    print(f"{verb}create endpoint config: {new.name} ({new.described})")
    print(f"  model server workers: {workers}")
    outcome = switch_endpoint(
        aws, live, new.name, plan, wait,
        new_version=new.version.version, new_model=new.name,
    )  # fmt: skip
    if plan.rescale is not None and outcome.ok and not plan.deregister_first:
        autoscaling.register(
            aws.client("application-autoscaling"), live.name, live.variant, plan.rescale
        )
    if plan.rescale is not None:
        _print_scaling(aws, live.name, plan.rescale)
    if outcome.ok and outcome.waited:
        _prune(aws, live.name, new.name)
    elif outcome.ok:
        print("  kept every earlier endpoint config: pruned after an update seen to succeed")
    print(f"  SAM parameter: EndpointName={live.name} (unchanged: no `sam deploy` needed)")
    if outcome.ok:
        _print_reprocess(aws, live.name, "the new model")
    outcome.raise_if_failed()


@dataclass(frozen=True)
class Outcome:
    ok: bool  # switched, or (not waited) asked to switch
    waited: bool
    failure: str | None = None

    def raise_if_failed(self) -> None:
        if not self.ok:
            _raise_failed(self.failure or "the update failed", "InService")


def switch_endpoint(
    aws: Aws,
    live: LiveEndpoint,
    config_name: str,
    plan: UpdatePlan,
    wait: bool,
    *,
    new_version: str | None,
    new_model: str | None,
) -> Outcome:
    """UpdateEndpoint to ``config_name`` (autoscaling deregistered around it when the instance
    type changes), then wait and say old -> new. Shared by deploy and rollback."""
    sm = aws.client("sagemaker")
    scaling_client = aws.client("application-autoscaling")
    verb = "would " if aws.dry_run else ""
    if plan.deregister_first:
        for gone in autoscaling.deregister(scaling_client, live.name, live.variant):
            print(f"{verb}deregister {gone} (the instance type changes)")
    request: dict[str, Any] = {"EndpointName": live.name, "EndpointConfigName": config_name}
    if plan.retain:
        request["RetainAllVariantProperties"] = True
    if plan.deployment_config:
        request["DeploymentConfig"] = plan.deployment_config
    sm.update_endpoint(**request)
    shift = rollout.describe_deployment(plan.deployment_config)
    print(f"{verb}update endpoint: {live.name}: {shift}")
    print(f"  rollback alarms: {plan.alarms_note}")
    if plan.retain:
        print(f"  instance count: kept ({live.instance_count}; autoscaling owns it)")
    print(f"  model:           {live.model_name} -> {new_model or 'unknown'}")
    print(f"  endpoint config: {live.config_name} -> {config_name}")
    print(f"  model version:   {live.version or 'unknown'} -> {new_version or 'unknown'}")
    if not wait or aws.dry_run:
        if plan.deregister_first and plan.rescale is not None:  # a dry run: show it all
            autoscaling.register(scaling_client, live.name, live.variant, plan.rescale)
        return Outcome(ok=True, waited=False)
    desc = wait_until_settled(aws, live.name)
    if desc["EndpointStatus"] == "InService" and desc["EndpointConfigName"] == config_name:
        print(f"  status: InService on {config_name}")
        outcome = Outcome(ok=True, waited=True)
    else:
        reason = desc.get("FailureReason") or "no reason given"
        print(f"  status: the update failed: {reason}")
        print(
            f"  the endpoint still serves {desc['EndpointConfigName']} "
            f"(model {live.model_name}, version {live.version or 'unknown'}): nothing changed "
            "for its callers"
        )
        outcome = Outcome(
            ok=False,
            waited=True,
            failure=f"endpoint {live.name}: the update to {config_name} failed and SageMaker "
            f"kept {desc['EndpointConfigName']}: {reason}",
        )
    if plan.deregister_first and plan.rescale is not None:
        # Registered again whatever happened: on failure it guards the old fleet, as before.
        autoscaling.register(scaling_client, live.name, live.variant, plan.rescale)
        print(f"  registered the scalable target again ({plan.rescale.describe()})")
    return outcome


def wait_until_settled(aws: Aws, endpoint_name: str) -> dict[str, Any]:
    """DescribeEndpoint until the endpoint is no longer Creating or Updating."""
    sm = aws.client("sagemaker")
    said = False
    while True:
        desc = sm.describe_endpoint(EndpointName=endpoint_name)
        if desc["EndpointStatus"] not in IN_PROGRESS:
            return desc
        if not said:
            print(f"  waiting: {endpoint_name} is {desc['EndpointStatus']} ...", flush=True)
            said = True
        time.sleep(POLL_SECONDS)


def _raise_failed(message: str, status: str) -> None:
    from sagemaker.exceptions import UnexpectedStatusException

    raise UnexpectedStatusException(
        message=message, allowed_statuses=["InService"], actual_status=status
    )


def _prune(aws: Aws, endpoint_name: str, live_config: str) -> None:
    """Delete all but the live config and the KEEP_PREVIOUS newest others, with their models."""
    configs = configs_made_for(aws, endpoint_name, live_config)
    doomed = rollout.configs_to_prune(configs, live_config)
    kept = [c.name for c in configs if c.name not in doomed and c.name != live_config]
    print(f"  kept for rollback: {', '.join(kept) or 'none'}")
    if not doomed:
        return
    in_use = {m for c in configs if c.name not in doomed for m in models_of(aws, c.name)}
    sm = aws.client("sagemaker")
    verb = "would prune" if aws.dry_run else "pruned"
    for name in doomed:
        models = [m for m in models_of(aws, name) if m not in in_use]
        sm.delete_endpoint_config(EndpointConfigName=name)
        for model in models:
            sm.delete_model(ModelName=model)
        print(f"  {verb} endpoint config {name} and model(s) {', '.join(models) or 'none'}")


def _print_scaling(aws: Aws, endpoint_name: str, scaling: autoscaling.Scaling) -> None:
    verb = "would register" if aws.dry_run else "autoscaling"
    print(f"  {verb}: {scaling.describe()}")
    concurrency = autoscaling.max_concurrency_for(scaling.max_capacity)
    print(
        f"  the upload queue must let {concurrency} requests through for "
        f"{scaling.max_capacity} instances ({autoscaling.REQUESTS_PER_INSTANCE} each): "
        f"sam deploy --parameter-overrides EndpointName={endpoint_name} "
        f"{autoscaling.TEMPLATE_PARAMETER}={concurrency}"
    )


def stack_of(aws: Aws, endpoint_name: str) -> str | None:
    """The one CloudFormation stack whose ``EndpointName`` parameter is this endpoint (the SAM
    stack that sends it uploads); None if there is none, several, or it may not be read."""
    found = []
    try:
        for page in aws.client("cloudformation").get_paginator("describe_stacks").paginate():
            for stack in page.get("Stacks", []):
                parameters = {
                    p.get("ParameterKey"): p.get("ParameterValue")
                    for p in stack.get("Parameters") or []
                }
                if parameters.get("EndpointName") == endpoint_name:
                    found.append(stack["StackName"])
    except ClientError:
        return None
    return found[0] if len(found) == 1 else None


def _print_reprocess(aws: Aws, endpoint_name: str, which: str) -> None:
    if aws.dry_run:
        return
    stack = stack_of(aws, endpoint_name)
    # Pointed at another endpoint (the offline stack's moto server), the line says so too.
    url = os.environ.get("AWS_ENDPOINT_URL")
    args = "--all --wait" + (f" --endpoint-url {url}" if url else "")
    print(f"reclassify the stored uploads with {which} (docs/operations.md: Update the model):")
    print(f'  make reprocess STACK={stack or DEFAULT_STACK} ARGS="{args}"')
    if stack is None:
        print(f"  (the default stack: no one stack has EndpointName={endpoint_name}; give yours)")


# ---- rollback -----------------------------------------------------------------------------------


def rollback(aws: Aws, *, endpoint_name: str, to: str | None, wait: bool) -> str:
    """UpdateEndpoint back to the previous endpoint config (or ``to``); returns its name."""
    check_endpoint_name(endpoint_name)
    live = describe_live(aws, endpoint_name)
    if live is None:
        raise LaunchError(f"no endpoint {endpoint_name} in {aws.region}: nothing to roll back")
    check_updatable(live)
    configs = configs_made_for(aws, endpoint_name, live.config_name)
    target = to
    if target is None:
        previous = rollout.previous_config(configs, live.config_name)
        if previous is None:
            raise LaunchError(
                f"endpoint {endpoint_name} has no endpoint config older than {live.config_name} "
                f"to roll back to (deploy keeps the live one and the {rollout.KEEP_PREVIOUS} "
                "before it); name one with --to"
            )
        target = previous.name
    if target == live.config_name:
        raise LaunchError(f"endpoint {endpoint_name} already serves {target}")
    sm = aws.client("sagemaker")
    config = sm.describe_endpoint_config(EndpointConfigName=target)
    variants = config.get("ProductionVariants") or [{}]
    version = rollout.tag(_tags(sm, config["EndpointConfigArn"]), rollout.TAG_VERSION)
    scaling = None
    if not live.serverless:
        scaling = autoscaling.registered(
            aws.client("application-autoscaling"), live.name, live.variant
        )
    new_type = variants[0].get("InstanceType")
    deregister_first = bool(scaling and new_type and new_type != live.instance_type)
    if deregister_first and not (wait or aws.dry_run):
        raise LaunchError(
            f"endpoint {endpoint_name} autoscales and {target} has another instance type "
            f"({live.instance_type} -> {new_type}): run with --wait"
        )
    # No guardrails on the way back: the alarms that would watch it are the ones that made the
    # user roll back, and SageMaker's default blue/green all-at-once keeps the endpoint serving.
    plan = UpdatePlan(None, "none (a rollback switches at once)", scaling,
                      scaling if deregister_first else None, deregister_first)  # fmt: skip
    print(f"rolling endpoint {endpoint_name} back: {live.config_name} -> {target}")
    outcome = switch_endpoint(
        aws, live, target, plan, wait,
        new_version=version, new_model=variants[0].get("ModelName"),
    )  # fmt: skip
    if outcome.ok:
        _print_reprocess(aws, endpoint_name, "the model it serves again")
    outcome.raise_if_failed()
    return target


def content_type_of(image: Path) -> str:
    try:
        return CONTENT_TYPES[image.suffix.lower()]
    except KeyError:
        raise LaunchError(
            f"{image.name}: unknown image type; use one of {', '.join(CONTENT_TYPES)}"
        ) from None


def format_predictions(response: dict[str, Any]) -> list[str]:
    """The endpoint's JSON (DESIGN.md: predictions best first, model identity) as lines."""
    if not isinstance(response, dict) or not isinstance(response.get("predictions"), list):
        raise LaunchError(f"the endpoint answered something else than predictions: {response!r}")
    lines = [
        f"  {rank}. {p['breed']:<40} {100 * float(p['probability']):6.2f}%"
        for rank, p in enumerate(response["predictions"], start=1)
    ]
    model = response.get("model") or {}
    if model:
        lines.append(
            f"  model {model.get('name')} version {model.get('version')} "
            f"runtime {model.get('runtime')}"
        )
    return lines


def invoke(aws: Aws, *, endpoint_name: str, image: Path, top_k: int) -> dict[str, Any]:
    """The image through the SDK Predictor, then through a plain boto3 sagemaker-runtime client."""
    from sagemaker.deserializers import JSONDeserializer
    from sagemaker.predictor import Predictor
    from sagemaker.serializers import IdentitySerializer

    if top_k < 1:
        raise LaunchError("--top-k must be at least 1")
    if not image.is_file():
        raise LaunchError(f"{image}: no such image file")
    content_type = content_type_of(image)
    body = image.read_bytes()
    attributes = f"top_k={top_k}"

    predictor = Predictor(
        endpoint_name=endpoint_name,
        sagemaker_session=aws.sagemaker_session,
        serializer=IdentitySerializer(content_type=content_type),
        deserializer=JSONDeserializer(),
    )
    via_sdk = predictor.predict(body, custom_attributes=attributes)

    runtime = aws.client("sagemaker-runtime")
    answer = runtime.invoke_endpoint(
        EndpointName=endpoint_name,
        ContentType=content_type,
        Accept="application/json",
        CustomAttributes=attributes,
        Body=body,
    )
    via_boto3 = json.loads(answer["Body"].read())

    if aws.dry_run:
        return {"sdk": via_sdk, "boto3": via_boto3}
    for label, response in (
        ("SageMaker Predictor", via_sdk),
        ("boto3 sagemaker-runtime", via_boto3),
    ):
        print(f"{label}: {image.name} on {endpoint_name}")
        # Truncate client-side too: the toolkit may not pass CustomAttributes to the handlers.
        shown = {**response, "predictions": response.get("predictions", [])[:top_k]}
        for line in format_predictions(shown):
            print(line)
    return {"sdk": via_sdk, "boto3": via_boto3}


# ---- teardown -----------------------------------------------------------------------------------


def teardown(aws: Aws, *, endpoint_name: str) -> list[str]:
    """Delete what this project made for the endpoint: its autoscaling registration, the
    endpoint, every endpoint config made for it (tagged, live, or named like it) and their
    models, and models tagged for it; say what went."""
    check_endpoint_name(endpoint_name)
    sm = aws.client("sagemaker")
    try:
        sm.describe_endpoint(EndpointName=endpoint_name)
        missing = None
    except ClientError as err:
        if not _not_found(err):
            raise
        missing = err  # configs and models made for it may still be there
    live = None if missing else describe_live(aws, endpoint_name)
    configs = [
        c.name for c in configs_made_for(aws, endpoint_name, live.config_name if live else None)
    ]
    models: list[str] = []
    for config in configs:
        models += [m for m in models_of(aws, config) if m not in models]
    models += [m for m in _models_tagged_for(aws, endpoint_name) if m not in models]
    deleted = []
    if live is not None and not live.serverless:
        scaling_client = aws.client("application-autoscaling")
        for variant in live.variants:
            if autoscaling.registered(scaling_client, endpoint_name, variant):
                deleted += autoscaling.deregister(scaling_client, endpoint_name, variant)
    if live is not None:
        sm.delete_endpoint(EndpointName=endpoint_name)
        deleted.append(f"endpoint {endpoint_name}")
    for config in configs:
        sm.delete_endpoint_config(EndpointConfigName=config)
        deleted.append(f"endpoint config {config}")
    for model in models:
        sm.delete_model(ModelName=model)
        deleted.append(f"model {model}")
    if not deleted and missing is not None:
        raise missing  # AWS's own words: no such endpoint
    verb = "would delete" if aws.dry_run else "deleted"
    for item in deleted:
        print(f"{verb} {item}")
    return deleted


def _models_tagged_for(aws: Aws, endpoint_name: str) -> list[str]:
    sm = aws.client("sagemaker")
    base = rollout.name_base(endpoint_name)
    found = []
    for page in sm.get_paginator("list_models").paginate(NameContains=base):
        for model in page.get("Models", []):
            if base not in model["ModelName"]:
                continue  # a backend that ignores NameContains
            tags = _tags(sm, model["ModelArn"])
            if rollout.tag(tags, rollout.TAG_ENDPOINT) == endpoint_name:
                found.append(model["ModelName"])
    return found
