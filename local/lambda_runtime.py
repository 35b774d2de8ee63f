"""Lambda's asynchronous invocation, on one machine: what moto cannot do without Docker.

``AsyncInvoker`` takes events as Lambda's internal event queue does (``invoke_async`` returns at
once) and runs them on a fixed pool of long-lived execution environments (``local.lambda_worker``
processes), one invocation at a time each, so the pool size *is* the function's reserved
concurrency. It keeps Lambda's async rules: an invocation that raises (or overruns the function's
timeout, which kills its sandbox) is retried up to ``MaximumRetryAttempts`` times after a delay,
unless the event is older than ``MaximumEventAgeInSeconds``; then the on-failure destination gets
the record Lambda sends (requestContext / requestPayload / responseContext / responsePayload).
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import json
import os
import select
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# Lambda waits about a minute, then two, between async retries; locally seconds are enough to
# show the behaviour without making tests wait minutes.
DEFAULT_RETRY_DELAYS_S = (1.0, 2.0)


@dataclass(frozen=True)
class FunctionConfig:
    """What the deployed stack says about the function (names, limits, environment)."""

    function_name: str
    function_arn: str
    handler: str
    code_dir: Path
    environment: Mapping[str, str]
    timeout_s: float = 3.0
    memory_mb: int = 128
    reserved_concurrency: int = 1
    max_retry_attempts: int = 2
    max_event_age_s: float = 21600.0
    on_failure_queue_url: str | None = None


@dataclass
class InvokerStats:
    """Counters, like the function's CloudWatch metrics."""

    accepted: int = 0
    invocations: int = 0
    succeeded: int = 0
    errors: int = 0
    retries: int = 0
    timeouts: int = 0
    sent_to_failure_destination: int = 0
    cold_starts: int = 0
    max_concurrency_seen: int = 0


@dataclass(frozen=True)
class InvocationResult:
    """One finished invocation (what CloudWatch Logs' REPORT line and the response tell)."""

    request_id: str
    attempt: int
    ok: bool
    payload: Any
    error: dict[str, Any] | None
    duration_ms: float | None


@dataclass(order=True)
class _Pending:
    ready_at: float
    seq: int
    request_id: str = field(compare=False)
    event: dict[str, Any] = field(compare=False)
    first_seen: float = field(compare=False)
    attempts: int = field(compare=False, default=0)


class Sandbox:
    """One execution environment: a ``local.lambda_worker`` process, restarted when it dies."""

    def __init__(self, config: FunctionConfig, env: Mapping[str, str], log_path: Path | None):
        self._config = config
        self._env = dict(env)
        self._log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None
        self._results: Any = None
        self._buffer = b""

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        read_fd, write_fd = os.pipe()
        # Not a with-block: the file is either opened here or DEVNULL; it is closed below.
        log = open(self._log_path, "ab") if self._log_path else subprocess.DEVNULL  # noqa: SIM115
        try:
            self._proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "local.lambda_worker",
                    self._config.handler,
                    str(self._config.code_dir),
                    str(write_fd),
                ],
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._env,
                cwd=self._config.code_dir,  # Lambda's working directory is the task root
                pass_fds=(write_fd,),
            )
        finally:
            os.close(write_fd)
            if log is not subprocess.DEVNULL:
                log.close()
        self._results = os.fdopen(read_fd, "rb", buffering=0)
        self._buffer = b""

    def invoke(self, event: dict[str, Any], request_id: str) -> dict[str, Any]:
        """Run one invocation; a timeout or a dead process is an error result, as on Lambda."""
        assert self._proc is not None and self._proc.stdin is not None
        timeout = self._config.timeout_s
        deadline = time.time() + timeout
        task = {"event": event, "request_id": request_id, "deadline_ms": int(deadline * 1000)}
        try:
            self._proc.stdin.write((json.dumps(task) + "\n").encode())
            self._proc.stdin.flush()
        except BrokenPipeError:
            return self._crashed(request_id)
        while b"\n" not in self._buffer:
            remaining = deadline - time.time()
            if remaining <= 0:
                self.stop()
                return {
                    "ok": False,
                    "timed_out": True,
                    "error": {
                        "errorType": "Sandbox.Timedout",
                        "errorMessage": (
                            f"RequestId: {request_id} Error: Task timed out after "
                            f"{timeout:.2f} seconds"
                        ),
                    },
                }
            ready, _, _ = select.select([self._results], [], [], min(remaining, 0.5))
            if ready:
                chunk = self._results.read(65536)
                if not chunk:
                    return self._crashed(request_id)
                self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return json.loads(line)

    def _crashed(self, request_id: str) -> dict[str, Any]:
        code = self._proc.poll() if self._proc else None
        self.stop()
        return {
            "ok": False,
            "error": {
                "errorType": "Runtime.ExitError",
                "errorMessage": f"RequestId: {request_id} Error: Runtime exited ({code})",
            },
        }

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.stdin:
                with contextlib.suppress(OSError):
                    proc.stdin.close()
            try:
                proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                proc.terminate()
                try:
                    proc.wait(timeout=3)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        if self._results is not None:
            self._results.close()
            self._results = None


