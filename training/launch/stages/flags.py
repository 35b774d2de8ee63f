"""Flags more than one stage takes, and what they add up to.

The parsers must come out as ``python -m training.launch STAGE --help`` has always shown them:
every helper adds its flags where it is called, so a stage's order of calls is its help's order.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from training.launch import jobs
from training.launch.aws import Aws, resolve_role
from training.launch.data import default_data_uri
from training.launch.endpoint import DEFAULT_ENDPOINT_NAME


def parse_bool(value: str) -> str:
    lowered = value.lower()
    if lowered in ("true", "1", "yes"):
        return "true"
    if lowered in ("false", "0", "no"):
        return "false"
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def add_role_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--role", help="SageMaker execution role ARN (default: SAGEMAKER_ROLE_ARN)")


def add_endpoint_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--endpoint-name",
        default=os.environ.get("ENDPOINT_NAME", DEFAULT_ENDPOINT_NAME),
        help="the SAM template's EndpointName (default: ENDPOINT_NAME or %(default)s)",
    )


def add_wait_flag(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--wait",
        action=argparse.BooleanOptionalAction,
        default=True,
        help=f"wait until {what} (default: wait)",
    )


def add_job_flags(parser: argparse.ArgumentParser) -> None:
    """Where and on what a training or tuning job runs; ``job_options`` reads them back."""
    parser.add_argument(
        "--data", help="S3 URI of the dataset (default: s3://BUCKET/PREFIX/dogImages)"
    )
    parser.add_argument(
        "--instance-type",
        help="training instance (default: --cpu's, else SAGEMAKER_TRAINING_INSTANCE, "
        "else ml.g4dn.xlarge)",
    )
    parser.add_argument(
        "--cpu", action="store_true", help="train on a CPU instance (ml.m5.2xlarge)"
    )
    parser.add_argument("--framework-version", default=None, help="PyTorch training image (2.8.0)")
    parser.add_argument("--py-version", default=None, help="Python of the image (py312)")


def add_hyperparameter_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per name of ``jobs.HYPERPARAMETER_NAMES``, that name its dest."""
    group = parser.add_argument_group("hyperparameters (train.py's names; override saved values)")
    group.add_argument("--lr", type=float)
    group.add_argument("--eps", type=float)
    group.add_argument("--weight-decay", "--weight_decay", dest="weight_decay", type=float)
    group.add_argument("--batch-size", "--batch_size", dest="batch_size", type=int)
    group.add_argument("--epochs", type=int)
    group.add_argument("--hidden-size", "--hidden_size", dest="hidden_size", type=int)
    group.add_argument("--dropout", type=float)
    group.add_argument(
        "--pretrained",
        type=parse_bool,
        metavar="{true,false}",
        help="ImageNet weights, frozen backbone",
    )
    group.add_argument("--unfreeze-stages", "--unfreeze_stages", dest="unfreeze_stages", type=int)


def hyperparameters(args: argparse.Namespace) -> dict[str, Any]:
    """Only the hyperparameters given on the command line."""
    names = jobs.HYPERPARAMETER_NAMES
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}


def job_options(args: argparse.Namespace, aws: Aws) -> dict[str, Any]:
    """The keyword arguments ``jobs.tune`` and ``jobs.train`` share, from ``add_job_flags``."""
    # An explicit flag beats the environment: --cpu must not be overridden by a GPU default.
    instance = args.instance_type or (
        jobs.CPU_TRAINING_INSTANCE
        if args.cpu
        else os.environ.get("SAGEMAKER_TRAINING_INSTANCE") or jobs.GPU_TRAINING_INSTANCE
    )
    return {
        "role": resolve_role(args.role),
        "data_uri": args.data or default_data_uri(aws.bucket, args.prefix),
        "prefix": args.prefix,
        "instance_type": instance,
        "framework_version": args.framework_version or jobs.TRAINING_FRAMEWORK_VERSION,
        "py_version": args.py_version or jobs.TRAINING_PY_VERSION,
    }
