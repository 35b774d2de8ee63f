"""Stage 7, ``teardown``: delete the endpoint and everything made for it.

Stage 7, ``teardown``: delete the endpoint and everything made for it: its autoscaling
registration, every endpoint config ``deploy`` made for it (the live one and those kept for
``rollback``) and their models."""

from __future__ import annotations

import argparse

from training.launch import endpoint
from training.launch.aws import Aws
from training.launch.stages import flags

HELP = "delete endpoint, its configs, models, autoscaling"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    flags.add_endpoint_flag(parser)


def run(args: argparse.Namespace, aws: Aws) -> None:
    endpoint.teardown(aws, endpoint_name=args.endpoint_name)
