"""Stage ``rollback``: the endpoint back to its previous endpoint config, in one command.

"Previous": the newest endpoint config made for this endpoint (``deploy`` tags each one with the
endpoint's name) that is older than the live one; or the one named with --to. ``deploy`` keeps the
live config and the two before it, with their models, so a rollback has somewhere to go. The
switch is an UpdateEndpoint: the endpoint keeps its name and serves throughout.
"""

from __future__ import annotations

import argparse

from training.launch import endpoint
from training.launch.aws import Aws
from training.launch.stages import flags

HELP = "endpoint back to its previous model"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    flags.add_endpoint_flag(parser)
    parser.add_argument(
        "--to",
        metavar="CONFIG",
        help="this endpoint config (default: the newest one older than the live one)",
    )
    flags.add_wait_flag(parser, "the endpoint is InService on the previous config")


def check(args: argparse.Namespace) -> None:
    endpoint.check_endpoint_name(args.endpoint_name)


def run(args: argparse.Namespace, aws: Aws) -> None:
    endpoint.rollback(aws, endpoint_name=args.endpoint_name, to=args.to, wait=args.wait)