def lambda_environment(
    config: FunctionConfig, endpoint_urls: Mapping[str, str], region: str
) -> dict[str, str]:
    """The process environment of the function: the stack's variables plus Lambda's own.

    ``endpoint_urls`` are ``AWS_ENDPOINT_URL_*`` values; boto3 honours them natively, so the
    handler reaches moto and the local endpoint without knowing it is local.
    """
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "TZ", "HOME")}
    env.update(
        {
            "AWS_ACCESS_KEY_ID": "testing",  # Lambda injects the role's session credentials
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_REGION": region,
            "AWS_DEFAULT_REGION": region,
            "AWS_EXECUTION_ENV": "AWS_Lambda_python3.12",
            "AWS_LAMBDA_FUNCTION_NAME": config.function_name,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(config.memory_mb),
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{config.function_name}",
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
            "LAMBDA_TASK_ROOT": str(config.code_dir),
            "LOCAL_LAMBDA_FUNCTION_ARN": config.function_arn,
            "_HANDLER": config.handler,
            "PYTHONUNBUFFERED": "1",
            # Lambda's runtime puts the task root first on the path; local.lambda_worker itself
            # comes from the repository's editable install.
            "PYTHONPATH": str(config.code_dir),
            # No X-Ray daemon on loopback (what `sam local` does too).
            "POWERTOOLS_TRACE_DISABLED": "1",
            "AWS_XRAY_CONTEXT_MISSING": "IGNORE_ERROR",
        }
    )
    env.update(config.environment)
    env.update(endpoint_urls)
    return env


def failure_record(
    config: FunctionConfig,
    request_id: str,
    event: dict[str, Any],
    attempts: int,
    condition: str,
    error: dict[str, Any] | None,
) -> dict[str, Any]:
    """The on-failure destination record of an asynchronous invocation, as Lambda sends it."""
    return {
        "version": "1.0",
        "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "requestContext": {
            "requestId": request_id,
            "functionArn": f"{config.function_arn}:$LATEST",
            "condition": condition,
            "approximateInvokeCount": attempts,
        },
        "requestPayload": event,
        "responseContext": {
            "statusCode": 200,
            "executedVersion": "$LATEST",
            "functionError": "Unhandled",
        },
        "responsePayload": error or {},
    }


