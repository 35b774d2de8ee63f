"""The serving reproduction.

The serving reproduction: the real model server of the SageMaker PyTorch inference image,
started by the toolkit's own entry point, and the endpoint contract over HTTP.

What the container does, and what this copies (sagemaker-pytorch-inference, TorchServe):
- the model is the archive the SDK repacks on deploy (the training artifact plus ``code/``,
  taken from ``dry_run.model_deployment``), untarred as ``/opt/ml/model``;
- the container's environment is the CreateModel request's (``SAGEMAKER_PROGRAM`` ...);
- ``serve`` runs ``sagemaker_pytorch_serving_container.serving.main()``, which installs
  ``code/requirements.txt`` with pip, writes ``/etc/sagemaker-ts.properties`` and starts TorchServe
  (Java frontend, Python workers) on ``SAGEMAKER_BIND_TO_PORT`` (8080 in the container).
Here ``/opt/ml`` moves with ``SAGEMAKER_BASE_DIR`` and every port is a free one (TorchServe reads
``TS_*`` variables, the image's properties enable that), so nothing else on the machine clashes.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import importlib.util
import io
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import psutil
from PIL import Image

from dog_breeds.serving.image_decode import MAX_BODY_BYTES
from dog_breeds.serving.inference import CUSTOM_ATTRIBUTES_HEADER, IMAGE_CONTENT_TYPES, JSON
from dog_breeds.serving.runtimes import MODEL_SERVER_WORKERS_ENV
from local.parity import dry_run, envs

SERVING_DISTRIBUTIONS = [
    "torch",
    "torchvision",
    "sagemaker-pytorch-inference",  # carries sagemaker_inference inside it
    "torchserve",
    "torch-model-archiver",
    "numpy",
    "openvino",
]
BAD_IMAGES = envs.REPO_ROOT / "tests" / "integration" / "serving" / "bad_images.py"
SERVE = "from sagemaker_pytorch_serving_container import serving; serving.main()"
TS_NAMESPACE = "org.pytorch.serve.ModelServer"
START_TIMEOUT_S = 600
LATENCY_REQUESTS = 30
# A worker's model_fn logs its choice, e.g. "... W-9000-model_1.0-stdout MODEL_LOG - serving
# runtime: openvino-int8 (int8 IR matches the artifact; ...; 1 threads, 0.87 s)".
WORKER_RUNTIME_LINE = re.compile(
    r"\b(W-\d+)-\S+ MODEL_LOG - serving runtime: (\S+) \([^\n]*?(\d+) threads, "
)


# ---------------------------------------------------------------------------- bodies
def jpeg(size: tuple[int, int] = (500, 375), seed: int = 0, quality: int = 90) -> bytes:
    """A photo-sized JPEG of smooth colour and some noise (what an upload looks like to a codec)."""
    rng = np.random.default_rng(seed)
    w, h = size
    gradient = np.linspace(0, 255, w, dtype=np.float32)[None, :, None] * np.ones((h, 1, 3))
    pixels = np.clip(gradient + rng.normal(0, 20, (h, w, 3)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def jpeg_near_limit() -> bytes:
    """A real JPEG just under the 6 MiB InvokeEndpoint limit: noise compresses badly (about
    2 bytes a pixel at quality 100), so a square of about 1,780 px."""
    side = 1820
    while True:
        pixels = np.random.default_rng(1).integers(0, 256, (side, side, 3), dtype=np.uint8)
        buf = io.BytesIO()
        Image.fromarray(pixels, "RGB").save(buf, "JPEG", quality=100)
        body = buf.getvalue()
        if len(body) <= MAX_BODY_BYTES:
            return body
        side -= 10


def png(size: tuple[int, int] = (120, 90)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (30, 120, 200)).save(buf, "PNG")
    return buf.getvalue()


# ---------------------------------------------------------------------------- the server
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Answer:
    status: int
    body: bytes
    seconds: float

    def json(self) -> Any:
        return json.loads(self.body)

    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


def _process_name(proc: psutil.Process) -> str:
    """``java`` (the frontend), ``worker`` (a model server worker), else the command's name."""
    try:
        cmdline = " ".join(proc.cmdline())
    except psutil.Error:
        return "?"
    if "model_service_worker" in cmdline:
        return "worker"
    return "java" if TS_NAMESPACE in cmdline else proc.name()


