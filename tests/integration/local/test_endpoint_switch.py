"""A model update on the local SageMaker runtime is a blue/green switch: clients invoking all the
while see no error, each answer comes from the container serving when the request arrived, and
the old container, once drained, holds nothing and is never called again."""

from __future__ import annotations

import json
import random
import threading
import time
from dataclasses import dataclass

import boto3
import pytest
from botocore.config import Config

from local.endpoint.runtime import ContainerResponse, SageMakerRuntimeServer

ENDPOINT = "dogs"
CLIENTS = 8
SWITCHES = 5


class SlowModel:
    """A stand-in model named ``name`` that takes 10-60 ms per request and refuses to be called
    once closed (as a stopped worker would: a 503)."""

    def __init__(self, name: str, release: threading.Event | None = None) -> None:
        self.name = name
        self.release = release  # when given, each request waits for it
        self.active = 0
        self.max_active = 0
        self.requests = 0
        self.closed = False
        self.called_after_close = 0
        self._lock = threading.Lock()

    def ping(self) -> bool:
        return not self.closed

    def invoke(
        self,
        body: bytes,
        content_type: str,
        accept: str = "application/json",
        custom_attributes: str | None = None,
    ) -> ContainerResponse:
        with self._lock:
            if self.closed:
                self.called_after_close += 1
                return ContainerResponse(503, b"the model worker is stopped", "text/plain")
            self.active += 1
            self.requests += 1
            self.max_active = max(self.max_active, self.active)
        try:
            if self.release is not None:
                self.release.wait(10)
            else:
                time.sleep(random.uniform(0.01, 0.06))
        finally:
            with self._lock:
                self.active -= 1
        return ContainerResponse(200, json.dumps({"model": self.name}).encode())

    def close(self) -> None:
        with self._lock:
            self.closed = True


def runtime_client(url: str):
    return boto3.client(
        "sagemaker-runtime",
        region_name="us-east-1",
        endpoint_url=url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"mode": "standard", "total_max_attempts": 1}),
    )


@dataclass(frozen=True)
class Answer:
    sent: float
    received: float
    model: str | None  # None: an error
    error: str | None = None


def invoke_continuously(url: str, stop: threading.Event, answers: list[Answer]) -> None:
    client = runtime_client(url)
    while not stop.is_set():
        sent = time.monotonic()
        try:
            response = client.invoke_endpoint(EndpointName=ENDPOINT, Body=b"dog")
            model = json.loads(response["Body"].read())["model"]
            answers.append(Answer(sent, time.monotonic(), model))
        except Exception as exc:  # every error is a failure of the switch: keep it to show
            answers.append(Answer(sent, time.monotonic(), None, repr(exc)))


def test_clients_invoking_through_several_switches_see_no_error_and_no_drained_model():
    models = [SlowModel(f"model-{n}") for n in range(SWITCHES + 1)]
    answers: list[list[Answer]] = [[] for _ in range(CLIENTS)]
    # When each model started serving (switch called) and stopped (switch returned).
    serving_from = {models[0].name: 0.0}
    serving_until: dict[str, float] = {}
    drains: list[float] = []
    stop = threading.Event()
    with SageMakerRuntimeServer({ENDPOINT: models[0]}, max_workers=2) as server:
        clients = [
            threading.Thread(target=invoke_continuously, args=(server.url, stop, answers[n]))
            for n in range(CLIENTS)
        ]
        for client in clients:
            client.start()
        try:
            for new in models[1:]:
                time.sleep(0.4)
                serving_from[new.name] = time.monotonic()
                old = server.switch(ENDPOINT, new)
                serving_until[old.name] = time.monotonic()
                assert server.in_flight(old) > 0  # the switch really caught requests in flight
                started = time.perf_counter()
                assert server.drain(old, timeout=10)
                drains.append(time.perf_counter() - started)
                assert (server.in_flight(old), old.active) == (0, 0)
                old.close()
            time.sleep(0.4)
        finally:
            stop.set()
            for client in clients:
                client.join(timeout=10)

    every = [answer for per_client in answers for answer in per_client]
    assert [a.error for a in every if a.error] == []
    assert [m.called_after_close for m in models] == [0] * len(models)
    for answer in every:
        # Answered by the model serving when the request arrived: it began serving before the
        # answer came, and it was switched away from only after the request was sent.
        assert serving_from[answer.model] < answer.received
        assert answer.sent < serving_until.get(answer.model, float("inf")), answer
    assert all(m.requests > 0 for m in models)
    # Each fleet has its own two slots: neither ever ran more than two requests at once.
    assert max(m.max_active for m in models) <= 2
    print(
        f"\n{len(every)} answers through {SWITCHES} switches by {CLIENTS} clients, 0 errors; "
        f"drains took {', '.join(f'{d * 1000:.0f}' for d in drains)} ms"
    )


def test_new_requests_do_not_wait_for_the_old_models_slots():
    release = threading.Event()
    old, new = SlowModel("old", release), SlowModel("new")
    with SageMakerRuntimeServer({ENDPOINT: old}, max_workers=1) as server:
        held = threading.Thread(
            target=lambda: runtime_client(server.url).invoke_endpoint(
                EndpointName=ENDPOINT, Body=b"dog"
            )
        )
        held.start()
        deadline = time.monotonic() + 5
        while old.active == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.switch(ENDPOINT, new) is old

        # The old model's only slot is taken; the new model has its own.
        response = runtime_client(server.url).invoke_endpoint(EndpointName=ENDPOINT, Body=b"dog")
        assert json.loads(response["Body"].read()) == {"model": "new"}
        assert not server.drain(old, timeout=0.1)  # still answering its request
        assert server.in_flight(old) == 1

        release.set()
        assert server.drain(old, timeout=5)
        held.join(timeout=5)
    assert (old.requests, new.requests) == (1, 1)


def test_switching_an_endpoint_the_server_does_not_serve_is_refused():
    with SageMakerRuntimeServer({ENDPOINT: SlowModel("a")}) as server:
        with pytest.raises(KeyError):
            server.switch("cats", SlowModel("b"))
        assert set(server.endpoints) == {ENDPOINT}
