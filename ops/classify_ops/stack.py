"""The deployed stack as the commands see it: AWS clients, and the stack's outputs.

Every name a command needs (queues, table, bucket) comes from the stack's CloudFormation
``Outputs``, so the commands work for any stack name and never guess physical names.
``--endpoint-url`` points every client at one endpoint: the offline stack's moto server.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from classify_ops.errors import OpsError, error_code

# Operator commands may page through a large table: let botocore back off on throttling longer.
CLIENT_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 8}, connect_timeout=5, read_timeout=60
)


@dataclass(frozen=True)
class Connection:
    """Where the commands talk to: a boto3 session and an optional endpoint for every client."""

    session: boto3.session.Session
    endpoint_url: str | None = None

    def client(self, service: str) -> Any:
        return self.session.client(service, endpoint_url=self.endpoint_url, config=CLIENT_CONFIG)

    @property
    def region(self) -> str:
        return self.session.region_name or ""


def connect(region: str | None, profile: str | None, endpoint_url: str | None) -> Connection:
    """A session from the usual sources (profile, environment); a region is required."""
    session = boto3.session.Session(profile_name=profile, region_name=region)
    if not session.region_name:
        raise OpsError("no AWS region: pass --region or set AWS_REGION")
    return Connection(session, endpoint_url)


@dataclass(frozen=True)
class Stack:
    """A deployed stack's name, region and outputs (``OutputKey`` -> ``OutputValue``)."""

    name: str
    region: str
    outputs: Mapping[str, str]

    def require(self, *keys: str) -> None:
        """Fail with one line naming every missing output: not this project's stack, or one
        deployed from an older template."""
        missing = [k for k in keys if not self.outputs.get(k)]
        if missing:
            raise OpsError(
                f"stack {self.name!r} has no output {', '.join(missing)}: is it this project's "
                "stack, deployed from the current template.yaml (sam deploy)?"
            )

    def __getitem__(self, key: str) -> str:
        self.require(key)
        return self.outputs[key]


def read_stack(connection: Connection, name: str) -> Stack:
    """The stack's outputs from ``DescribeStacks``; an unknown stack is one clear line."""
    cloudformation = connection.client("cloudformation")
    try:
        stacks = cloudformation.describe_stacks(StackName=name)["Stacks"]
    except ClientError as exc:
        message = exc.response.get("Error", {}).get("Message", "")
        if error_code(exc) == "ValidationError" and "does not exist" in message:
            raise OpsError(
                f"no stack {name!r} in {connection.region} (check --stack and --region)"
            ) from None
        raise
    if not stacks:
        raise OpsError(f"no stack {name!r} in {connection.region} (check --stack and --region)")
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
    return Stack(name=name, region=connection.region, outputs=outputs)


def queue_name(arn_or_url: str) -> str:
    """The last part of a queue's ARN (``...:name``) or URL (``.../name``), for messages."""
    return arn_or_url.rstrip("/").replace(":", "/").rsplit("/", 1)[-1]
