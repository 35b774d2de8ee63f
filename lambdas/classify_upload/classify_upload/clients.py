"""Every AWS client the function uses, built in one place.

Nothing here hard-codes an endpoint: boto3 honours ``AWS_ENDPOINT_URL_S3``,
``AWS_ENDPOINT_URL_DYNAMODB`` and ``AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME``, which is how the offline
stack and the tests point the same code at moto and at the local endpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config

# botocore's standard retries (3 attempts, backoff) suit S3 and DynamoDB; nothing retries above.
STORAGE_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5, read_timeout=30
)
# The endpoint is retried by ``endpoint``'s own loop only: one botocore attempt per call.
# The container has 60 s to answer, so the read timeout leaves it that plus a margin.
ENDPOINT_CONFIG = Config(
    retries={"mode": "standard", "total_max_attempts": 1}, connect_timeout=5, read_timeout=70
)


@dataclass(frozen=True)
class Clients:
    s3: Any
    sagemaker_runtime: Any
    table: Any


def make_clients(table_name: str, session: boto3.session.Session | None = None) -> Clients:
    session = session or boto3.session.Session()
    return Clients(
        s3=session.client("s3", config=STORAGE_CONFIG),
        sagemaker_runtime=session.client("sagemaker-runtime", config=ENDPOINT_CONFIG),
        table=session.resource("dynamodb", config=STORAGE_CONFIG).Table(table_name),
    )
