"""How a new model replaces the live one.

How a new model replaces the live one: unique names, SageMaker's deployment guardrails, what is
kept for a rollback. Pure decisions; ``endpoint`` makes the calls.

Names. SageMaker refuses a CreateModel / CreateEndpointConfig / CreateEndpoint for a name that
exists, so every deploy creates its model and endpoint config as ``{endpoint}-{version}-{time}``
(at most 63 characters; the endpoint part is trimmed, never the version or the time). The
endpoint's own name never changes: the SAM stack and the function keep pointing at it.

Versions. A model's version is the artifact's own (``config.json``'s ``model_version``, the
first 12 hex digits of the weights' sha256, which the endpoint also answers with), else a hash of
the artifact's S3 ETag (its content, when the artifact predates that field or cannot be read
cheaply), else of its S3 URI. ``source`` says which.

Tags. Each endpoint config (and model) this project creates carries ``TAG_ENDPOINT`` (the
endpoint it was made for), ``TAG_VERSION`` and ``TAG_MODEL_DATA``: ``rollback`` finds the
previous config by them, ``teardown`` everything made for the endpoint, and a deploy prunes all
but the live config and the ``KEEP_PREVIOUS`` newest before it. Configs from before the tags
count too when the SDK named them for the endpoint (``named_by_the_sdk_for``).

Guardrails (``DeploymentConfig`` of UpdateEndpoint, real-time instance endpoints only:
https://docs.aws.amazon.com/sagemaker/latest/dg/deployment-guardrails.html). Blue/green, all at
once by default; ``--canary-percent P`` first shifts P % of the capacity. CanarySize "must be less
than or equal to 50% of the variant's total instance count" (API_TrafficRoutingConfig), so a
one-instance endpoint cannot have a canary (a CAPACITY_PERCENT canary is counted up to whole
instances here, the cautious reading: ``canary_refusal``). The baking period
(``--bake-minutes``) is both the wait between traffic steps and the time the old fleet is kept
after the switch; CloudWatch alarms that fire during it roll the endpoint back to the old fleet.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

MAX_NAME = 63  # SageMaker's limit for model, endpoint config and endpoint names
VERSION_CHARS = 12  # store.file_version's length
# "-{version}-{YYYYmmdd-HHMMSS-mmm}" after the (trimmed) endpoint name
_TAIL = 1 + VERSION_CHARS + 1 + len("20250101-000000-000")
TAG_ENDPOINT = "dog-breeds:endpoint"
TAG_VERSION = "dog-breeds:model-version"
TAG_MODEL_DATA = "dog-breeds:model-data"
KEEP_PREVIOUS = 2  # endpoint configs (and their models) kept besides the live one
DEFAULT_VARIANT = "AllTraffic"  # the SDK's default; template.yaml's alarms name it
DEFAULT_BAKE_MINUTES = 5
MAX_BAKE_MINUTES = 60  # WaitIntervalInSeconds and TerminationWaitInSeconds: at most 3600
# Time SageMaker gets to start the new fleet (instances, image pull, model load) before the
# deployment times out and rolls back; MaximumExecutionTimeoutInSeconds is 600 to 28800.
PROVISIONING_SECONDS = 1800
MAX_ROLLBACK_ALARMS = 10  # AutoRollbackConfig.Alarms: 1 to 10
# Invocation metrics say how the model answers (5xx, latency); instance metrics (CPU, memory)
# how busy the fleet is, which a good model under load would trip too.
ROLLBACK_ALARM_NAMESPACE = "AWS/SageMaker"
_TAG_VALUE = re.compile(r"[^\w\s.:/=+\-@]")


@dataclass(frozen=True)
class ModelVersion:
    version: str
    source: str  # where it came from, as printed: "the artifact's config.json", ...

    def describe(self) -> str:
        return f"{self.version} ({self.source})"


def version_from_config(config: dict[str, Any]) -> str | None:
    """The artifact's own version, if its config.json has one that can go into a name."""
    version = str(config.get("model_version") or "").lower()[:VERSION_CHARS].strip("-")
    return version if re.fullmatch(r"[a-z0-9-]+", version) else None


def version_from_etag(etag: str) -> ModelVersion:
    digest = hashlib.sha256(etag.strip('"').encode()).hexdigest()[:VERSION_CHARS]
    return ModelVersion(digest, "a hash of the artifact's S3 ETag: its config.json has none")


def version_from_uri(uri: str) -> ModelVersion:
    digest = hashlib.sha256(uri.encode()).hexdigest()[:VERSION_CHARS]
    return ModelVersion(digest, "a hash of the artifact's S3 URI: it could not be read")


def unique_name(endpoint_name: str, version: str, when: datetime) -> str:
    """``{endpoint}-{version}-{time}`` in at most 63 characters; only the endpoint part is
    trimmed, so two deploys never share a name (the time has milliseconds)."""
    stamp = when.strftime("%Y%m%d-%H%M%S-") + f"{when.microsecond // 1000:03d}"
    return f"{name_base(endpoint_name)}-{version[:VERSION_CHARS]}-{stamp}"


def name_base(endpoint_name: str) -> str:
    """The start of every name ``unique_name`` gives for this endpoint (for List* filters)."""
    return endpoint_name[: MAX_NAME - _TAIL].rstrip("-")