class AsyncInvoker:
    """Lambda's async invocation queue, retry policy and on-failure destination, for one function.

    ``send_to_failure_destination`` receives each destination record (the stack wires it to the
    failure queue). Use as a context manager; ``close()`` stops every sandbox.
    """

    def __init__(
        self,
        config: FunctionConfig,
        env: Mapping[str, str],
        send_to_failure_destination: Callable[[dict[str, Any]], None],
        *,
        retry_delays_s: tuple[float, ...] = DEFAULT_RETRY_DELAYS_S,
        log_dir: Path | None = None,
    ) -> None:
        self.config = config
        self.stats = InvokerStats()
        self._env = dict(env)
        self._send_failure = send_to_failure_destination
        self._retry_delays = retry_delays_s
        self._log_dir = log_dir
        self._heap: list[_Pending] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._busy = 0
        self._closed = False
        self._threads: list[threading.Thread] = []
        self._sandboxes: list[Sandbox] = []
        self.results: list[InvocationResult] = []  # every invocation, in completion order

    def __enter__(self) -> AsyncInvoker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        if self._log_dir:
            self._log_dir.mkdir(parents=True, exist_ok=True)
        for i in range(max(1, self.config.reserved_concurrency)):
            log = self._log_dir / f"sandbox-{i}.log" if self._log_dir else None
            env = dict(self._env, AWS_LAMBDA_LOG_STREAM_NAME=f"local/[$LATEST]sandbox-{i}")
            sandbox = Sandbox(self.config, env, log)
            self._sandboxes.append(sandbox)
            thread = threading.Thread(
                target=self._run_sandbox, args=(sandbox,), name=f"lambda-sandbox-{i}", daemon=True
            )
            self._threads.append(thread)
            thread.start()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        # Stop the sandboxes first: an invocation still running is abandoned, not awaited (its
        # event is dropped with the rest of the in-memory queue, as when a machine goes away).
        for sandbox in self._sandboxes:
            sandbox.stop()
        for thread in self._threads:
            thread.join(timeout=10)

    def invoke_async(self, event: dict[str, Any]) -> str:
        """Accept an event (``InvocationType=Event``): returns its request id at once."""
        request_id = str(uuid.uuid4())
        now = time.monotonic()
        with self._cond:
            self.stats.accepted += 1
            heapq.heappush(self._heap, _Pending(now, next(self._seq), request_id, event, now))
            self._cond.notify()
        return request_id

    def pending(self) -> int:
        """Events accepted but not finished (queued, waiting for a retry, or running)."""
        with self._cond:
            return len(self._heap) + self._busy

    def wait_idle(self, timeout: float) -> bool:
        """Block until no event is queued, delayed or running; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._heap or self._busy:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, 0.2))
        return True

    def _next(self) -> _Pending | None:
        with self._cond:
            while not self._closed:
                if self._heap and self._heap[0].ready_at <= time.monotonic():
                    item = heapq.heappop(self._heap)
                    self._busy += 1
                    self.stats.max_concurrency_seen = max(
                        self.stats.max_concurrency_seen, self._busy
                    )
                    return item
                wait = self._heap[0].ready_at - time.monotonic() if self._heap else None
                self._cond.wait(wait if wait is None else max(wait, 0.001))
            return None

    def _run_sandbox(self, sandbox: Sandbox) -> None:
        while (item := self._next()) is not None:
            try:
                item.attempts += 1
                result = self._invoke_in(sandbox, item)
                if self._closed:
                    return
                try:
                    self._settle(item, result)
                except Exception as exc:  # e.g. the failure queue is gone while shutting down
                    print(f"lambda-runtime: {item.request_id}: {exc!r}", file=sys.stderr)
            finally:
                with self._cond:
                    self._busy -= 1
                    self._cond.notify_all()

    def _invoke_in(self, sandbox: Sandbox, item: _Pending) -> dict[str, Any]:
        try:
            if not sandbox.running:
                sandbox.start()
                with self._cond:
                    self.stats.cold_starts += 1
            return sandbox.invoke(item.event, item.request_id)
        except Exception as exc:  # a bug of ours must not lose the event: it counts as an error
            sandbox.stop()
            error = {"errorType": "Runtime.Unknown", "errorMessage": repr(exc)}
            return {"ok": False, "error": error}

    def _settle(self, item: _Pending, result: dict[str, Any]) -> None:
        with self._cond:
            self.stats.invocations += 1
            self.results.append(
                InvocationResult(
                    item.request_id,
                    item.attempts,
                    bool(result.get("ok")),
                    result.get("payload"),
                    result.get("error"),
                    result.get("duration_ms"),
                )
            )
            if result.get("ok"):
                self.stats.succeeded += 1
                return
            self.stats.errors += 1
            self.stats.timeouts += bool(result.get("timed_out"))
        retries_done = item.attempts - 1
        if retries_done < self.config.max_retry_attempts:
            delay = self._retry_delays[min(retries_done, len(self._retry_delays) - 1)]
            age_then = time.monotonic() + delay - item.first_seen
            if age_then <= self.config.max_event_age_s:
                with self._cond:
                    self.stats.retries += 1
                    item.ready_at = time.monotonic() + delay
                    item.seq = next(self._seq)
                    heapq.heappush(self._heap, item)
                    self._cond.notify()
                return
            condition = "EventAgeExceeded"
        else:
            condition = "RetriesExhausted"
        record = failure_record(
            self.config, item.request_id, item.event, item.attempts, condition, result.get("error")
        )
        self._send_failure(record)
        with self._cond:
            self.stats.sent_to_failure_destination += 1
