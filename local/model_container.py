"""The serving container in-process: ``endpoint_inference.py`` driven by the SageMaker PyTorch
inference toolkit's own ``HandlerService``, as TorchServe drives it in the real container.

What the real container does, and what this copies (sagemaker-pytorch-inference 2.0.25,
sagemaker-inference 1.10, TorchServe's ``ts/service.py`` and ``ts/context.py``):
- the handler module is ``$SAGEMAKER_PROGRAM`` (``endpoint_inference.py``) imported from
  ``/opt/ml/model/code`` (on PYTHONPATH); ``model_fn`` runs once, at ``initialize(context)``;
- one ``Context`` lives for the worker's lifetime; per request TorchServe sets
  ``context.request_processor = [RequestProcessor(headers)]`` and calls
  ``handle([{"body": bytes}], context)``; the request headers (Content-Type, Accept,
  X-Amzn-SageMaker-Custom-Attributes, ...) are what ``input_fn(data, content_type, context)`` sees;
- a ``BaseInferenceToolkitError`` from a handler sets that status (body: message + traceback);
  any other exception becomes 500; an exception escaping ``handle`` itself is TorchServe's 503.
One worker: requests are served one at a time, like one TorchServe worker.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from local.sagemaker_runtime import ContainerResponse

REPO_ROOT = Path(__file__).resolve().parent.parent
SOURCE_DIR = REPO_ROOT / "training" / "container"
PROGRAM = "endpoint_inference.py"
CUSTOM_ATTRIBUTES_HEADER = "X-Amzn-SageMaker-Custom-Attributes"


class RequestProcessor:
    """TorchServe's per-request header holder and response status/headers."""

    def __init__(self, request_header: dict[str, Any]):
        self._status_code = 200
        self._reason_phrase: str | None = None
        self._response_header: dict[str, str] = {}
        self._request_header = request_header

    def get_request_property(self, key: str) -> Any:
        return self._request_header.get(key)

    def get_request_properties(self) -> dict[str, Any]:
        return self._request_header

    def report_status(self, code: int, reason_phrase: str | None = None) -> None:
        self._status_code = code
        self._reason_phrase = reason_phrase

    def get_response_status_code(self) -> int:
        return self._status_code

    def get_response_status_phrase(self) -> str | None:
        return self._reason_phrase

    def add_response_property(self, key: str, value: str) -> None:
        self._response_header[key] = value

    def get_response_headers(self) -> dict[str, str]:
        return self._response_header


class ModelServerContext:
    """The subset of TorchServe's ``ts.context.Context`` that the toolkit uses."""

    def __init__(self, model_dir: str, model_name: str = "model"):
        self.model_name = model_name
        self.manifest = {"model": {"modelName": model_name}}
        self._system_properties = {
            "model_dir": model_dir,
            "gpu_id": None,
            "batch_size": 1,
            "server_name": "MMS",
            "server_version": "local",
            "limit_max_image_pixels": True,
        }
        self.request_ids: dict[int, str] | None = None
        self.request_processor: list[RequestProcessor] | None = None
        self.metrics = None

    @property
    def system_properties(self) -> dict[str, Any]:
        return self._system_properties

    def get_request_id(self, idx: int = 0) -> str | None:
        return None if self.request_ids is None else self.request_ids.get(idx)

    def get_request_header(self, idx: int, key: str) -> Any:
        return self.request_processor[idx].get_request_property(key)

    def get_all_request_header(self, idx: int) -> dict[str, Any]:
        return self.request_processor[idx].get_request_properties()

    def set_response_content_type(self, idx: int, value: str) -> None:
        self.set_response_header(idx, "content-type", value)

    def get_response_content_type(self, idx: int) -> str | None:
        return self.get_response_headers(idx).get("content-type")

    def get_response_status(self, idx: int) -> tuple[int, str | None]:
        processor = self.request_processor[idx]
        return processor.get_response_status_code(), processor.get_response_status_phrase()

    def set_response_status(self, code: int = 200, phrase: str = "", idx: int = 0) -> None:
        if self.request_processor is not None and self.request_processor[idx] is not None:
            self.request_processor[idx].report_status(code, reason_phrase=phrase)

    def get_response_headers(self, idx: int) -> dict[str, str]:
        return self.request_processor[idx].get_response_headers()

    def set_response_header(self, idx: int, key: str, value: str) -> None:
        self.request_processor[idx].add_response_property(key, value)