def tag_value(text: str) -> str:
    """A tag value SageMaker accepts: its characters, at most 256 of them."""
    return _TAG_VALUE.sub("", text)[:256]


def tags_for(endpoint_name: str, version: ModelVersion, model_data: str) -> list[dict[str, str]]:
    return [
        {"Key": TAG_ENDPOINT, "Value": tag_value(endpoint_name)},
        {"Key": TAG_VERSION, "Value": tag_value(version.version)},
        {"Key": TAG_MODEL_DATA, "Value": tag_value(model_data)},
    ]


def named_by_the_sdk_for(endpoint_name: str, name: str) -> bool:
    """Whether an untagged config or model was made for this endpoint before deploys tagged
    them: the SDK's ``Model.deploy`` names the config like the endpoint, and ``name_from_base``
    names the rest ``{endpoint}-YYYY-MM-DD-HH-MM-SS-mmm`` (the offline stack names its first
    model so too). Another endpoint's names (``{endpoint}-staging-...``) do not match."""
    base = re.escape(endpoint_name[: MAX_NAME - len("-2025-01-01-00-00-00-000")])
    return (
        name == endpoint_name
        or re.fullmatch(rf"{base}-\d{{4}}(-\d\d){{5}}-\d{{3}}", name) is not None
    )


def tag(tags: list[dict[str, str]], key: str) -> str | None:
    return next((t["Value"] for t in tags if t.get("Key") == key), None)


# ---- deployment guardrails ----------------------------------------------------------------------


def canary_refusal(instance_count: int, percent: int) -> str | None:
    """Why SageMaker would refuse a P % canary on ``instance_count`` instances; None if fine."""
    if not 1 <= percent <= 50:
        return f"--canary-percent {percent}: use 1 to 50 (% of the variant's instances)"
    canary = math.ceil(instance_count * percent / 100)
    if canary <= instance_count / 2:
        return None
    return (
        f"--canary-percent {percent}: a canary needs at least 2 instances (SageMaker: CanarySize "
        f"at most 50% of the variant's instance count) and this endpoint would have "
        f"{instance_count}; pass --instance-count 2 or more, or drop --canary-percent"
    )


def deployment_config(
    *, bake_minutes: int, canary_percent: int | None, alarms: list[str]
) -> dict[str, Any]:
    """UpdateEndpoint's DeploymentConfig: blue/green, all at once or a canary first, with the
    alarms that roll it back."""
    bake = bake_minutes * 60
    routing: dict[str, Any] = {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": bake}
    steps = 1
    if canary_percent is not None:
        routing = {
            "Type": "CANARY",
            "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": canary_percent},
            "WaitIntervalInSeconds": bake,
        }
        steps = 2
    # The timeout must exceed the waits (API_BlueGreenUpdatePolicy), plus time to provision.
    timeout = PROVISIONING_SECONDS + steps * bake + bake
    config: dict[str, Any] = {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": routing,
            "TerminationWaitInSeconds": bake,
            "MaximumExecutionTimeoutInSeconds": min(max(timeout, 600), 28800),
        }
    }
    if alarms:
        config["AutoRollbackConfiguration"] = {"Alarms": [{"AlarmName": a} for a in alarms]}
    return config


def describe_deployment(config: dict[str, Any] | None) -> str:
    if not config:
        return "blue/green, all at once (SageMaker's default; no guardrails)"
    policy = config["BlueGreenUpdatePolicy"]
    routing = policy["TrafficRoutingConfiguration"]
    bake = f"bake {routing['WaitIntervalInSeconds'] // 60} min"
    if routing["Type"] == "CANARY":
        return f"blue/green, canary {routing['CanarySize']['Value']}% first, {bake} a step"
    return f"blue/green, all at once, {bake}"


def endpoint_alarms(alarms: list[dict[str, Any]], endpoint_name: str) -> list[str]:
    """The names of the metric alarms on this endpoint's invocation metrics (the template's
    EndpointErrorsAlarm and EndpointLatencyAlarm), at most ``MAX_ROLLBACK_ALARMS``."""
    found = sorted(
        a["AlarmName"]
        for a in alarms
        if a.get("Namespace") == ROLLBACK_ALARM_NAMESPACE
        and {"Name": "EndpointName", "Value": endpoint_name} in (a.get("Dimensions") or [])
    )
    return found[:MAX_ROLLBACK_ALARMS]


# ---- what is kept for a rollback ----------------------------------------------------------------


@dataclass(frozen=True)
class ConfigInfo:
    """One endpoint config made for an endpoint: its name, when it was made, its models."""

    name: str
    created: datetime
    version: str | None = None


def previous_config(configs: list[ConfigInfo], live: str) -> ConfigInfo | None:
    """The newest config made before the live one: what a rollback returns to."""
    by_name = {c.name: c for c in configs}
    current = by_name.get(live)
    older = [
        c for c in configs if c.name != live and (current is None or c.created < current.created)
    ]
    return max(older, key=lambda c: c.created, default=None)


def configs_to_prune(configs: list[ConfigInfo], live: str, keep: int = KEEP_PREVIOUS) -> list[str]:
    """All but the live config and the ``keep`` newest others, oldest first."""
    others = sorted((c for c in configs if c.name != live), key=lambda c: c.created, reverse=True)
    return [c.name for c in reversed(others[keep:])]
