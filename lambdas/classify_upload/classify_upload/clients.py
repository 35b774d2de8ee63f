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
# SageMaker gives a real-time (or serverless) container 60 s to answer; the read timeout leaves it
# that plus a margin for the network. These constants are the one source of the call's bound: the
# handler's deadline (``endpoint.Deadline``) starts an endpoint call only if this much time is left.
MODEL_ANSWER_LIMIT_S = 60
ENDPOINT_CONNECT_TIMEOUT_S = 5
ENDPOINT_READ_TIMEOUT_S = MODEL_ANSWER_LIMIT_S + 10
ENDPOINT_CALL_MAX_S = ENDPOINT_CONNECT_TIMEOUT_S + ENDPOINT_READ_TIMEOUT_S
ENDPOINT_CONFIG = Config(
    retries={"mode": "standard", "total_max_attempts": 1},
    connect_timeout=ENDPOINT_CONNECT_TIMEOUT_S,
    read_timeout=ENDPOINT_READ_TIMEOUT_S,
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