# What a crashed Python process leaves in a log (faulthandler, the kernel's word via a shell).
CRASH_MARKERS = ("Fatal Python error", "Segmentation fault", "core dumped")


def check_shutdown(shutdown: dict[str, Any], logs: str, checks: Checks) -> None:
    """Every process ended on SIGTERM, the workers among them, and nothing logged a crash."""
    checks.expect("shutdown: nothing had to be killed", not shutdown["killed"], str(shutdown))
    checks.expect(
        "shutdown: the workers ended on SIGTERM",
        "worker" in shutdown["ended_on_sigterm"],
        str(shutdown),
    )
    crashes = [line for line in logs.splitlines() if any(m in line for m in CRASH_MARKERS)]
    checks.expect("shutdown: no crash in the logs", not crashes, " | ".join(crashes[:3]))


class ModelServer:
    """The toolkit's ``serving.main()`` in the serving venv, and every process it starts."""

    def __init__(self, python: Path, opt_ml: Path, container_env: dict[str, str], cwd: Path):
        self.port = free_port()
        self.cwd = cwd
        cwd.mkdir(parents=True, exist_ok=True)
        env = envs.clean_environ(
            **container_env,
            SAGEMAKER_BASE_DIR=str(opt_ml),
            SAGEMAKER_BIND_TO_PORT=str(self.port),
            TS_METRICS_ADDRESS=f"http://127.0.0.1:{free_port()}",
            TS_GRPC_INFERENCE_PORT=str(free_port()),
            TS_GRPC_MANAGEMENT_PORT=str(free_port()),
        )
        env["PATH"] = f"{python.parent}{os.pathsep}{env['PATH']}"  # torchserve, as on the image
        self.log_path = cwd / "serve.log"
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [str(python), "-c", SERVE],
            cwd=cwd,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.peak_rss = 0
        self.shutdown: dict[str, Any] = {}  # filled by stop()
        self._sampling = True
        self._sampler = threading.Thread(target=self._sample_rss, daemon=True)
        self._sampler.start()

    # -- processes
    def processes(self) -> list[psutil.Process]:
        """The toolkit process, TorchServe's Java frontend (which the ``torchserve`` command
        detaches, so found by its command line and working directory) and its workers."""
        roots = []
        with contextlib.suppress(psutil.Error):
            roots.append(psutil.Process(self.process.pid))
        for proc in psutil.process_iter(["cmdline", "cwd"]):
            cmdline = proc.info.get("cmdline") or []
            if TS_NAMESPACE in cmdline and proc.info.get("cwd") == str(self.cwd):
                roots.append(proc)
        found: dict[int, psutil.Process] = {}
        for root in roots:
            found[root.pid] = root
            with contextlib.suppress(psutil.Error):
                found.update({c.pid: c for c in root.children(recursive=True)})
        return list(found.values())

    def rss(self) -> int:
        total = 0
        for proc in self.processes():
            with contextlib.suppress(psutil.Error):
                total += proc.memory_info().rss
        return total

    def _sample_rss(self) -> None:
        while self._sampling:
            self.peak_rss = max(self.peak_rss, self.rss())
            time.sleep(0.25)

    def stop(self) -> None:
        """SIGTERM to the toolkit (it forwards it to TorchServe), then anything left, by pid.
        ``shutdown`` records how that went: how many processes ended on the signal, which had to
        be killed, the toolkit's exit status."""
        self._sampling = False
        survivors = self.processes()
        names = {proc.pid: _process_name(proc) for proc in survivors}
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGTERM)
        gone, alive = psutil.wait_procs(survivors, timeout=30)
        for proc in alive:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        psutil.wait_procs(alive, timeout=10)
        self._log.close()
        self.shutdown = {
            "ended_on_sigterm": sorted(names[proc.pid] for proc in gone),
            "killed": sorted(names[proc.pid] for proc in alive),
            "toolkit_exit_code": self.process.wait(timeout=10),
        }

    # -- HTTP
    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 120,
    ) -> Answer:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        started = time.perf_counter()
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return Answer(response.status, response.read(), time.perf_counter() - started)
        finally:
            conn.close()

    def invoke(self, body: bytes, content_type: str = "image/jpeg", **headers: str) -> Answer:
        return self.request(
            "POST",
            "/invocations",
            body,
            {"Content-Type": content_type, "Accept": JSON, **headers},
        )

    def wait_ready(self, timeout: float = START_TIMEOUT_S) -> float:
        started = time.perf_counter()
        while time.perf_counter() - started < timeout:
            if self.process.poll() is not None:
                raise RuntimeError(f"serving.main() exited {self.process.returncode}")
            with contextlib.suppress(OSError, http.client.HTTPException):
                if self.request("GET", "/ping", timeout=5).status == 200:
                    return time.perf_counter() - started
            time.sleep(1)
        raise RuntimeError(f"/ping did not answer 200 within {timeout:.0f} s")

    def logs(self) -> str:
        """Everything the server logged; complete only once it has stopped (TorchServe's log
        files are written through buffers)."""
        paths = [self.log_path, *sorted((self.cwd / "logs").glob("*.log"))]
        return "\n".join(p.read_text(errors="replace") for p in paths if p.is_file())

    def log_tail(self, lines: int = 8) -> str:
        texts = [self.log_path.read_text(errors="replace")]
        model_log = self.cwd / "logs" / "model_log.log"
        if model_log.is_file():
            texts.append(model_log.read_text(errors="replace"))
        return " | ".join("\n".join(texts).strip().splitlines()[-lines:])


