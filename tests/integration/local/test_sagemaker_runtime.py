"""The local SageMaker runtime answers botocore as the real service does."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from local.endpoint.runtime import (
    MAX_REQUEST_BYTES,
    Container,
    ContainerResponse,
    Fault,
    SageMakerRuntimeServer,
)


class EchoContainer:
    """Answers what it was asked (or ``status`` for bodies starting with b"fail"), slowly."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.active = 0
        self.max_active = 0
        self._lock = threading.Lock()

    def ping(self) -> bool:
        return True

    def invoke(
        self,
        body: bytes,
        content_type: str,
        accept: str = "application/json",
        custom_attributes: str | None = None,
    ) -> ContainerResponse:
        with self._lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        time.sleep(self.delay_s)
        with self._lock:
            self.active -= 1
        if body.startswith(b"fail"):
            return ContainerResponse(415, b"unsupported content type: text/plain", "text/plain")
        payload = {"bytes": len(body), "content_type": content_type, "attrs": custom_attributes}
        return ContainerResponse(200, json.dumps(payload).encode())


def runtime_client(url: str, **retries: Any) -> Any:
    return boto3.client(
        "sagemaker-runtime",
        region_name="us-east-1",
        endpoint_url=url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries=retries or {"mode": "standard", "total_max_attempts": 1}),
    )


@pytest.fixture
def server():
    with SageMakerRuntimeServer({"dogs": EchoContainer()}) as running:
        yield running


def test_the_echo_container_is_a_container():
    assert isinstance(EchoContainer(), Container)


def test_invoke_endpoint_passes_body_type_and_custom_attributes(server):
    response = runtime_client(server.url).invoke_endpoint(
        EndpointName="dogs", Body=b"12345", ContentType="image/jpeg", CustomAttributes="top_k=2"
    )
    assert json.loads(response["Body"].read()) == {
        "bytes": 5,
        "content_type": "image/jpeg",
        "attrs": "top_k=2",
    }
    assert response["ContentType"] == "application/json"
    assert response["InvokedProductionVariant"] == "AllTraffic"
    (call,) = server.invocations
    assert (call.endpoint, call.status, call.custom_attributes) == ("dogs", 200, "top_k=2")


def _error(call) -> ClientError:
    with pytest.raises(ClientError) as caught:
        call()
    return caught.value


def test_unknown_endpoint_is_a_validation_error(server):
    error = _error(
        lambda: runtime_client(server.url).invoke_endpoint(EndpointName="cats", Body=b"x")
    )
    assert error.response["Error"]["Code"] == "ValidationError"
    assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert "Endpoint cats of account" in error.response["Error"]["Message"]


def test_a_body_over_the_limit_is_a_validation_error(server):
    body = b"x" * (MAX_REQUEST_BYTES + 1)
    client = runtime_client(server.url)
    error = _error(lambda: client.invoke_endpoint(EndpointName="dogs", Body=body))
    assert error.response["Error"]["Code"] == "ValidationError"
    assert "exceeds" in error.response["Error"]["Message"]


def test_a_container_error_is_a_model_error_with_the_original_status(server):
    error = _error(
        lambda: runtime_client(server.url).invoke_endpoint(EndpointName="dogs", Body=b"fail me")
    )
    assert error.response["Error"]["Code"] == "ModelError"
    assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 424
    assert error.response["OriginalStatusCode"] == 415
    assert error.response["OriginalMessage"] == "unsupported content type: text/plain"
    assert error.response["LogStreamArn"].endswith("/aws/sagemaker/Endpoints/dogs")
    assert "Received client error (415)" in error.response["Error"]["Message"]


@pytest.mark.parametrize(
    "fault",
    [
        Fault.model_not_ready(),
        Fault.service_unavailable(),
        Fault.internal_failure(),
        Fault.throttling(),
        Fault.access_denied(),
        Fault.model_error(503, "busy"),
    ],
    ids=lambda f: f.code + (str(f.original_status) if f.original_status else ""),
)
def test_injected_faults_parse_as_botocore_expects(server, fault):
    server.inject_fault(fault)
    client = runtime_client(server.url)
    error = _error(lambda: client.invoke_endpoint(EndpointName="dogs", Body=b"x"))
    assert error.response["Error"]["Code"] == fault.code
    assert error.response["ResponseMetadata"]["HTTPStatusCode"] == fault.status
    if fault.original_status:
        assert error.response["OriginalStatusCode"] == fault.original_status
    # next call: the fault was for one call only
    assert client.invoke_endpoint(EndpointName="dogs", Body=b"x")["Body"].read()


def test_botocore_retries_the_retryable_shapes_by_itself(server):
    server.inject_fault(Fault.service_unavailable(), times=2)
    client = runtime_client(server.url, mode="standard", max_attempts=3)
    response = client.invoke_endpoint(EndpointName="dogs", Body=b"x")
    assert response["ResponseMetadata"]["RetryAttempts"] == 2
    assert [i.status for i in server.invocations] == [503, 503, 200]


def test_a_fault_can_last_for_a_while(server):
    server.inject_fault(Fault.model_not_ready(), seconds=0.3)
    client = runtime_client(server.url)
    _error(lambda: client.invoke_endpoint(EndpointName="dogs", Body=b"x"))
    time.sleep(0.35)
    assert client.invoke_endpoint(EndpointName="dogs", Body=b"x")["Body"].read()


def test_the_container_contract_ping_and_invocations(server):
    with urllib.request.urlopen(f"{server.url}/ping") as response:
        assert response.status == 200
    request = urllib.request.Request(
        f"{server.url}/invocations",
        data=b"abc",
        headers={"Content-Type": "image/png"},
        method="POST",
    )
    with urllib.request.urlopen(request) as response:
        assert json.loads(response.read())["content_type"] == "image/png"


@pytest.mark.parametrize("workers", [1, 2])
def test_max_workers_bounds_concurrent_model_calls(workers):
    container = EchoContainer(delay_s=0.1)
    with SageMakerRuntimeServer({"dogs": container}, max_workers=workers) as server:
        client = runtime_client(server.url)
        with ThreadPoolExecutor(4) as pool:
            list(
                pool.map(lambda _: client.invoke_endpoint(EndpointName="dogs", Body=b"x"), range(4))
            )
    assert container.max_active == workers


def test_stop_frees_the_port():
    server = SageMakerRuntimeServer({"dogs": EchoContainer()}).start()
    url = server.url
    server.stop()
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{url}/ping", timeout=2)
