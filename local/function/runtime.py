"""Lambda's execution environments, on one machine: what moto cannot run without Docker.

``Sandbox`` is one execution environment: a long-lived ``local.function.worker`` process that
imports the handler once (the cold start) and then runs one invocation at a time, synchronously,
as Lambda's runtime does. An invocation that overruns the function's timeout has its sandbox
killed (``Sandbox.Timedout``); one whose process dies reports ``Runtime.ExitError``; either way the
next invocation starts a fresh sandbox. ``lambda_environment`` is the process environment
Lambda gives the function. What invokes the sandboxes is ``local.function.event_source`` (the SQS
event source mapping), as on AWS.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

WORKER = Path(__file__).resolve().parent / "worker.py"


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
    # The interpreter of the runtime: python3.12 with sam build's output (local.function.build),
    # or this one with the source folder where python3.12 cannot be had.
    python: str = sys.executable


class Sandbox:
    """One execution environment: a ``local.function.worker`` process, restarted when it dies."""

    def __init__(self, config: FunctionConfig, env: Mapping[str, str], log_path: Path | None):
        self._config = config
        self._env = dict(env)
        self._log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None
        self._results: Any = None
        self._buffer = b""
        # The exit status of the last worker process stopped: 0 when it ended as asked.
        self.last_exit_code: int | None = None

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
                    self._config.python,
                    "-P",  # only PYTHONPATH (the task root) and the interpreter's own packages
                    str(WORKER),
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
            self.last_exit_code = proc.returncode
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
            # Lambda's runtime puts the task root first on the path; the worker script runs by
            # its path (standard library only), so nothing of this repository is importable.
            "PYTHONPATH": str(config.code_dir),
            # No X-Ray daemon on loopback (what `sam local` does too).
            "POWERTOOLS_TRACE_DISABLED": "1",
            "AWS_XRAY_CONTEXT_MISSING": "IGNORE_ERROR",
        }
    )
    env.update(config.environment)
    env.update(endpoint_urls)
    return env
