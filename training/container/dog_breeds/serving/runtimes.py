"""CPU serving runtimes for the classifier: which engine runs the network at the endpoint.

Interface (used by endpoint_inference.model_fn):
- ``select_runtime(model_dir, build_torch_model) -> Runtime``
A Runtime takes a float32 NCHW batch, already normalised, and returns float32 logits (N, classes).

The CPU form (``dog_breeds.artifact.cpu_form``) is an OpenVINO IR in ``model_dir/openvino/``
with ``export.json``, recording which weights it was made from, exported at the end of training
(``dog_breeds.training.cpu_export``). Training may add an int8 IR beside it (NNCF post-training
quantization, ``dog_breeds.training.quantize``), described by export.json's ``"int8"`` record
(``Int8Record``): shipped only when its validation top-1 stayed within the allowed drop of fp32's.

``select_runtime`` serves, in order: the int8 IR (when its record says shipped, names this
artifact and its files are there; unless ``DOG_BREEDS_FORCE_FP32=1``), the fp32 IR (when
export.json matches the artifact), eager PyTorch. Each runtime's ``name`` (``openvino-int8``,
``openvino``, ``pytorch``) is what the response's model identity reports; it logs which it chose
and why. Serving needs only ``openvino`` for either IR: nothing here imports nncf.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from dog_breeds import contract
from dog_breeds.artifact.cpu_form import (
    EXPORT_META,
    INT8_IR_XML,
    IR_XML,
    OPENVINO_DIR,
    Int8Record,
    artifact_identity,
    read_export_meta,
)

log = logging.getLogger(__name__)

# Set to 1/true on the endpoint to serve the fp32 IR even where an int8 one was shipped.
FORCE_FP32_ENV = "DOG_BREEDS_FORCE_FP32"
MODEL_SERVER_WORKERS_ENV = contract.MODEL_SERVER_WORKERS_ENV


class Runtime(Protocol):
    name: str

    def __call__(self, batch: np.ndarray) -> np.ndarray: ...


class TorchRuntime:
    """Plain eager PyTorch fp32 on the CPU: the fallback that always works."""

    name = "pytorch"

    def __init__(self, model: torch.nn.Module, reason: str = ""):
        self.model = model.eval()
        self.reason = reason

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return self.model(torch.from_numpy(batch)).float().numpy()


def force_fp32(environ: Mapping[str, str] = os.environ) -> bool:
    return environ.get(FORCE_FP32_ENV, "").strip().lower() in ("1", "true", "yes")


def int8_unusable_reason(
    record: Int8Record | None, identity: dict[str, Any], ir_dir: Path, forced_fp32: bool
) -> str | None:
    """Why the int8 IR must not serve (the fp32 one then does), or None when it may."""
    if forced_fp32:
        return f"{FORCE_FP32_ENV} is set"
    if record is None:
        return f"{EXPORT_META} has no int8 record"
    if not record.shipped:
        return f"int8 not shipped at export: {record.reason}"
    for key in ("model_version", "weights_sha256_12"):
        current = identity.get(key)
        if current is not None and getattr(record, key) != current:
            return f"int8 IR is stale: {key} {getattr(record, key)!r} != artifact's {current!r}"
    xml = ir_dir / (record.file or INT8_IR_XML)
    if not xml.is_file() or not xml.with_suffix(".bin").is_file():
        return f"no int8 IR at {xml}"
    return None


@functools.cache
def openvino_core() -> Any:
    """The process's one OpenVINO ``Core``, alive until the process exits: every compile and read
    goes through it.

    Each ``Core`` that compiles for the CPU loads its own instance of the CPU plugin, and each
    instance installs an alternate signal stack on the thread that created it (OpenVINO's
    ``ov::intel_cpu::SigAltStackSetup``), putting the previous one back and unmapping its own when
    destroyed. Two instances destroyed in the order they were made (not the reverse) leave the
    thread's signal stack pointing at unmapped memory. Python installs every signal handler with
    ``SA_ONSTACK``, so the next handled signal (SIGCHLD, as a DataLoader worker exits) cannot be
    delivered and the kernel kills the process with SIGSEGV: train.py exited 139 after its summary
    that way. One Core makes one plugin instance, destroyed only at exit.
    """
    import openvino as ov

    return ov.Core()


class OpenVINORuntime:
    """An OpenVINO IR compiled for this machine's CPU: latency hint, fp32 execution of whatever
    is not quantized, and all of this worker's share of the cores (all with one worker)."""

    def __init__(
        self,
        xml_path: Path,
        image_size: int,
        num_threads: int | None = None,
        precision: str = "f32",
    ):
        import openvino as ov

        self.precision = precision
        self.name = "openvino" if precision == "f32" else f"openvino-{precision}"
        self.num_threads = num_threads or threads_per_worker()
        config = {
            ov.properties.hint.performance_mode: ov.properties.hint.PerformanceMode.LATENCY,
            # On CPUs with AVX512_BF16/AMX the CPU plugin otherwise runs in bf16 by default, which
            # moves logits by ~0.25 on ResNet50; serving must give PyTorch fp32's answers. An int8
            # IR's quantized layers run in int8 regardless; the rest stays fp32.
            ov.properties.hint.inference_precision: ov.Type.f32,
            ov.properties.inference_num_threads: self.num_threads,
            # Each TorchServe worker is its own process and would pin its threads to the same
            # first cores: two one-thread workers then share one core (measured: 188 ms a
            # request each instead of 91). The kernel's scheduler spreads unpinned threads.
            ov.properties.hint.enable_cpu_pinning: False,
        }
        self._compiled = openvino_core().compile_model(str(xml_path), "CPU", config)
        self._request = self._compiled.create_infer_request()
        # One infer request serves one call at a time; a threaded server may call concurrently.
        self._lock = threading.Lock()
        self.reason = ""
        # The first inference allocates and primes kernels: pay it at load time, not on a request.
        self(np.zeros((1, 3, image_size, image_size), dtype=np.float32))

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        with self._lock:
            result = self._request.infer({0: batch})
            # Copy out: the result's buffer belongs to the infer request and is reused.
            return np.array(result[0], dtype=np.float32, copy=True)


