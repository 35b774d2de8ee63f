"""Stage 4, ``deploy``: a model to the endpoint, created or updated.

Stage 4, ``deploy``: a model to the endpoint the SAM template names. The model: --model-data,
else that of --training-job, else of the job in RUNS_DIR/training_job.json. The endpoint: one or
more --instance-type instances (--instance-count), or serverless capacity with
--serverless-memory-mb.

No endpoint of that name: it is created. One exists: the same command updates it in place, with
no downtime (blue/green, all at once after a --bake-minutes bake, or a --canary-percent canary
first; the endpoint's CloudWatch alarms, or --rollback-alarm, roll it back), and the previous
config stays for ``rollback``. --max-instances N registers autoscaling between the instance count
and N.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from training.launch import compare, endpoint, rollout
from training.launch.aws import Aws, LaunchError, resolve_role
from training.launch.stages import flags, runs

HELP = "model to an endpoint (creates it, or updates it in place)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    flags.add_role_flag(parser)
    flags.add_endpoint_flag(parser)
    parser.add_argument(
        "--training-job", help="deploy this job's model (default: runs/training_job.json)"
    )
    parser.add_argument("--model-data", help="or this model.tar.gz S3 URI")
    parser.add_argument(
        "--instance-type",
        default=os.environ.get("SAGEMAKER_ENDPOINT_INSTANCE", "ml.t2.medium"),
        help="endpoint instance (default: SAGEMAKER_ENDPOINT_INSTANCE or %(default)s)",
    )
    parser.add_argument(
        "--instance-count",
        type=int,
        default=1,
        help="instances of the endpoint (default: %(default)s; with --max-instances, the least)",
    )
    parser.add_argument(
        "--serverless-memory-mb",
        type=int,
        help="deploy serverless with this much memory (1024 to 6144, in steps of 1024) "
        "instead of an instance",
    )
    parser.add_argument(
        "--serverless-max-concurrency",
        type=int,
        help="serverless: most invocations at once (1 to 200, default "
        f"{endpoint.DEFAULT_SERVERLESS_MAX_CONCURRENCY})",
    )
    parser.add_argument(
        "--model-server-workers",
        type=int,
        help="TorchServe worker processes, each a copy of the model (default: one per vCPU, "
        f"2 on an ml.t2.medium; serverless: {endpoint.DEFAULT_SERVERLESS_WORKERS})",
    )
    parser.add_argument("--framework-version", default=None, help="PyTorch inference image (2.6.0)")
    parser.add_argument("--py-version", default=None, help="Python of the image (py312)")
    _add_update_arguments(parser)
    flags.add_wait_flag(parser, "the endpoint is InService")
    compare.add_gate_arguments(parser)


def _add_update_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "when the endpoint exists (an update: SageMaker's deployment guardrails)"
    )
    group.add_argument(
        "--bake-minutes",
        type=int,
        default=rollout.DEFAULT_BAKE_MINUTES,
        help="watch the new fleet this long (alarms roll it back) before each traffic step and "
        f"before the old fleet goes (0 to {rollout.MAX_BAKE_MINUTES}, default %(default)s)",
    )
    group.add_argument(
        "--canary-percent",
        type=int,
        metavar="P",
        help="send P %% of the capacity to the new model first, the rest after a bake "
        "(needs 2 or more instances; default: all at once)",
    )
    group.add_argument(
        "--rollback-alarm",
        action="append",
        metavar="NAME",
        help="CloudWatch alarm that rolls the update back (repeatable; default: the alarms on "
        "the endpoint's invocation metrics, the SAM stack's EndpointErrorsAlarm and "
        "EndpointLatencyAlarm)",
    )
    group.add_argument(
        "--max-instances",
        type=int,
        metavar="N",
        help="autoscale the endpoint between --instance-count and N instances (N >= 2) on "
        "invocations per instance",
    )


def check(args: argparse.Namespace) -> None:
    resolve_role(args.role)
    endpoint.check_endpoint_name(args.endpoint_name)
    serverless = serverless_capacity(args) is not None
    endpoint.model_server_env(args.model_server_workers, serverless)
    if args.instance_count < 1:
        raise LaunchError(f"--instance-count {args.instance_count}: use 1 or more")
    if not 0 <= args.bake_minutes <= rollout.MAX_BAKE_MINUTES:
        top = rollout.MAX_BAKE_MINUTES
        raise LaunchError(f"--bake-minutes {args.bake_minutes}: use 0 to {top}")
    if serverless:
        _check_serverless(args)
    if args.canary_percent is not None:
        why = rollout.canary_refusal(args.instance_count, args.canary_percent)
        if why:
            raise LaunchError(why)
    if args.max_instances is not None:
        if args.max_instances < max(2, args.instance_count):
            raise LaunchError(
                f"--max-instances {args.max_instances}: use 2 or more, and at least "
                f"--instance-count ({args.instance_count})"
            )
        if not args.wait and not args.dry_run:
            raise LaunchError(
                "--max-instances needs --wait: the variant is registered for autoscaling once "
                "the endpoint is InService"
            )


def _check_serverless(args: argparse.Namespace) -> None:
    """What SageMaker offers instance endpoints only."""
    for flag, value in (
        ("--instance-count", args.instance_count != 1),
        ("--canary-percent", args.canary_percent is not None),
        ("--rollback-alarm", bool(args.rollback_alarm)),
        ("--max-instances", args.max_instances is not None),
    ):
        if value:
            raise LaunchError(
                f"{flag}: not for a serverless endpoint (deployment guardrails and instance "
                "autoscaling apply to instance endpoints; SageMaker updates a serverless one all "
                "at once)"
            )


def serverless_capacity(args: argparse.Namespace) -> endpoint.ServerlessCapacity | None:
    """The serverless flags as capacity; None for an instance endpoint."""
    if args.serverless_memory_mb is None:
        if args.serverless_max_concurrency is not None:
            raise LaunchError("--serverless-max-concurrency needs --serverless-memory-mb")
        return None
    if args.serverless_max_concurrency is None:
        return endpoint.ServerlessCapacity(args.serverless_memory_mb)
    return endpoint.ServerlessCapacity(args.serverless_memory_mb, args.serverless_max_concurrency)


def run(args: argparse.Namespace, aws: Aws) -> None:
    model_data = _model_data(args, aws)
    # Read first (a dry run reads too): an endpoint that exists is updated, never re-created.
    live = endpoint.describe_live(aws, args.endpoint_name)
    serverless = serverless_capacity(args)
    guardrails = endpoint.Guardrails(
        bake_minutes=args.bake_minutes,
        canary_percent=args.canary_percent,
        rollback_alarms=tuple(args.rollback_alarm) if args.rollback_alarm else None,
    )
    plan = None
    if live is not None:
        endpoint.check_updatable(live)
        plan = endpoint.plan_update(
            aws, live, args.instance_type, args.instance_count, serverless, args.max_instances,
            args.wait, guardrails,
        )  # fmt: skip
        compare_gate(args, aws, candidate_model_data=model_data, live_model_data=live.model_data)
    with tempfile.TemporaryDirectory(prefix="endpoint-code-") as tmp:
        endpoint.deploy(
            aws,
            role=resolve_role(args.role),
            model_data=model_data,
            endpoint_name=args.endpoint_name,
            prefix=args.prefix,
            instance_type=args.instance_type,
            wait=args.wait,
            staging_dir=Path(tmp) / "code",
            framework_version=args.framework_version or endpoint.INFERENCE_FRAMEWORK_VERSION,
            py_version=args.py_version or endpoint.INFERENCE_PY_VERSION,
            serverless=serverless,
            model_server_workers=args.model_server_workers,
            instance_count=args.instance_count,
            max_instances=args.max_instances,
            guardrails=guardrails,
            live=live,
            plan=plan,
        )


def _model_data(args: argparse.Namespace, aws: Aws) -> str:
    if args.model_data:
        return args.model_data
    job = _training_job(args)
    if not job:
        raise LaunchError("deploy needs --training-job NAME or --model-data s3://.../model.tar.gz")
    return endpoint.model_data_of(aws, job)


def _training_job(args: argparse.Namespace) -> str | None:
    """The job whose model is deployed; None with --model-data."""
    if args.model_data:
        return None
    return args.training_job or runs.saved_training_job(args)


def compare_gate(
    args: argparse.Namespace, aws: Aws, *, candidate_model_data: str, live_model_data: str | None
) -> None:
    """Score the candidate against the live model before anything is created; raises
    ``LaunchError`` when the candidate is worse. A model from a training job is scored on the
    test split of the job's own dataset unless --compare-data names another."""
    job = _training_job(args)
    if live_model_data and args.compare_data is None and job:
        args.compare_data = endpoint.training_data_of(aws, job)
        if args.compare_data:
            print(f"compare: on the test split of {job}'s dataset, {args.compare_data}")
    compare.gate(args, aws, candidate_model_data, live_model_data)
