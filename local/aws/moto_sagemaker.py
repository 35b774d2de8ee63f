"""A strict SageMaker control plane for the in-process moto server: names, updates, status.

moto 5.2.5 accepts what SageMaker refuses and lacks what a model update needs: ``CreateModel``,
``CreateEndpointConfig`` and ``CreateEndpoint`` silently replace a resource of the same name,
there is no ``UpdateEndpoint``, and every endpoint is ``InService`` the moment it is asked for.
``install()`` patches moto's SageMaker backend and responses in this process so that:

- **Create\\* refuses a name that exists**, with SageMaker's code and message (the texts are the
  ones AWS returns, as quoted in public bug reports):

  - ``ValidationException: Cannot create already existing model "arn:...:model/NAME".``
    (astronomer/astronomer-providers#1055),
  - ``ValidationException: Cannot create already existing endpoint configuration
    "arn:...:endpoint-config/NAME".`` (awslabs/spot-tagging-bot-for-digital-assets#2; the SDK
    made a same-named config an error on purpose in aws/sagemaker-python-sdk#2772),
  - ``ValidationException: Cannot create already existing endpoint "arn:...:endpoint/NAME".``
    (aws/sagemaker-python-sdk#101).

- **UpdateEndpoint exists** (EndpointName, EndpointConfigName, RetainAllVariantProperties,
  ExcludeRetainedVariantProperties, DeploymentConfig, RetainDeploymentConfig; returns
  EndpointArn; https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_UpdateEndpoint.html).
  It refuses an unknown endpoint (``Could not find endpoint "arn"``) or config (``Could not find
  endpoint configuration "arn"``), the prefixes SageMaker's own Kubernetes operator matches
  (aws/amazon-sagemaker-operator-for-k8s, controllers/sdkutil/clientwrapper/sagemaker_client.go),
  and an endpoint that is ``Creating`` or ``Updating`` (``Cannot update in-progress endpoint
  "arn"``, the same file's prefix). A ``Failed`` endpoint is refused too (the wording of that
  refusal is ours). With a ``DeploymentConfig``, the guardrails' documented rules hold: the new
  config keeps the live variant names (deployment-guardrails-exclusions.html) and a canary is
  at most half of the variant's instances (API_TrafficRoutingConfig.html); those refusals are
  ValidationExceptions in our own words. The config is recorded as the endpoint's
  ``LastDeploymentConfig``; ``RetainAllVariantProperties`` keeps the live variants' instance
  count and weight unless ``ExcludeRetainedVariantProperties`` names them. An update that
  changes the instance type of a variant registered with moto's Application Auto Scaling is
  refused, as SageMaker refuses it (endpoint-scaling-update.html; our wording).

- **Status has a life cycle with an optional owner.** Unwatched endpoints become ``InService``
  at once on create and update (what moto does: launcher tests need no one to finish them). An
  endpoint named in ``watch(name, callback)`` stays ``Creating`` / ``Updating`` until
  ``complete(name, ok, reason)``: during an update ``DescribeEndpoint`` still shows the *old*
  ``EndpointConfigName`` and variants, and ``PendingDeploymentSummary`` names the new config, as
  SageMaker shows it. ``complete(ok=False)`` fails a create (``Failed`` with ``FailureReason``)
  and rolls an update back (``InService`` on the previous config, ``FailureReason`` set: the
  DescribeEndpoint reference says FailureReason is given when "the status is InService but update
  operation fails").

DeleteModel, DeleteEndpointConfig and DeleteEndpoint keep moto's behaviour (SageMaker also
refuses deleting an in-progress endpoint; not emulated, so a test's cleanup never waits on an
owner). Pending changes live on moto's backend object, so a moto reset forgets them; watchers
belong to the caller and survive a reset. ``install()`` is counted like ``local.aws.moto_sqs_move``
and must run in the process that serves moto (``ThreadedMotoServer`` serves in-process).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from moto.applicationautoscaling.models import applicationautoscaling_backends
from moto.core.responses import ActionResult
from moto.core.utils import utcnow
from moto.sagemaker.exceptions import ValidationError
from moto.sagemaker.models import (
    FakeEndpoint,
    FakeEndpointConfig,
    SageMakerModelBackend,
    arn_formatter,
    sagemaker_backends,
)
from moto.sagemaker.responses import SageMakerResponse

IN_SERVICE, CREATING, UPDATING, FAILED = "InService", "Creating", "Updating", "Failed"
CREATE, UPDATE = "create", "update"
SCALING_DIMENSION = "sagemaker:variant:DesiredInstanceCount"
_PENDING_ATTRIBUTE = "_strict_pending_changes"
_install_lock = threading.Lock()
# Endpoint status and pending changes: moto's request threads against complete().
_state_lock = threading.RLock()


@dataclass(frozen=True)
class EndpointChange:
    """What a watcher is told when a watched endpoint starts being created or updated."""

    kind: str  # CREATE or UPDATE
    account_id: str
    region: str
    endpoint_name: str
    endpoint_config_name: str  # the config being deployed
    previous_config_name: str | None  # None on create
    model_data_urls: tuple[str, ...]  # the new config's models' ModelDataUrl, by variant order
    environments: tuple[dict[str, str], ...]  # their PrimaryContainer Environment


@dataclass
class _Pending:
    change: EndpointChange
    variants: list[dict[str, Any]]  # the endpoint's variants once the change succeeds


Watcher = Callable[[EndpointChange], None]
_watchers: dict[str, Watcher] = {}


def watch(endpoint_name: str, callback: Watcher) -> Callable[[], None]:
    """Own ``endpoint_name``'s status: its creates and updates wait for ``complete()``.

    ``callback`` is called after each state change, from the moto request thread (the client's
    call has not returned yet): it must return quickly and do slow work on its own thread. One
    owner per endpoint name; returns the function that gives the endpoint back (a change still
    pending stays pending until ``complete``)."""
    with _state_lock:
        if endpoint_name in _watchers:
            raise ValueError(f"endpoint {endpoint_name!r} is already watched")
        _watchers[endpoint_name] = callback

    def unwatch() -> None:
        with _state_lock:
            if _watchers.get(endpoint_name) is callback:
                del _watchers[endpoint_name]

    return unwatch


def complete(
    endpoint_name: str,
    ok: bool,
    reason: str | None = None,
    *,
    region: str | None = None,
    account_id: str | None = None,
) -> None:
    """Finish the pending create or update of ``endpoint_name``.

    ok: ``InService`` on the new config. Not ok: a create ends ``Failed`` with ``reason`` as its
    FailureReason; an update rolls back to ``InService`` on the previous config, FailureReason
    set. ``region`` / ``account_id`` are needed only when several backends have a change pending
    for that name; none pending is a ``LookupError``."""
    with _state_lock:
        backend, pending = _find_pending(endpoint_name, region, account_id)
        endpoint = backend.endpoints.get(endpoint_name)
        del _pending_changes(backend)[endpoint_name]
        if endpoint is None:  # deleted while pending: nothing left to finish
            return
        change = pending.change
        endpoint.last_modified_time = utcnow()
        endpoint.pending_deployment_summary = None
        if ok:
            _switch(endpoint, change.endpoint_config_name, pending.variants)
            endpoint.failure_reason = None
        elif change.kind == CREATE:
            endpoint.endpoint_status = FAILED
            endpoint.failure_reason = reason or "The endpoint failed to start."
        else:
            endpoint.endpoint_status = IN_SERVICE
            endpoint.failure_reason = reason or "The update failed; the endpoint was rolled back."


def _find_pending(
    endpoint_name: str, region: str | None, account_id: str | None
) -> tuple[SageMakerModelBackend, _Pending]:
    found = [
        (backend, _pending_changes(backend)[endpoint_name])
        for acct, reg, backend in _backends()
        if (account_id is None or acct == account_id)
        and (region is None or reg == region)
        and endpoint_name in _pending_changes(backend)
    ]
    if not found:
        raise LookupError(f"no create or update of endpoint {endpoint_name!r} is pending")
    if len(found) > 1:
        raise LookupError(
            f"endpoint {endpoint_name!r} has changes pending in several accounts or regions: "
            "pass region= and account_id="
        )
    return found[0]


def _backends() -> Iterator[tuple[str, str, SageMakerModelBackend]]:
    """The backends that exist (dict views: iterating must not create any)."""
    for account_id, regions in list(dict.items(sagemaker_backends)):
        for region, backend in list(dict.items(regions)):
            yield account_id, region, backend


def _pending_changes(backend: SageMakerModelBackend) -> dict[str, _Pending]:
    """Stored on the backend: a moto reset drops them with the endpoints."""
    pending = getattr(backend, _PENDING_ATTRIBUTE, None)
    if pending is None:
        pending = {}
        setattr(backend, _PENDING_ATTRIBUTE, pending)
    return pending


# ---- Create*: a name that exists is refused -----------------------------------------------------

_original: dict[str, Callable[..., Any]] = {}


def _already_exists(kind: str, resource: str, name: str, backend: SageMakerModelBackend) -> None:
    arn = arn_formatter(resource, name, backend.account_id, backend.region_name)
    raise ValidationError(message=f'Cannot create already existing {kind} "{arn}".')


def _create_model(self: SageMakerModelBackend, model_name: str, *args: Any, **kw: Any) -> Any:
    if model_name in self._models:
        _already_exists("model", "model", model_name, self)
    return _original["create_model"](self, model_name, *args, **kw)


def _create_endpoint_config(
    self: SageMakerModelBackend, endpoint_config_name: str, *args: Any, **kw: Any
) -> Any:
    if endpoint_config_name in self.endpoint_configs:
        _already_exists("endpoint configuration", "endpoint-config", endpoint_config_name, self)
    return _original["create_endpoint_config"](self, endpoint_config_name, *args, **kw)


def _create_endpoint(
    self: SageMakerModelBackend,
    endpoint_name: str,
    endpoint_config_name: str,
    tags: list[dict[str, str]],
) -> FakeEndpoint:
    if endpoint_name in self.endpoints:
        _already_exists("endpoint", "endpoint", endpoint_name, self)
    _config_or_refuse(self, endpoint_config_name)
    with _state_lock:
        endpoint = _original["create_endpoint"](self, endpoint_name, endpoint_config_name, tags)
        endpoint.pending_deployment_summary = None
        endpoint.last_deployment_config = None
        watcher = _watchers.get(endpoint_name)
        if watcher is None:
            return endpoint
        endpoint.endpoint_status = CREATING
        change = _change(self, CREATE, endpoint_name, endpoint_config_name, None)
        _pending_changes(self)[endpoint_name] = _Pending(change, endpoint.production_variants)
    watcher(change)
    return endpoint


# ---- UpdateEndpoint -----------------------------------------------------------------------------


def update_endpoint(
    backend: SageMakerModelBackend,
    endpoint_name: str,
    endpoint_config_name: str,
    retain_all_variant_properties: bool = False,
    exclude_retained_variant_properties: list[dict[str, str]] | None = None,
    deployment_config: dict[str, Any] | None = None,
    retain_deployment_config: bool = False,
) -> FakeEndpoint:
    """UpdateEndpoint on ``backend``: validate as SageMaker does, then switch now (unwatched) or
    leave the endpoint ``Updating`` for its watcher."""
    with _state_lock:
        endpoint = backend.endpoints.get(endpoint_name)
        if endpoint is None:
            arn = FakeEndpoint.arn_formatter(endpoint_name, backend.account_id, backend.region_name)
            raise ValidationError(message=f'Could not find endpoint "{arn}".')
        config = _config_or_refuse(backend, endpoint_config_name)
        if endpoint.endpoint_status in (CREATING, UPDATING) or (
            endpoint_name in _pending_changes(backend)
        ):
            raise ValidationError(message=f'Cannot update in-progress endpoint "{endpoint.arn}".')
        if endpoint.endpoint_status != IN_SERVICE:
            raise ValidationError(
                message=f'Cannot update endpoint "{endpoint.arn}" in status '
                f"{endpoint.endpoint_status}: delete it and create it again."
            )
        excluded = {p.get("VariantPropertyType") for p in exclude_retained_variant_properties or []}
        variants = _variants_after(endpoint, config, bool(retain_all_variant_properties), excluded)
        _check_scaling(backend, endpoint, config)
        if deployment_config is None and retain_deployment_config:
            deployment_config = endpoint.last_deployment_config
        if deployment_config:
            _check_guardrails(endpoint, config, variants, deployment_config)
            endpoint.last_deployment_config = deployment_config
        endpoint.last_modified_time = utcnow()
        watcher = _watchers.get(endpoint_name)
        if watcher is None:
            _switch(endpoint, endpoint_config_name, variants)
            endpoint.failure_reason = None
            return endpoint
        change = _change(
            backend, UPDATE, endpoint_name, endpoint_config_name, endpoint.endpoint_config_name
        )
        _pending_changes(backend)[endpoint_name] = _Pending(change, variants)
        endpoint.endpoint_status = UPDATING
        endpoint.pending_deployment_summary = {
            "EndpointConfigName": endpoint_config_name,
            "StartTime": endpoint.last_modified_time,
            "ProductionVariants": [_pending_variant(v, config) for v in variants],
        }
    watcher(change)
    return endpoint


def _config_or_refuse(backend: SageMakerModelBackend, name: str) -> FakeEndpointConfig:
    config = backend.endpoint_configs.get(name)
    if config is None:
        arn = FakeEndpointConfig.arn_formatter(name, backend.account_id, backend.region_name)
        raise ValidationError(message=f'Could not find endpoint configuration "{arn}".')
    return config


def _variants_after(
    endpoint: FakeEndpoint, config: FakeEndpointConfig, retain: bool, excluded: set[str]
) -> list[dict[str, Any]]:
    """The endpoint's variants once ``config`` is live, live properties kept if asked."""
    variants = endpoint._process_production_variants(config.production_variants)
    if not retain:
        return variants
    live = {v["VariantName"]: v for v in endpoint.production_variants}
    kept_keys = {
        "DesiredInstanceCount": ("CurrentInstanceCount", "DesiredInstanceCount"),
        "DesiredWeight": ("CurrentWeight", "DesiredWeight"),
    }
    for variant in variants:
        old = live.get(variant["VariantName"])
        if old is None:
            continue
        for prop, keys in kept_keys.items():
            if prop in excluded:
                continue
            for key in keys:
                if key in old:
                    variant[key] = old[key]
    return variants