def available_cpus() -> int:
    """CPUs this process may run on: the affinity mask, capped by a cgroup v2 CPU quota."""
    try:
        count = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        count = os.cpu_count() or 1
    with contextlib.suppress(OSError, ValueError):
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            count = min(count, max(1, math.ceil(int(quota) / int(period))))
    return max(1, count)


def threads_per_worker() -> int:
    """The available CPUs shared among the model server's worker processes, each of which loads
    its own copy of the model: more threads than cores makes every request slower.

    The worker count is ``SAGEMAKER_MODEL_SERVER_WORKERS`` where set (``deploy
    --model-server-workers``); unset, TorchServe starts one worker per CPU, so each gets one
    thread.
    """
    cpus = available_cpus()
    try:
        workers = int(os.environ.get(MODEL_SERVER_WORKERS_ENV, str(cpus)))
    except ValueError:
        workers = cpus
    return max(1, cpus // max(1, workers))


def _stale_reason(meta: dict[str, Any], identity: dict[str, Any]) -> str | None:
    """Why the exported IR must not serve this artifact, or None when it matches."""
    for key, current in identity.items():
        if current is not None and meta.get(key) != current:
            return f"OpenVINO IR is stale: {key} {meta.get(key)!r} != artifact's {current!r}"
    if identity["model_version"] is None and identity["weights_sha256_12"] is None:
        return "artifact has no config.json model_version nor model.pth to check the IR against"
    return None


def _compile(
    xml_path: Path, image_size: int, precision: str, started: float, why: str
) -> OpenVINORuntime | str:
    """The compiled runtime, or why OpenVINO could not compile it."""
    try:
        runtime = OpenVINORuntime(xml_path, image_size, precision=precision)
    except Exception as exc:
        reason = f"OpenVINO could not compile the {precision} IR ({type(exc).__name__}: {exc})"
        log.warning("serving runtime: %s", reason)
        return reason
    runtime.reason = f"{why}; {runtime.num_threads} threads"
    log.info(
        "serving runtime: %s (%s, %.2f s)",
        runtime.name,
        runtime.reason,
        time.perf_counter() - started,
    )
    return runtime


def _openvino_runtime(
    ir_dir: Path, meta: dict[str, Any], identity: dict[str, Any], started: float
) -> OpenVINORuntime | str:
    """The int8 IR where it may serve and compiles, else the fp32 IR; or why neither compiled."""
    record = Int8Record.from_meta(meta)
    size = identity["image_size"]
    no_int8 = int8_unusable_reason(record, identity, ir_dir, force_fp32())
    if record is not None and no_int8 is None:
        drop = f"validation top-1 drop {record.drop_points} points <= {record.max_drop_points}"
        why = f"int8 IR matches the artifact; {drop}"
        chosen = _compile(ir_dir / (record.file or INT8_IR_XML), size, "int8", started, why)
        if not isinstance(chosen, str):
            return chosen
        no_int8 = chosen
    log.info("serving runtime: not int8 (%s)", no_int8)
    why = f"IR matches the artifact; fp32 ({no_int8})"
    return _compile(ir_dir / IR_XML, size, "f32", started, why)


def select_runtime(model_dir: Path, build_torch_model: Callable[[], torch.nn.Module]) -> Runtime:
    """The fastest runtime that ``model_dir`` and this environment support: int8 IR, fp32 IR,
    eager PyTorch, in that order.

    ``build_torch_model`` is only called when PyTorch serves, so the OpenVINO path never holds a
    second copy of the weights. The runtime's ``name`` and ``reason`` say what serves and why.
    """
    model_dir = Path(model_dir)
    started = time.perf_counter()
    ir_dir = model_dir / OPENVINO_DIR
    meta: dict[str, Any] | None = None
    try:
        import openvino  # noqa: F401  (a probe: an installed but broken OpenVINO must fall back too)
    except ImportError as exc:
        reason = f"openvino does not import ({exc})"
    else:
        identity = artifact_identity(model_dir)
        meta, reason = read_export_meta(model_dir)
        if meta is not None:
            reason = _stale_reason(meta, identity)
    if reason is None and meta is not None:
        chosen = _openvino_runtime(ir_dir, meta, identity, started)
        if not isinstance(chosen, str):
            return chosen
        reason = chosen
    fallback = TorchRuntime(build_torch_model(), reason=reason)
    log.info("serving runtime: pytorch (fallback: %s)", reason)
    return fallback