@contextlib.contextmanager
def model_server(
    python: Path, opt_ml: Path, container_env: dict[str, str], cwd: Path
) -> Iterator[ModelServer]:
    server = ModelServer(python, opt_ml, container_env, cwd)
    try:
        yield server
    finally:
        server.stop()


# ---------------------------------------------------------------------------- the contract
class Checks:
    """Named pass/fail results; each failure keeps what the server answered."""

    def __init__(self) -> None:
        self.passed = 0
        self.problems: list[str] = []

    def expect(self, name: str, ok: bool, detail: str = "") -> bool:
        if ok:
            self.passed += 1
        else:
            self.problems.append(f"{name}: {detail[:300]}")
        return ok


def predictions_ok(answer: Answer, expected_count: int | None = None) -> tuple[bool, str]:
    if answer.status != 200:
        return False, f"status {answer.status}: {answer.text()[:200]}"
    try:
        payload = answer.json()
        count = len(payload["predictions"])
    except (ValueError, KeyError, TypeError):
        return False, f"not the predictions JSON: {answer.text()[:200]}"
    if expected_count is not None and count != expected_count:
        return False, f"{count} predictions, wanted {expected_count}"
    return True, ""


def test_cases() -> ModuleType:
    """The serving tests' own bad and odd bodies (``tests/integration/serving/bad_images.py``),
    loaded by path: ``tests`` is no installed package (and site-packages may hold another)."""
    spec = importlib.util.spec_from_file_location("parity_bad_images", BAD_IMAGES)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def run_contract(server: ModelServer, checks: Checks, num_classes: int) -> dict[str, Any]:
    """Every accepted content type, top_k, the bad-input matrix, a 6 MiB body, concurrency."""
    cases = test_cases()
    good = jpeg()

    def alive() -> bool:
        return server.invoke(good).status == 200

    full = min(5, num_classes)
    first = server.invoke(good)
    checks.expect("first invocation", *predictions_ok(first, full))
    runtime = first.json().get("model", {}).get("runtime") if first.status == 200 else None

    for content_type in sorted(IMAGE_CONTENT_TYPES):
        body = png() if content_type == "image/png" else good
        checks.expect(
            f"content type {content_type}", *predictions_ok(server.invoke(body, content_type), full)
        )
    as_json = json.dumps({"image": base64.b64encode(good).decode(), "top_k": 2}).encode()
    checks.expect("application/json with top_k 2", *predictions_ok(server.invoke(as_json, JSON), 2))
    header = {CUSTOM_ATTRIBUTES_HEADER: "trace=abc;top_k=3"}
    checks.expect("top_k=3 in custom attributes", *predictions_ok(server.invoke(good, **header), 3))
    refused = server.request(
        "POST", "/invocations", good, {"Content-Type": "image/jpeg", "Accept": "text/csv"}
    )
    checks.expect(
        "Accept text/csv is 406", refused.status == 406, f"{refused.status} {refused.text()[:200]}"
    )

    for name, (body, content_type) in cases.odd_but_valid_images().items():
        checks.expect(f"odd image {name}", *predictions_ok(server.invoke(body, content_type), full))

    for case in cases.bad_requests():
        answer = server.invoke(case.body, case.content_type)
        checks.expect(
            f"bad input {case.name}",
            answer.status == case.status and case.reason in answer.text(),
            f"wanted {case.status} {case.reason!r}, got {answer.status}: {answer.text()[:200]}",
        )
        checks.expect(f"worker answers after {case.name}", alive(), "no 200 after it")

    big = jpeg_near_limit()
    checks.expect(f"{len(big)}-byte JPEG (6 MiB limit)", *predictions_ok(server.invoke(big), full))

    answers: list[Answer] = []
    threads = [
        threading.Thread(target=lambda: answers.append(server.invoke(good))) for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    checks.expect(
        "two concurrent requests",
        len(answers) == 2 and all(predictions_ok(a, full)[0] for a in answers),
        str([a.status for a in answers]),
    )

    latencies = [server.invoke(good).seconds for _ in range(LATENCY_REQUESTS)]
    return {
        "runtime": runtime,
        "serving_p50_ms": round(1000 * statistics.median(latencies), 1),
        "big_body_bytes": len(big),
    }


def worker_runtimes(model_log: str) -> dict[str, dict[str, Any]]:
    """TorchServe worker id -> the runtime its model_fn chose and its OpenVINO threads (a
    restarted worker's last load counts)."""
    return {
        worker: {"runtime": runtime, "threads": int(threads)}
        for worker, runtime, threads in WORKER_RUNTIME_LINE.findall(model_log)
    }


def check_workers(
    workers: dict[str, dict[str, Any]], container_env: dict[str, str], cpus: int, checks: Checks
) -> None:
    """TorchServe started the workers the model's environment asks for (unset: one per CPU),
    and their threads together do not oversubscribe the cores."""
    expected = int(container_env.get(MODEL_SERVER_WORKERS_ENV, cpus))
    threads = sum(w["threads"] for w in workers.values())
    checks.expect(
        "model server workers and their threads",
        len(workers) == expected and threads <= cpus,
        f"{len(workers)} workers (expected {expected}), {threads} threads on {cpus} CPUs",
    )


# ---------------------------------------------------------------------------- the reproduction
def reproduce(python: Path, workdir: Path, trained_tar: Path) -> dict[str, Any]:
    report: dict[str, Any] = {"ok": False, **envs.versions(python, SERVING_DISTRIBUTIONS)}
    report["java"] = java_version()
    checks = Checks()
    report["problems"] = checks.problems
    if report["java"] is None:
        checks.problems.append("no java on PATH: TorchServe's frontend needs Java 11 or newer")
        return report

    captured = dry_run.model_deployment(trained_tar, workdir)
    container = captured.one("CreateModel")["PrimaryContainer"]
    report["image"] = container["Image"]
    opt_ml = workdir / "serving" / "opt" / "ml"
    (opt_ml / "model").mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(captured.uploads.body("model.tar.gz"))) as tar:
        tar.extractall(opt_ml / "model", filter="data")
    classes = json.loads((opt_ml / "model" / "classes.json").read_text())

    with model_server(
        python, opt_ml, container.get("Environment", {}), workdir / "serving" / "cwd"
    ) as server:
        try:
            report["startup_seconds"] = round(server.wait_ready(), 1)
        except RuntimeError as exc:
            checks.problems.append(f"start: {exc}: {server.log_tail()}")
            return report
        checks.expect("/ping", server.request("GET", "/ping").status == 200)
        report.update(run_contract(server, checks, len(classes)))
        report["serving_peak_rss_mib"] = round(server.peak_rss / 2**20)
        if checks.problems:
            report["server_log_tail"] = server.log_tail()
    # Read once the server has stopped and its logs are flushed.
    logs = server.logs()
    report["workers"] = worker_runtimes(logs)
    report["shutdown"] = server.shutdown
    check_shutdown(server.shutdown, logs, checks)
    check_workers(
        report["workers"], container.get("Environment", {}), len(os.sched_getaffinity(0)), checks
    )
    report["openvino"] = envs.versions(python, ["openvino"])["openvino"]  # code/requirements.txt
    report["pip_check"] = envs.pip_check(python)
    report["checks_passed"] = checks.passed
    report["ok"] = not checks.problems
    return report


def java_version() -> str | None:
    try:
        done = subprocess.run(["java", "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    first = (done.stderr or done.stdout).strip().splitlines()
    return first[0] if done.returncode == 0 and first else None
