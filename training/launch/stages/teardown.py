"""Stage 7, ``teardown``: delete the endpoint, its config and its model."""

from __future__ import annotations

import argparse

from training.launch import endpoint
from training.launch.aws import Aws
from training.launch.stages import flags

HELP = "delete endpoint, config, model"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    flags.add_endpoint_flag(parser)


def run(args: argparse.Namespace, aws: Aws) -> None:
    endpoint.teardown(aws, endpoint_name=args.endpoint_name)
