"""The serving container on this machine, as TorchServe runs the real one.

``endpoint_inference.py`` is driven by the SageMaker PyTorch inference toolkit's own
``HandlerService``, as TorchServe drives it in the real container.

``ToolkitContainer`` runs one worker process (``local.endpoint.worker``, one TorchServe worker)
whose ``sys.path`` holds the artifact's ``code/`` and the installed distributions only, never this
repository: what the endpoint serves is what ``model.tar.gz`` ships, so a module the packaging
forgot fails here as it would in the container. Requests are served one at a time, like one
TorchServe worker; a worker that dies is answered 503 and started again, as TorchServe does.

``WorkerPool`` is the endpoint as TorchServe runs it: several such workers of one model, a request
going to an idle one. On an ``ml.t2.medium`` TorchServe starts one worker per vCPU, two
(``ENDPOINT_WORKERS``), and each gives OpenVINO its share of the cores.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import queue
import select
import shutil
import subprocess
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from dog_breeds import contract
from dog_breeds.artifact.serving_code import ENTRY_POINT, write_code_dir
from local.endpoint.runtime import ContainerResponse

WORKER = Path(__file__).resolve().parent / "worker.py"
PROGRAM = ENTRY_POINT
MODEL_SERVER_WORKERS_ENV = contract.MODEL_SERVER_WORKERS_ENV
# A model load on a loaded machine (OpenVINO compile, torch import) can take a while.
START_TIMEOUT_S = 300.0
# TorchServe's default on the endpoint's instance: one worker per vCPU of an ml.t2.medium.
ENDPOINT_WORKERS = 2


class WorkerFailed(RuntimeError):
    """The worker could not load the model (its error names why)."""


class ToolkitContainer:
    """``ping()`` / ``invoke(...)`` over the toolkit's HandlerService for one model directory.

    ``model_dir`` is an extracted artifact. Its ``code/`` is what is served; a model directory
    without one (straight from training, not yet packaged) gets the ``code/`` that packaging would
    write, in a temporary directory. ``close()`` stops the worker. ``endpoint_workers`` is how many
    workers the endpoint runs in all (``WorkerPool``): the worker takes that share of the cores.
    """

    def __init__(
        self, model_dir: Path, *, log_path: Path | None = None, endpoint_workers: int = 1
    ) -> None:
        self.model_dir = Path(model_dir).resolve()
        self.endpoint_workers = endpoint_workers
        self._tmp: Path | None = None
        packaged = self.model_dir / "code"
        if (packaged / PROGRAM).is_file():
            self.code_dir = packaged
        else:
            self._tmp = Path(tempfile.mkdtemp(prefix="model-code-"))
            self.code_dir = write_code_dir(self._tmp / "code")
        self._log_path = log_path
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._results: Any = None
        self._buffer = b""
        self.restarts = 0
        self.requests = 0  # requests this container answered (each worker's share of a pool's)
        # The exit status of the last worker process stopped: 0 when it ended as asked.
        self.last_exit_code: int | None = None
        self._start()

    # -- the worker process ------------------------------------------------------------------

    def _environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        env.update(PYTHONPATH=str(self.code_dir), SAGEMAKER_PROGRAM=PROGRAM, PYTHONUNBUFFERED="1")
        # As the toolkit tells TorchServe's workers: each takes its share of the cores
        # (runtimes.threads_per_worker), every core when it is the endpoint's only worker.
        env[MODEL_SERVER_WORKERS_ENV] = str(self.endpoint_workers)
        return env

    def _start(self) -> None:
        read_fd, write_fd = os.pipe()
        # Not a with-block: the file is either opened here or absent; it is closed below, once the
        # worker holds its own descriptor.
        log = open(self._log_path, "ab") if self._log_path else None  # noqa: SIM115
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-P", str(WORKER), str(self.model_dir), str(write_fd)],
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=subprocess.STDOUT if log else None,
                env=self._environment(),
                cwd=self.code_dir,
                pass_fds=(write_fd,),
            )
        finally:
            os.close(write_fd)
            if log is not None:
                log.close()
        self._results = os.fdopen(read_fd, "rb", buffering=0)
        self._buffer = b""
        ready = self._read_line(START_TIMEOUT_S)
        if not ready or not ready.get("ready"):
            self._stop()
            error = ready.get("error") if ready else "the worker exited while loading"
            raise WorkerFailed(f"model worker for {self.model_dir}: {error}")

    def _read_line(self, timeout_s: float | None) -> dict[str, Any] | None:
        """The worker's next JSON line; None if it died (or the timeout passed)."""
        assert self._results is not None
        while b"\n" not in self._buffer:
            ready, _, _ = select.select([self._results], [], [], timeout_s)
            if not ready:
                return None
            chunk = self._results.read(1 << 20)
            if not chunk:
                return None
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return json.loads(line)

    def _stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.stdin:
                with contextlib.suppress(OSError):
                    proc.stdin.close()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            self.last_exit_code = proc.returncode
        if self._results is not None:
            self._results.close()
            self._results = None

    def close(self) -> None:
        with self._lock:
            self._stop()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> ToolkitContainer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the container's contract -----------------------------------------------------------

    def ping(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def invoke(
        self,
        body: bytes,
        content_type: str,
        accept: str = "application/json",
        custom_attributes: str | None = None,
    ) -> ContainerResponse:
        request = {
            "body": base64.b64encode(body).decode(),
            "content_type": content_type,
            "accept": accept,
            "custom_attributes": custom_attributes,
        }
        with self._lock:
            self.requests += 1
            if not self.ping():
                self.restarts += 1
                self._start()
            assert self._proc is not None and self._proc.stdin is not None
            try:
                self._proc.stdin.write((json.dumps(request) + "\n").encode())
                self._proc.stdin.flush()
                answer = self._read_line(None)
            except (BrokenPipeError, OSError):
                answer = None
            if answer is None:  # the worker died mid-request: TorchServe answers 503
                self._stop()
                return ContainerResponse(503, b"the model worker died", "text/plain")
        return ContainerResponse(
            answer["status"], base64.b64decode(answer["body"]), answer["content_type"]
        )


class WorkerPool:
    """One endpoint served by ``workers`` ``ToolkitContainer`` processes, as TorchServe serves one
    model: each request goes to an idle worker, or waits for one. The workers load at once; if one
    cannot, the others are stopped and its error is raised. A worker that dies is started again by
    its own ``invoke``, the others serving meanwhile.
    """

    def __init__(
        self, model_dir: Path, workers: int = ENDPOINT_WORKERS, *, log_path: Path | None = None
    ) -> None:
        if workers < 1:
            raise ValueError(f"an endpoint needs at least one worker, not {workers}")
        with ThreadPoolExecutor(max_workers=workers) as pool:
            starts = [
                pool.submit(
                    ToolkitContainer, model_dir, log_path=log_path, endpoint_workers=workers
                )
                for _ in range(workers)
            ]
        self.workers: list[ToolkitContainer] = []
        errors: list[BaseException] = []
        for start in starts:
            error = start.exception()
            if error is None:
                self.workers.append(start.result())
            else:
                errors.append(error)
        if errors:
            self.close()
            raise errors[0]
        self._idle: queue.SimpleQueue[ToolkitContainer] = queue.SimpleQueue()
        for worker in self.workers:
            self._idle.put(worker)

    @property
    def restarts(self) -> int:
        return sum(worker.restarts for worker in self.workers)

    @property
    def worker_exit_codes(self) -> list[int | None]:
        """Each worker's last stopped process's exit status (None: never stopped)."""
        return [worker.last_exit_code for worker in self.workers]

    def ping(self) -> bool:
        return any(worker.ping() for worker in self.workers)

    def invoke(
        self,
        body: bytes,
        content_type: str,
        accept: str = "application/json",
        custom_attributes: str | None = None,
    ) -> ContainerResponse:
        worker = self._idle.get()
        try:
            return worker.invoke(body, content_type, accept, custom_attributes)
        finally:
            self._idle.put(worker)

    def close(self) -> None:
        for worker in self.workers:
            worker.close()

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