@contextlib.contextmanager
def _environ(**values: str) -> Iterator[None]:
    """Set environment variables for a block; the toolkit reads SAGEMAKER_PROGRAM and rewrites
    PYTHONPATH during initialize, which must not leak into processes started later."""
    saved = {k: os.environ.get(k) for k in [*values, "PYTHONPATH"]}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _encode(value: Any) -> bytes:
    """A handler's return value as TorchServe puts it on the wire."""
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8")
    return json.dumps(value).encode("utf-8")


def _load_program(path: Path) -> None:
    """Import the handler module from its file under its module name, where the toolkit's
    ``importlib.import_module(SAGEMAKER_PROGRAM)`` finds it (the real container has ``code/`` on
    PYTHONPATH instead)."""
    name = path.stem
    if name in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise


class ToolkitContainer:
    """``ping()`` / ``invoke(...)`` over the toolkit's HandlerService for one model directory.

    The handler module comes from ``model_dir/code`` when the artifact carries it (a packaged
    model.tar.gz), else from the repository's ``training/container``; the ``dog_breeds`` package it
    imports is the one this process already imports (the repository's). Python imports a module
    once per process, so every container in one process shares the first ``endpoint_inference``.
    """

    def __init__(self, model_dir: Path, code_dir: Path | None = None, program: str = PROGRAM):
        from sagemaker_pytorch_serving_container.handler_service import HandlerService

        self.model_dir = Path(model_dir).resolve()
        if code_dir is None:
            packaged = self.model_dir / "code"
            code_dir = packaged if (packaged / program).is_file() else SOURCE_DIR
        self.code_dir = Path(code_dir).resolve()
        if not (self.code_dir / program).is_file():
            raise FileNotFoundError(f"{self.code_dir / program} does not exist")
        _load_program(self.code_dir / program)
        self._lock = threading.Lock()
        self._context = ModelServerContext(str(self.model_dir))
        self._service = HandlerService()
        with _environ(SAGEMAKER_PROGRAM=program):
            # Loads the model (model_fn) now, as TorchServe does when the worker starts.
            self._service.initialize(self._context)
        self._ready = True

    def ping(self) -> bool:
        return self._ready

    def invoke(
        self,
        body: bytes,
        content_type: str,
        accept: str = "application/json",
        custom_attributes: str | None = None,
    ) -> ContainerResponse:
        headers = {"Content-Type": content_type, "Accept": accept}
        if custom_attributes is not None:
            headers[CUSTOM_ATTRIBUTES_HEADER] = custom_attributes
        processor = RequestProcessor(headers)
        with self._lock:
            self._context.request_ids = {0: str(uuid.uuid4())}
            self._context.request_processor = [processor]
            try:
                result = self._service.handle([{"body": body}], self._context)
            except Exception as exc:  # TorchServe: "Invoking custom service failed" -> 503
                return ContainerResponse(503, f"Prediction failed: {exc!r}".encode(), "text/plain")
        if not isinstance(result, list) or len(result) != 1:
            return ContainerResponse(503, b"Invalid model predict output", "text/plain")
        status = processor.get_response_status_code()
        content_type_out = processor.get_response_headers().get("content-type")
        if content_type_out is None:
            content_type_out = "application/json" if status == 200 else "text/plain"
        return ContainerResponse(status, _encode(result[0]), content_type_out)
