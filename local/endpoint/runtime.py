"""A local SageMaker runtime: ``InvokeEndpoint`` over real HTTP, answered by in-process containers.

``SageMakerRuntimeServer`` speaks ``POST /endpoints/<name>/invocations`` as the SageMaker runtime
does, with its status codes and error shapes, so botocore's request building, error parsing and
retry logic run unchanged against it (point ``AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME`` at ``.url``).
It also speaks the serving container's own contract, ``GET /ping`` and ``POST /invocations``
(first endpoint). A container is any object with ``ping()`` and ``invoke(...)`` (``Container``).

It runs in the process that starts it (``local.stack``: the main one), each request in a thread
of its own, calling the containers in that process. Concurrency is bounded per container by
``max_workers``, as one ml.t2.medium instance serves one request at a time per worker; faults can
be injected for tests (``inject_fault``).

A model update is a blue/green switch, as SageMaker's ``UpdateEndpoint`` does it: ``switch(name,
new)`` routes every request that arrives after it returns to ``new`` and returns the old
container, which finishes the requests it already holds; ``drain(old, timeout)`` waits until it
holds none, after which the caller closes it. Choosing a container and counting a request in
flight on it are one step under the server's lock, so no request can reach a container after
``drain`` found it idle: nothing is refused or answered 5xx because of a switch. Each container
has its own ``max_workers`` slots (SageMaker runs both fleets while it switches), so for the
moment of a switch up to twice as many requests run at once as either fleet serves.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Protocol, runtime_checkable
from urllib.parse import unquote

from dog_breeds import contract

MAX_REQUEST_BYTES = contract.MAX_REQUEST_BYTES
ACCOUNT_ID = "123456789012"
REGION = "us-east-1"
CUSTOM_ATTRIBUTES_HEADER = contract.CUSTOM_ATTRIBUTES_HEADER


@dataclass(frozen=True)
class ContainerResponse:
    status: int
    body: bytes
    content_type: str = "application/json"


@runtime_checkable
class Container(Protocol):
    """What the server needs from a serving container (the model helper's ToolkitContainer)."""

    def ping(self) -> bool: ...

    def invoke(
        self,
        body: bytes,
        content_type: str,
        accept: str = "application/json",
        custom_attributes: str | None = None,
    ) -> ContainerResponse: ...


@dataclass(frozen=True)
class Fault:
    """An error the runtime answers instead of calling the container."""

    code: str
    status: int
    message: str
    original_status: int | None = None  # ModelError only
    delay_s: float = 0.0  # answer after this long (to exercise client read timeouts)

    @classmethod
    def model_not_ready(cls) -> Fault:
        return cls("ModelNotReadyException", 429, "Model is not ready yet. Try again.")

    @classmethod
    def throttling(cls) -> Fault:
        return cls("ThrottlingException", 400, "Rate exceeded")

    @classmethod
    def service_unavailable(cls) -> Fault:
        return cls("ServiceUnavailable", 503, "Service is unavailable. Try again.")

    @classmethod
    def internal_failure(cls) -> Fault:
        return cls("InternalFailure", 500, "An internal failure occurred.")

    @classmethod
    def model_error(cls, original_status: int, message: str = "model failed") -> Fault:
        return cls("ModelError", 424, message, original_status=original_status)

    @classmethod
    def access_denied(cls) -> Fault:
        return cls(
            "AccessDeniedException",
            400,
            "User is not authorized to perform: sagemaker:InvokeEndpoint",
        )


@dataclass(frozen=True)
class Invocation:
    """What one InvokeEndpoint call looked like (for tests and the demo's statistics)."""

    endpoint: str
    body_bytes: int
    content_type: str
    custom_attributes: str | None
    status: int
    error_code: str | None
    seconds: float


class _FaultSchedule:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[list] = []  # [fault, remaining_count | None, until | None, endpoint]

    def add(self, fault: Fault, times: int | None, seconds: float | None, endpoint: str | None):
        if times is None and seconds is None:
            times = 1
        until = time.monotonic() + seconds if seconds is not None else None
        with self._lock:
            self._entries.append([fault, times, until, endpoint])

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def take(self, endpoint: str) -> Fault | None:
        now = time.monotonic()
        with self._lock:
            self._entries = [
                e
                for e in self._entries
                if (e[1] is None or e[1] > 0) and (e[2] is None or e[2] > now)
            ]
            for entry in self._entries:
                if entry[3] is not None and entry[3] != endpoint:
                    continue
                if entry[1] is not None:
                    entry[1] -= 1
                return entry[0]
        return None


class _Fleet:
    """One container as the server serves it: its slots and the requests it holds."""

    def __init__(self, container: Container, max_workers: int) -> None:
        self.container = container
        self.slots = threading.BoundedSemaphore(max_workers)
        self.in_flight = 0  # guarded by the server's ``_routing`` condition


class SageMakerRuntimeServer:
    """A threaded HTTP server standing in for ``runtime.sagemaker.<region>.amazonaws.com``.

    ``endpoints`` maps each endpoint's name to its container; change it with ``switch`` (an
    assignment to ``endpoints[name]`` also routes new requests, without the drain's guarantee).
    """

    def __init__(
        self,
        endpoints: Mapping[str, Container],
        host: str = "127.0.0.1",
        port: int = 0,
        max_workers: int = 1,
    ) -> None:
        self.endpoints = dict(endpoints)
        self.max_workers = max_workers
        # Guards which container serves each endpoint and every fleet's in-flight count; drains
        # wait on it.
        self._routing = threading.Condition()
        self._fleets: dict[int, _Fleet] = {}  # by id(container), holding the container
        self._faults = _FaultSchedule()
        self._log_lock = threading.Lock()
        self.invocations: list[Invocation] = []
        self._httpd = _HTTPServer((host, port), self)
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------
    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> SageMakerRuntimeServer:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._httpd.serve_forever,
                kwargs={"poll_interval": 0.05},
                name="sagemaker-runtime",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=10)
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> SageMakerRuntimeServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- model updates ---------------------------------------------------------------------
    def switch(
        self, endpoint_name: str, container: Container, max_workers: int | None = None
    ) -> Container:
        """Route ``endpoint_name``'s requests to ``container`` from now on; returns the container
        that served it, which still finishes the requests it holds (``drain``, then close it).
        ``max_workers`` is the new container's slots (default: the server's). ``KeyError`` for an
        endpoint the server does not serve."""
        with self._routing:
            old = self.endpoints[endpoint_name]
            self._fleet(container, max_workers)
            self.endpoints[endpoint_name] = container
        return old

    def drain(self, container: Container, timeout: float | None = None) -> bool:
        """Wait until ``container`` holds no request; False if it still does after ``timeout``
        seconds. Once it is idle and serves no endpoint, the server forgets it: no new request
        can reach it, and the caller may close it."""
        with self._routing:
            idle = self._routing.wait_for(lambda: self._in_flight(container) == 0, timeout)
            if idle and not any(c is container for c in self.endpoints.values()):
                self._fleets.pop(id(container), None)
            return idle

    def in_flight(self, container: Container) -> int:
        """How many requests ``container`` holds now (waiting for a slot or being answered)."""
        with self._routing:
            return self._in_flight(container)

    def _in_flight(self, container: Container) -> int:
        fleet = self._fleets.get(id(container))
        return fleet.in_flight if fleet is not None and fleet.container is container else 0

    def _fleet(self, container: Container, max_workers: int | None = None) -> _Fleet:
        """``container``'s fleet, made on first use (call with ``_routing`` held)."""
        fleet = self._fleets.get(id(container))
        if fleet is None or fleet.container is not container:
            fleet = _Fleet(container, max_workers or self.max_workers)
            self._fleets[id(container)] = fleet
        return fleet

    def _take(self, endpoint_name: str | None) -> _Fleet | None:
        """The fleet now serving ``endpoint_name`` (None: the first endpoint), with this request
        counted in flight on it; None when there is no such endpoint. Release with ``_done``."""
        with self._routing:
            if endpoint_name is None:
                container = next(iter(self.endpoints.values()), None)
            else:
                container = self.endpoints.get(endpoint_name)
            if container is None:
                return None
            fleet = self._fleet(container)
            fleet.in_flight += 1
            return fleet

    def _done(self, fleet: _Fleet) -> None:
        with self._routing:
            fleet.in_flight -= 1
            if fleet.in_flight == 0:
                self._routing.notify_all()

    # -- fault injection -------------------------------------------------------------------
    def inject_fault(
        self,
        fault: Fault,
        times: int | None = None,
        seconds: float | None = None,
        endpoint: str | None = None,
    ) -> None:
        """Answer ``fault`` to the next ``times`` calls, or to every call for ``seconds``
        (default: the next call only); ``endpoint`` limits it to one endpoint."""
        self._faults.add(fault, times, seconds, endpoint)

    def clear_faults(self) -> None:
        self._faults.clear()

    def reset_log(self) -> None:
        with self._log_lock:
            self.invocations.clear()

    # -- request handling ------------------------------------------------------------------
    def _record(self, invocation: Invocation) -> None:
        with self._log_lock:
            self.invocations.append(invocation)

    def _call_endpoint(
        self, endpoint_name: str | None, body: bytes, headers: Mapping[str, str]
    ) -> ContainerResponse | None:
        """The answer of the container serving ``endpoint_name`` now (None: the first endpoint),
        in one of its slots; None when there is no such endpoint."""
        fleet = self._take(endpoint_name)
        if fleet is None:
            return None
        try:
            with fleet.slots:
                return fleet.container.invoke(
                    body,
                    headers.get("Content-Type") or "application/octet-stream",
                    headers.get("Accept") or "application/json",
                    headers.get(CUSTOM_ATTRIBUTES_HEADER),
                )
        except Exception as exc:  # a crashing container is the model's 500, not ours
            return ContainerResponse(500, f"container raised {exc!r}".encode(), "text/plain")
        finally:
            self._done(fleet)


