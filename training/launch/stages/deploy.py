"""Stage 4, ``deploy``: a model to the endpoint the SAM template names. The model: --model-data,
else that of --training-job, else of the job in RUNS_DIR/training_job.json. The endpoint: one
--instance-type instance, or serverless capacity with --serverless-memory-mb.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from training.launch import endpoint
from training.launch.aws import Aws, LaunchError, resolve_role
from training.launch.stages import flags, runs

HELP = "model to an endpoint"


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
    flags.add_wait_flag(parser, "the endpoint is InService")


def check(args: argparse.Namespace) -> None:
    resolve_role(args.role)
    endpoint.model_server_env(args.model_server_workers, serverless_capacity(args) is not None)


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
            serverless=serverless_capacity(args),
            model_server_workers=args.model_server_workers,
        )


def _model_data(args: argparse.Namespace, aws: Aws) -> str:
    if args.model_data:
        return args.model_data
    job = args.training_job or runs.saved_training_job(args)
    if not job:
        raise LaunchError("deploy needs --training-job NAME or --model-data s3://.../model.tar.gz")
    return endpoint.model_data_of(aws, job)