def _check_scaling(
    backend: SageMakerModelBackend, endpoint: FakeEndpoint, config: FakeEndpointConfig
) -> None:
    """SageMaker refuses to change the instance type of a variant registered with Application
    Auto Scaling (endpoint-scaling-update.html; the wording here is ours)."""
    live = backend.endpoint_configs.get(endpoint.endpoint_config_name)
    if live is None:
        return
    types = {v["VariantName"]: v.get("InstanceType") for v in live.production_variants}
    targets = applicationautoscaling_backends[backend.account_id][backend.region_name].targets
    registered = targets.get(SCALING_DIMENSION, {})
    for variant in config.production_variants:
        name = variant["VariantName"]
        resource = f"endpoint/{endpoint.endpoint_name}/variant/{name}"
        if resource in registered and variant.get("InstanceType") != types.get(name):
            raise ValidationError(
                message=f"The variant {name} of endpoint {endpoint.endpoint_name} is registered "
                "with Application Auto Scaling and the update changes its instance type: "
                "deregister the scalable target first, update, then register it again."
            )


def _instance_count(variant: dict[str, Any]) -> int | None:
    return variant.get("DesiredInstanceCount") or variant.get("CurrentInstanceCount")


def _check_guardrails(
    endpoint: FakeEndpoint,
    config: FakeEndpointConfig,
    variants: list[dict[str, Any]],
    deployment_config: dict[str, Any],
) -> None:
    """The documented rules of a blue/green update with traffic shifting (our wording)."""
    old_names = sorted(v["VariantName"] for v in endpoint.production_variants)
    new_names = sorted(v["VariantName"] for v in variants)
    if old_names != new_names:
        raise ValidationError(
            message="A deployment configuration needs the new endpoint configuration to keep the "
            f"variant names of the live one: {old_names}, not {new_names}."
        )
    policy = deployment_config.get("BlueGreenUpdatePolicy") or {}
    routing = policy.get("TrafficRoutingConfiguration") or {}
    canary = routing.get("CanarySize")
    if routing.get("Type") != "CANARY" or not canary:
        return
    for variant in variants:
        count = _instance_count(variant)
        if count is None:
            raise ValidationError(
                message="Deployment guardrails apply to instance-based endpoints only; variant "
                f"{variant['VariantName']} has no instance count."
            )
        value = int(canary.get("Value", 0))
        size = value if canary.get("Type") == "INSTANCE_COUNT" else math.ceil(count * value / 100)
        if size < 1 or size > count / 2:
            raise ValidationError(
                message=f"CanarySize {canary.get('Type')} {value} is {size} of variant "
                f"{variant['VariantName']}'s {count} instance(s): it must be at least one "
                "instance and at most 50% of the variant's total instance count."
            )


