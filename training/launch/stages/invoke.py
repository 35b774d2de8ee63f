"""Stage 5, ``invoke``: classify a local image on the endpoint and print the top-k breeds."""

from __future__ import annotations

import argparse
from pathlib import Path

from training.launch import endpoint
from training.launch.aws import Aws, LaunchError
from training.launch.stages import flags

HELP = "classify a local image"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    flags.add_endpoint_flag(parser)
    parser.add_argument("image", type=Path, help="a .jpg, .jpeg, .png or .webp file")
    parser.add_argument(
        "--top-k", type=int, default=5, help="breeds to print (default: %(default)s)"
    )


def check(args: argparse.Namespace) -> None:
    if args.top_k < 1:
        raise LaunchError("--top-k must be at least 1")


def run(args: argparse.Namespace, aws: Aws) -> None:
    endpoint.invoke(aws, endpoint_name=args.endpoint_name, image=args.image, top_k=args.top_k)