class _HTTPServer(ThreadingHTTPServer):
    """The listening socket; each request runs ``_Handler`` in a thread of its own, which finds
    the ``SageMakerRuntimeServer`` it answers for as ``self.server.runtime``."""

    daemon_threads = True  # a request still in a container must not keep the process alive

    def __init__(self, address: tuple[str, int], runtime: SageMakerRuntimeServer) -> None:
        super().__init__(address, _Handler)
        self.runtime = runtime


class _Handler(BaseHTTPRequestHandler):
    """One HTTP request: the container contract (``/ping``, ``/invocations``) or InvokeEndpoint
    (``/endpoints/<name>/invocations``), answered with the SageMaker runtime's status codes and
    error shapes."""

    protocol_version = "HTTP/1.1"
    server: _HTTPServer

    def log_message(self, format: str, *args: object) -> None:
        pass  # quiet: tests and the demo print what matters

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(
        self, status: int, body: bytes, content_type: str, extra: Mapping[str, str] = {}
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("x-amzn-RequestId", f"local-{time.monotonic_ns()}")
        for name, value in extra.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _send_error(self, fault: Fault, endpoint: str) -> None:
        payload: dict[str, object] = {"message": fault.message}
        if fault.original_status is not None:
            payload = _model_error_payload(fault, endpoint)
        self._send(
            fault.status,
            json.dumps(payload).encode(),
            "application/json",
            {"x-amzn-ErrorType": f"{fault.code}:http://internal.amazon.com/coral/"},
        )

    def do_GET(self) -> None:
        if self.path.rstrip("/") == "/ping":
            healthy = all(c.ping() for c in list(self.server.runtime.endpoints.values()))
            self._send(200 if healthy else 503, b"", "application/json")
        else:
            self._send(404, b"", "text/plain")

    def do_POST(self) -> None:
        runtime = self.server.runtime
        body = self._read_body()
        path = self.path.split("?", 1)[0]
        parts = path.strip("/").split("/")
        if path.rstrip("/") == "/invocations":
            # The container contract: what SageMaker itself calls inside the instance.
            answer = runtime._call_endpoint(None, body, self.headers)
            if answer is None:
                self._send(503, b"no model", "text/plain")
            else:
                self._send(answer.status, answer.body, answer.content_type)
            return
        if len(parts) != 3 or parts[0] != "endpoints" or parts[2] != "invocations":
            self._send(404, b"", "text/plain")
            return
        self._invoke_endpoint(unquote(parts[1]), body)

    def _invoke_endpoint(self, name: str, body: bytes) -> None:
        runtime = self.server.runtime
        started = time.perf_counter()
        content_type = self.headers.get("Content-Type") or "application/octet-stream"
        attributes = self.headers.get(CUSTOM_ATTRIBUTES_HEADER)

        def record(status: int, code: str | None) -> None:
            seconds = time.perf_counter() - started
            runtime._record(
                Invocation(name, len(body), content_type, attributes, status, code, seconds)
            )

        def refuse(fault: Fault) -> None:
            if fault.delay_s:
                time.sleep(fault.delay_s)
            # Logged before answering: a caller that got the answer sees the log entry.
            record(fault.status, fault.code)
            self._send_error(fault, name)

        # An invalid request never reaches the fault schedule (it would use up an injection).
        fault = _validation_fault(name, name in runtime.endpoints, body) or runtime._faults.take(
            name
        )
        if fault is not None:
            refuse(fault)
            return
        answer = runtime._call_endpoint(name, body, self.headers)
        if answer is None:  # removed since: as if it had never been there
            refuse(_not_found(name))
            return
        if answer.status != 200:
            message = answer.body.decode("utf-8", "replace")
            record(424, "ModelError")
            self._send_error(Fault.model_error(answer.status, message), name)
            return
        extra = {"x-Amzn-Invoked-Production-Variant": "AllTraffic"}
        record(200, None)
        self._send(200, answer.body, answer.content_type, extra)


def _validation_fault(name: str, exists: bool, body: bytes) -> Fault | None:
    """What the SageMaker runtime rejects before any model sees the request."""
    if not exists:
        return _not_found(name)
    if len(body) > MAX_REQUEST_BYTES:
        return Fault(
            "ValidationError",
            400,
            f"Request body of {len(body)} bytes exceeds the limit of {MAX_REQUEST_BYTES} bytes.",
        )
    return None


def _not_found(name: str) -> Fault:
    return Fault("ValidationError", 400, f"Endpoint {name} of account {ACCOUNT_ID} not found.")


def _model_error_payload(fault: Fault, endpoint: str) -> dict[str, object]:
    """The body of a ModelError: the container's own status and message, wrapped as AWS does."""
    assert fault.original_status is not None
    side = "client" if fault.original_status < 500 else "server"
    return {
        "ErrorCode": f"{side.upper()}_ERROR_FROM_MODEL",
        "Message": (
            f"Received {side} error ({fault.original_status}) from primary with message "
            f'"{fault.message}". See https://{REGION}.console.aws.amazon.com/'
            f"cloudwatch/home?region={REGION}#logEventViewer:group="
            f"/aws/sagemaker/Endpoints/{endpoint} in account {ACCOUNT_ID} "
            "for more information."
        ),
        "OriginalStatusCode": fault.original_status,
        "OriginalMessage": fault.message,
        "LogStreamArn": (
            f"arn:aws:logs:{REGION}:{ACCOUNT_ID}:log-group:/aws/sagemaker/Endpoints/{endpoint}"
        ),
    }