def _pending_variant(variant: dict[str, Any], config: FakeEndpointConfig) -> dict[str, Any]:
    summary = {k: v for k, v in variant.items() if k.startswith(("Desired", "VariantName"))}
    spec = next(
        (p for p in config.production_variants if p["VariantName"] == variant["VariantName"]), {}
    )
    if "InstanceType" in spec:
        summary["InstanceType"] = spec["InstanceType"]
    summary["VariantStatus"] = [{"Status": CREATING, "StartTime": utcnow()}]
    return summary


def _switch(endpoint: FakeEndpoint, config_name: str, variants: list[dict[str, Any]]) -> None:
    endpoint.endpoint_config_name = config_name
    endpoint.production_variants = variants
    endpoint.endpoint_status = IN_SERVICE


def _change(
    backend: SageMakerModelBackend,
    kind: str,
    endpoint_name: str,
    config_name: str,
    previous: str | None,
) -> EndpointChange:
    config = backend.endpoint_configs[config_name]
    containers = []
    for variant in config.production_variants:
        model = backend._models.get(variant.get("ModelName", ""))
        containers.append(model.primary_container if model else {})
    return EndpointChange(
        kind=kind,
        account_id=backend.account_id,
        region=backend.region_name,
        endpoint_name=endpoint_name,
        endpoint_config_name=config_name,
        previous_config_name=previous,
        model_data_urls=tuple(c.get("ModelDataUrl", "") for c in containers),
        environments=tuple(dict(c.get("Environment") or {}) for c in containers),
    )


