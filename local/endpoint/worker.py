"""One serving-container worker, in a process of its own, as a TorchServe worker.

The SageMaker PyTorch inference toolkit's ``HandlerService`` over the artifact's ``code/``, as a
TorchServe worker runs it.

Started by ``local.endpoint.container.ToolkitContainer`` as
``python -P local/endpoint/worker.py MODEL_DIR RESULT_FD`` with ``PYTHONPATH=MODEL_DIR/code`` and
``SAGEMAKER_PROGRAM``: the script's own folder is not on ``sys.path`` (``-P``), and the
repository's editable install is switched off below, so ``endpoint_inference`` and every module it
imports come from ``code/`` alone. A module the packaging forgot fails here as in the container.

What the real container does, and what this copies (sagemaker-pytorch-inference 2.0.25,
sagemaker-inference 1.10, TorchServe's ``ts/service.py`` and ``ts/context.py``):
- ``model_fn`` runs once, at ``initialize(context)``; one ``Context`` lives for the worker's life;
- per request TorchServe sets ``context.request_processor = [RequestProcessor(headers)]`` and calls
  ``handle([{"body": bytes}], context)``; the request headers (Content-Type, Accept,
  X-Amzn-SageMaker-Custom-Attributes, ...) are what ``input_fn(data, content_type, context)`` sees;
- a ``BaseInferenceToolkitError`` from a handler sets that status (body: message + traceback);
  any other exception becomes 500; an exception escaping ``handle`` itself is TorchServe's 503.

Protocol: after loading, one JSON line ``{"ready": true}`` (or ``false`` and ``error``) on
RESULT_FD; then one request per stdin line (``body`` base64, ``content_type``, ``accept``,
``custom_attributes``) and one answer per line (``status``, ``body`` base64, ``content_type``).
Imports nothing of this repository: it must not see it.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import signal
import sys
import traceback
import uuid
from typing import Any

CUSTOM_ATTRIBUTES_HEADER = "X-Amzn-SageMaker-Custom-Attributes"


def _without_editable_install() -> None:
    """Drop the finders an editable ``pip install -e`` adds: only ``PYTHONPATH`` (``code/``) and
    the installed distributions remain, as in the serving container."""
    sys.meta_path[:] = [f for f in sys.meta_path if "__editable__" not in type(f).__module__]
    sys.path_hooks[:] = [h for h in sys.path_hooks if "__editable__" not in repr(h)]
    sys.path_importer_cache.clear()


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


def _encode(value: Any) -> bytes:
    """A handler's return value as TorchServe puts it on the wire."""
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8")
    return json.dumps(value).encode("utf-8")


def handle(service: Any, context: ModelServerContext, request: dict[str, Any]) -> dict[str, Any]:
    """One request through ``HandlerService.handle``, answered as TorchServe answers it."""
    headers = {"Content-Type": request["content_type"], "Accept": request["accept"]}
    if request.get("custom_attributes") is not None:
        headers[CUSTOM_ATTRIBUTES_HEADER] = request["custom_attributes"]
    processor = RequestProcessor(headers)
    context.request_ids = {0: str(uuid.uuid4())}
    context.request_processor = [processor]
    body = base64.b64decode(request["body"])
    try:
        result = service.handle([{"body": body}], context)
    except Exception as exc:  # TorchServe: "Invoking custom service failed" -> 503
        return _answer(503, f"Prediction failed: {exc!r}".encode(), "text/plain")
    if not isinstance(result, list) or len(result) != 1:
        return _answer(503, b"Invalid model predict output", "text/plain")
    status = processor.get_response_status_code()
    content_type = processor.get_response_headers().get("content-type")
    if content_type is None:
        content_type = "application/json" if status == 200 else "text/plain"
    return _answer(status, _encode(result[0]), content_type)


def _answer(status: int, body: bytes, content_type: str) -> dict[str, Any]:
    return {"status": status, "body": base64.b64encode(body).decode(), "content_type": content_type}


def main(argv: list[str]) -> int:
    model_dir, result_fd = argv[0], int(argv[1])
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when the worker stops
    _without_editable_install()
    results = os.fdopen(result_fd, "w", encoding="utf-8", buffering=1)
    # As TorchServe's model_service_worker: the handler's log records go to stdout (its MODEL_LOG),
    # here the endpoint's log file, each line naming the worker since several share the file.
    logging.basicConfig(
        stream=sys.stdout, format=f"worker {os.getpid()}: %(message)s", level=logging.INFO
    )
    try:
        from sagemaker_pytorch_serving_container.handler_service import HandlerService

        context = ModelServerContext(model_dir)
        service = HandlerService()
        service.initialize(context)  # imports SAGEMAKER_PROGRAM and runs model_fn, as on start-up
    except Exception as exc:
        traceback.print_exc()
        results.write(json.dumps({"ready": False, "error": f"{type(exc).__name__}: {exc}"}) + "\n")
        return 1
    results.write(json.dumps({"ready": True}) + "\n")
    for line in sys.stdin:
        results.write(json.dumps(handle(service, context, json.loads(line))) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
