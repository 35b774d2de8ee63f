"""One Lambda execution environment ("sandbox"): a long-lived process that runs one handler.

Started by ``local.function.runtime`` as ``python -P local/function/worker.py HANDLER CODE_DIR
RESULT_FD`` with the function's environment. It imports the handler once (the cold start), then
reads one invocation per line from stdin (JSON: event, request id, deadline) and writes one result
per line to RESULT_FD. The handler's stdout/stderr are the function's log stream, so they never
carry the protocol. Standard library only: nothing here may differ from what the handler sees
on Lambda.

Each invocation ends with Lambda's ``REPORT`` line, ``Max Memory Used`` included: the peak
resident memory of this sandbox so far (``max_memory_used_mb``), which is what Lambda reports
too, since an execution environment keeps its memory between invocations. The result
carries it as ``max_memory_used_mb``, so callers can show that a guard (the size limit) kept a
large object out of memory.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import resource
import signal
import sys
import time
import traceback
from typing import Any


class LambdaContext:
    """The attributes and method of the context object Lambda's Python runtime passes."""

    def __init__(self, request_id: str, deadline_ms: int) -> None:
        self.function_name = os.environ["AWS_LAMBDA_FUNCTION_NAME"]
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        self.invoked_function_arn = os.environ["LOCAL_LAMBDA_FUNCTION_ARN"]
        self.memory_limit_in_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        self.aws_request_id = request_id
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME", "")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME", "")
        self.identity = None
        self.client_context = None
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int(self._deadline_ms - time.time() * 1000))


def _error_payload(exc: BaseException) -> dict[str, Any]:
    """The shape Lambda's Python runtime reports for an unhandled exception."""
    return {
        "errorMessage": str(exc),
        "errorType": type(exc).__name__,
        "requestId": "",
        # Lambda lists the handler's frames only, not its runtime's.
        "stackTrace": traceback.format_list(traceback.extract_tb(exc.__traceback__)[1:]),
    }


def max_memory_used_mb() -> int:
    """This process's peak resident memory so far, in MB as Lambda's REPORT line counts it.

    Linux's ``VmHWM`` (the high-water mark of this process's own memory) rather than
    ``getrusage``'s ``ru_maxrss``: across fork and exec, ``ru_maxrss`` keeps the parent's peak,
    so a sandbox started by a 600 MB test process would report 600 MB before doing anything.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) // 1024  # kB
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Elsewhere: ru_maxrss is kilobytes on Linux, bytes on macOS.
    return int(peak / (1024 * 1024 if sys.platform == "darwin" else 1024))


def report_line(
    request_id: str, elapsed_ms: float, memory_size_mb: str, init_ms: float | None
) -> str:
    """Lambda's REPORT line (``Init Duration`` only on a cold start's first invocation)."""
    fields = [
        f"REPORT RequestId: {request_id}",
        f"Duration: {elapsed_ms:.2f} ms",
        f"Billed Duration: {math.ceil(elapsed_ms)} ms",
        f"Memory Size: {memory_size_mb} MB",
        f"Max Memory Used: {max_memory_used_mb()} MB",
    ]
    if init_ms is not None:
        fields.append(f"Init Duration: {init_ms:.2f} ms")
    return "\t".join(fields)


def main(argv: list[str]) -> int:
    handler_spec, code_dir, result_fd = argv[0], argv[1], int(argv[2])
    # Ctrl-C in the terminal reaches the whole process group: the parent decides when we stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.chdir(code_dir)  # already the cwd and first on PYTHONPATH, as LAMBDA_TASK_ROOT on Lambda
    results = os.fdopen(result_fd, "w", encoding="utf-8", buffering=1)

    # Lambda's first log line of a sandbox names the runtime's Python.
    major, minor = sys.version_info[:2]
    print(f"INIT_START Runtime Version: python:{major}.{minor} ({sys.executable})", flush=True)
    module_name, _, function_name = handler_spec.rpartition(".")
    init_started = time.monotonic()
    try:
        handler = getattr(importlib.import_module(module_name), function_name)
        init_error = None
    except Exception as exc:  # Runtime.ImportModuleError: every invocation fails with it
        handler, init_error = None, _error_payload(exc)
        init_error["errorType"] = "Runtime.ImportModuleError"
        traceback.print_exc()
    init_ms: float | None = (time.monotonic() - init_started) * 1000
    memory_size_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")

    for line in sys.stdin:
        task = json.loads(line)
        request_id = task["request_id"]
        print(f"START RequestId: {request_id} Version: $LATEST", flush=True)
        started = time.monotonic()
        if init_error is not None:
            result = {"ok": False, "error": init_error}
        else:
            try:
                payload = handler(task["event"], LambdaContext(request_id, task["deadline_ms"]))
                json.dumps(payload)  # Lambda must serialise the return value too
                result = {"ok": True, "payload": payload}
            except Exception as exc:
                traceback.print_exc()
                result = {"ok": False, "error": _error_payload(exc)}
                result["error"]["requestId"] = request_id
        elapsed_ms = (time.monotonic() - started) * 1000
        sys.stdout.flush()
        sys.stderr.flush()
        print(f"END RequestId: {request_id}", flush=True)
        print(report_line(request_id, elapsed_ms, memory_size_mb, init_ms), flush=True)
        init_ms = None
        result["duration_ms"] = elapsed_ms
        result["max_memory_used_mb"] = max_memory_used_mb()
        results.write(json.dumps(result, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