def _update_endpoint_action(self: SageMakerResponse) -> ActionResult:
    endpoint = update_endpoint(
        self.sagemaker_backend,
        endpoint_name=self._get_param("EndpointName"),
        endpoint_config_name=self._get_param("EndpointConfigName"),
        retain_all_variant_properties=self._get_param("RetainAllVariantProperties") or False,
        exclude_retained_variant_properties=self._get_param("ExcludeRetainedVariantProperties"),
        deployment_config=self._get_param("DeploymentConfig"),
        retain_deployment_config=self._get_param("RetainDeploymentConfig") or False,
    )
    return ActionResult({"EndpointArn": endpoint.arn})


# ---- install / uninstall ------------------------------------------------------------------------

_BACKEND_PATCHES: dict[str, Callable[..., Any]] = {
    "create_model": _create_model,
    "create_endpoint_config": _create_endpoint_config,
    "create_endpoint": _create_endpoint,
}
_installs = 0


def install() -> None:
    """Make moto's SageMaker strict in this process. Installs are counted: each is undone by one
    ``uninstall``, and moto's own behaviour comes back with the last one."""
    global _installs
    with _install_lock:
        _installs += 1
        if _installs > 1:
            return
        for name, patch in _BACKEND_PATCHES.items():
            _original[name] = vars(SageMakerModelBackend)[name]
            setattr(SageMakerModelBackend, name, patch)
        SageMakerResponse.update_endpoint = _update_endpoint_action


def uninstall() -> None:
    """Undo one ``install``; the last one gives moto's SageMaker back as it ships."""
    global _installs
    with _install_lock:
        if _installs == 0:
            return
        _installs -= 1
        if _installs > 0:
            return
        for name, original in _original.items():
            setattr(SageMakerModelBackend, name, original)
        _original.clear()
        if "update_endpoint" in vars(SageMakerResponse):
            delattr(SageMakerResponse, "update_endpoint")


def installed() -> bool:
    """Whether the strict control plane is in force in this process."""
    return _installs > 0
