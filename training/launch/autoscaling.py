"""Application Auto Scaling of the endpoint's variant: register, read back, deregister.

``deploy --max-instances N`` registers the variant (``endpoint/NAME/variant/VARIANT``, dimension
``sagemaker:variant:DesiredInstanceCount``) between the deployed instance count and N, with one
target-tracking policy on the predefined ``SageMakerVariantInvocationsPerInstance`` (invocations
a minute per instance, averaged over the variant). The upload queue's event source mapping must
let through enough requests for N instances: ``max_concurrency_for`` gives the stack's
``MaxConcurrency`` for that.

SageMaker refuses an UpdateEndpoint that changes the instance type of a registered variant
(https://docs.aws.amazon.com/sagemaker/latest/dg/endpoint-scaling-update.html: "deregister the
variant as a scalable target ... After you update the endpoint, you can register the updated
variant"); a change of model alone is allowed. Deregistering a scalable target also deletes its
policies on AWS; ``deregister`` deletes them first anyway, so nothing is left on any backend.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

NAMESPACE = "sagemaker"
DIMENSION = "sagemaker:variant:DesiredInstanceCount"
METRIC = "SageMakerVariantInvocationsPerInstance"
# Invocations a minute per instance the policy keeps the variant at. docs/performance.md measures an
# ml.t2.medium-class CPU at its baseline (out of CPU credits) at about 28,600 images an hour
# with int8 (477 a minute) and 14,800 with fp32 (247 a minute); with credits, 39 and 20 images/s.
# 200 a minute is below what one instance sustains at its baseline even in fp32, so the variant
# scales out before an instance falls behind for good, and leaves int8 instances room for the
# burst that arrives while a new instance starts (several minutes).
#
# Invocations per instance rather than the queue's backlog per instance: the function sends at
# most MaxConcurrency requests at once (template.yaml), so the backlog also grows when that cap,
# not the endpoint, is the bottleneck, and scaling on it would add instances no request reaches.
# The invocation rate is the endpoint's own load, a metric SageMaker publishes per variant with no
# custom metric to maintain; the printed MaxConcurrency keeps the cap in step with N instances.
TARGET_INVOCATIONS_PER_INSTANCE = 200.0
SCALE_OUT_COOLDOWN_S = 120  # an instance takes minutes to serve: don't add a second one meanwhile
SCALE_IN_COOLDOWN_S = 600  # uploads come in bursts: keep the capacity through a lull
REQUESTS_PER_INSTANCE = 2  # in flight per instance: docs/performance.md's measured best on 2 vCPUs
TEMPLATE_PARAMETER = "MaxConcurrency"  # template.yaml's parameter for the queue's concurrency


@dataclass(frozen=True)
class Scaling:
    """A registered variant's bounds."""

    min_capacity: int
    max_capacity: int

    def describe(self) -> str:
        return (
            f"{self.min_capacity} to {self.max_capacity} instances on {METRIC} "
            f"(target {TARGET_INVOCATIONS_PER_INSTANCE:g} a minute per instance)"
        )


def resource_id(endpoint_name: str, variant: str) -> str:
    return f"endpoint/{endpoint_name}/variant/{variant}"


def policy_name(endpoint_name: str) -> str:
    return f"{endpoint_name}-invocations-per-instance"


def max_concurrency_for(max_instances: int) -> int:
    return max(2, REQUESTS_PER_INSTANCE * max_instances)  # the template's MinValue is 2


def registered(client: Any, endpoint_name: str, variant: str) -> Scaling | None:
    """The variant's scalable target, if one is registered."""
    answer = client.describe_scalable_targets(
        ServiceNamespace=NAMESPACE,
        ResourceIds=[resource_id(endpoint_name, variant)],
        ScalableDimension=DIMENSION,
    )
    targets = answer.get("ScalableTargets") or []
    if not targets:
        return None
    return Scaling(int(targets[0]["MinCapacity"]), int(targets[0]["MaxCapacity"]))


def register(client: Any, endpoint_name: str, variant: str, scaling: Scaling) -> None:
    """Register (or re-bound) the variant and put its target-tracking policy."""
    target = resource_id(endpoint_name, variant)
    client.register_scalable_target(
        ServiceNamespace=NAMESPACE,
        ResourceId=target,
        ScalableDimension=DIMENSION,
        MinCapacity=scaling.min_capacity,
        MaxCapacity=scaling.max_capacity,
    )
    client.put_scaling_policy(
        PolicyName=policy_name(endpoint_name),
        ServiceNamespace=NAMESPACE,
        ResourceId=target,
        ScalableDimension=DIMENSION,
        PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration={
            "TargetValue": TARGET_INVOCATIONS_PER_INSTANCE,
            "PredefinedMetricSpecification": {"PredefinedMetricType": METRIC},
            "ScaleOutCooldown": SCALE_OUT_COOLDOWN_S,
            "ScaleInCooldown": SCALE_IN_COOLDOWN_S,
        },
    )


def deregister(client: Any, endpoint_name: str, variant: str) -> list[str]:
    """Delete the variant's policies, then its scalable target; returns what went."""
    target = resource_id(endpoint_name, variant)
    gone = []
    policies = client.describe_scaling_policies(
        ServiceNamespace=NAMESPACE, ResourceId=target, ScalableDimension=DIMENSION
    ).get("ScalingPolicies", [])
    for policy in policies:
        client.delete_scaling_policy(
            PolicyName=policy["PolicyName"],
            ServiceNamespace=NAMESPACE,
            ResourceId=target,
            ScalableDimension=DIMENSION,
        )
        gone.append(f"scaling policy {policy['PolicyName']}")
    client.deregister_scalable_target(
        ServiceNamespace=NAMESPACE, ResourceId=target, ScalableDimension=DIMENSION
    )
    gone.append(f"scalable target {target}")
    return gone
