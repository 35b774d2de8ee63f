"""SQS's message move task (dead-letter queue redrive) for the in-process moto server.

moto 5.2.5 has no ``StartMessageMoveTask``, ``ListMessageMoveTasks`` or ``CancelMessageMoveTask``:
``python -m classify_ops redrive`` calls them, so the offline stack adds them here. This is an
emulation of what moto lacks, kept to SQS's documented behaviour, not a copy of SQS:

- ``StartMessageMoveTask`` returns a task handle at once; a background thread then moves the
  messages that were visible in the source queue when the task started, oldest first, and the
  task goes ``RUNNING`` -> ``COMPLETED`` (``CANCELLED`` after ``CancelMessageMoveTask``,
  ``FAILED`` when a queue disappears on the way).
- The source must be a dead-letter queue of another queue (AWS: "limited to ... queues that are
  configured as dead-letter queues"), and only one task may be active per source queue: a second
  one is refused with AWS's ``UnsupportedOperation``, an unknown queue with
  ``ResourceNotFoundException``.
- ``DestinationArn`` is optional: without it the messages go back to the queue that uses the
  source as its dead-letter queue (SQS remembers each message's origin; moto does not, so the
  emulation needs exactly one such queue).
- ``MaxNumberOfMessagesPerSecond`` (1-500) paces the move; without it the emulation moves as fast
  as it can ("system optimized" on AWS).
- A moved message keeps its body and message attributes and, as SQS documents for a redrive,
  is a new message: a new message id, a fresh sent time and a receive count of 0 (otherwise the
  destination's redrive policy would send it straight back to the dead-letter queue).
- ``ListMessageMoveTasks`` lists the most recent tasks of a source queue, newest first
  (``MaxResults`` 1-10, default 1); ``TaskHandle`` appears on ``RUNNING`` tasks only, as on AWS.

The actions are methods added to moto's ``SQSResponse`` (moto dispatches an action to the
snake_case method of that name, for the JSON protocol boto3 uses and for the query protocol
alike). The tasks live on moto's SQS backend object, so resetting moto (``moto_api`` reset)
forgets them with the queues. ``install()`` is idempotent and must run in the process that
serves moto (``ThreadedMotoServer`` serves from the process that starts it).
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from moto.core.responses import ActionResult
from moto.core.utils import get_service_model
from moto.sqs.exceptions import QueueDoesNotExist, SQSException
from moto.sqs.models import Message, Queue, SQSBackend, sqs_backends
from moto.sqs.responses import SQSResponse

ACTIONS = ("StartMessageMoveTask", "ListMessageMoveTasks", "CancelMessageMoveTask")
RUNNING, COMPLETED, CANCELLED, FAILED = "RUNNING", "COMPLETED", "CANCELLED", "FAILED"
MAX_RATE = 500  # AWS's upper limit of MaxNumberOfMessagesPerSecond
MAX_LISTED = 10  # ListMessageMoveTasks returns at most the 10 most recent tasks
_REGISTRY_ATTRIBUTE = "_message_move_tasks"
_install_lock = threading.Lock()
_tasks_lock = threading.Lock()  # one RUNNING task per source queue: check and register at once


class ResourceNotFound(SQSException):
    def __init__(self, message: str) -> None:
        super().__init__("ResourceNotFoundException", message)


class UnsupportedOperation(SQSException):
    def __init__(self, message: str) -> None:
        super().__init__("UnsupportedOperation", message)


class InvalidParameterValue(SQSException):
    def __init__(self, message: str) -> None:
        super().__init__("InvalidParameterValue", message)


@dataclass
class MoveTask:
    """One message move task; ``lock`` guards ``status`` and ``moved`` against the mover thread."""

    task_id: str
    source: Queue
    destination: Queue
    rate: int | None
    to_move: list[Message]
    started_ms: int = field(default_factory=lambda: int(time.time() * 1000))
    status: str = RUNNING
    moved: int = 0
    failure_reason: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def handle(self) -> str:
        """Opaque like AWS's (which is base64 JSON naming the task and its source queue)."""
        payload = json.dumps({"taskId": self.task_id, "sourceArn": self.source.queue_arn})
        return base64.b64encode(payload.encode()).decode()

    def describe(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "Status": self.status,
            "SourceArn": self.source.queue_arn,
            "DestinationArn": self.destination.queue_arn,
            "ApproximateNumberOfMessagesMoved": self.moved,
            "ApproximateNumberOfMessagesToMove": len(self.to_move),
            "StartedTimestamp": self.started_ms,
        }
        if self.status == RUNNING:
            entry["TaskHandle"] = self.handle
        if self.rate is not None:
            entry["MaxNumberOfMessagesPerSecond"] = self.rate
        if self.failure_reason:
            entry["FailureReason"] = self.failure_reason
        return entry


# ---- the backend side: queues by ARN, tasks per backend ----------------------------------------


def _registry(backend: SQSBackend) -> dict[str, MoveTask]:
    """The backend's tasks, oldest first. Stored on the backend: a moto reset drops them."""
    tasks = getattr(backend, _REGISTRY_ATTRIBUTE, None)
    if tasks is None:
        tasks = {}
        setattr(backend, _REGISTRY_ATTRIBUTE, tasks)
    return tasks


def _parse_arn(arn: str | None) -> tuple[str, str, str]:
    """``arn:aws:sqs:REGION:ACCOUNT:NAME`` -> (account, region, name)."""
    parts = (arn or "").split(":")
    if len(parts) != 6 or parts[0] != "arn" or parts[2] != "sqs":
        raise InvalidParameterValue(f"Value {arn} for parameter QueueArn is invalid.")
    return parts[4], parts[3], parts[5]


def _backend_and_queue(arn: str | None) -> tuple[SQSBackend, Queue]:
    account, region, name = _parse_arn(arn)
    backend = sqs_backends[account][region]
    try:
        return backend, backend.get_queue(name)
    except QueueDoesNotExist:
        raise ResourceNotFound(
            "The resource that you specified for the SourceArn parameter doesn't exist."
        ) from None


def _dead_letter_sources(backend: SQSBackend, queue: Queue) -> list[Queue]:
    return [q for q in backend.queues.values() if q.dead_letter_queue is queue]


def start_task(source_arn: str, destination_arn: str | None, rate: int | None) -> MoveTask:
    """Validate as SQS does, register the task and start moving in the background."""
    backend, source = _backend_and_queue(source_arn)
    sources = _dead_letter_sources(backend, source)
    if not sources:
        raise InvalidParameterValue("Source queue must be configured as a Dead Letter Queue.")
    if rate is not None and not 1 <= int(rate) <= MAX_RATE:
        raise InvalidParameterValue(
            f"Value {rate} for parameter MaxNumberOfMessagesPerSecond is invalid. "
            f"Reason: must be between 1 and {MAX_RATE}."
        )
    if destination_arn:
        destination = _backend_and_queue(destination_arn)[1]
    elif len(sources) == 1:
        destination = sources[0]
    else:
        raise UnsupportedOperation(
            "moto emulation: DestinationArn is required when several queues use this "
            "dead-letter queue (moto does not remember each message's origin)."
        )
    tasks = _registry(backend)
    with _tasks_lock:
        if any(t.source is source and t.status == RUNNING for t in tasks.values()):
            raise UnsupportedOperation(
                "There is already a task running. Only one active task is allowed for a "
                "source queue arn at a given time."
            )
        task = MoveTask(
            task_id=str(uuid.uuid4()),
            source=source,
            destination=destination,
            rate=int(rate) if rate is not None else None,
            to_move=list(source.messages),  # visible now, oldest first
        )
        tasks[task.task_id] = task
    threading.Thread(
        target=_move, args=(backend, task), name=f"sqs-move-{task.task_id[:8]}", daemon=True
    ).start()
    return task


def _move(backend: SQSBackend, task: MoveTask) -> None:
    """The mover: one message at a time, at most ``rate`` per second, until done or cancelled."""
    interval = 1.0 / task.rate if task.rate else 0.0
    for message in task.to_move:
        if interval:
            time.sleep(interval)
        with task.lock:
            if task.status != RUNNING:
                return
            try:
                if _take(task.source, message):
                    _put(backend, task.destination, message)
                    task.moved += 1
            except Exception as exc:  # a queue deleted meanwhile: the task fails, as on AWS
                task.status, task.failure_reason = FAILED, f"{type(exc).__name__}: {exc}"
                return
    with task.lock:
        if task.status == RUNNING:
            task.status = COMPLETED


def _take(queue: Queue, message: Message) -> bool:
    """Remove ``message`` from ``queue`` if it is still there and visible (not being read)."""
    with queue._messages_lock:
        if message not in queue._messages or not message.visible:
            return False
        if message in queue.pending_messages:
            queue.pending_messages.discard(message)
        queue._messages.remove(message)
        return True


def _put(backend: SQSBackend, destination: Queue, message: Message) -> None:
    """Send a copy as a new message (new id and sent time, receive count 0), as SQS does."""
    backend.get_queue(destination.name)  # gone -> QueueDoesNotExist -> the task fails
    backend.send_message(
        destination.name,
        message.body,
        message_attributes=dict(message.message_attributes),
        system_attributes=dict(message.system_attributes or {}) or None,
    )


def list_tasks(source_arn: str, max_results: int | None) -> list[MoveTask]:
    backend, source = _backend_and_queue(source_arn)
    count = 1 if max_results is None else int(max_results)
    if not 1 <= count <= MAX_LISTED:
        raise InvalidParameterValue(
            f"Value {count} for parameter MaxResults is invalid. Reason: must be between 1 and "
            f"{MAX_LISTED}."
        )
    of_source = [t for t in _registry(backend).values() if t.source is source]
    return list(reversed(of_source))[:count]


def cancel_task(handle: str) -> MoveTask:
    try:
        payload = json.loads(base64.b64decode(handle or "", validate=True))
        task_id, source_arn = payload["taskId"], payload["sourceArn"]
    except (ValueError, KeyError, TypeError):
        raise ResourceNotFound("Task does not exist.") from None
    backend = _backend_and_queue(source_arn)[0]
    task = _registry(backend).get(task_id)
    if task is None:
        raise ResourceNotFound("Task does not exist.")
    with task.lock:
        if task.status != RUNNING:
            raise UnsupportedOperation("Only a task in RUNNING status can be cancelled.")
        task.status = CANCELLED
    return task


# ---- the HTTP side: SQSResponse methods ---------------------------------------------------------


def _start_message_move_task(self: SQSResponse) -> ActionResult:
    task = start_task(
        self._get_param("SourceArn"),
        self._get_param("DestinationArn"),
        self._get_param("MaxNumberOfMessagesPerSecond"),
    )
    return ActionResult({"TaskHandle": task.handle})


def _list_message_move_tasks(self: SQSResponse) -> ActionResult:
    tasks = list_tasks(self._get_param("SourceArn"), self._get_param("MaxResults"))
    return ActionResult({"Results": [t.describe() for t in tasks]})


def _cancel_message_move_task(self: SQSResponse) -> ActionResult:
    task = cancel_task(self._get_param("TaskHandle"))
    return ActionResult({"ApproximateNumberOfMessagesMoved": task.moved})


def _wrap_query_results() -> None:
    """Give the three actions the ``<ActionResult>`` element SQS's query (XML) protocol wraps
    every answer in; moto's own SQS actions get it from moto's model extras."""
    model = get_service_model("sqs")
    operations = model._service_description["operations"]
    for action in ACTIONS:
        output = operations[action].setdefault("output", {})
        output.setdefault("resultWrapper", f"{action}Result")
    model._instance_cache.clear()  # operation models built before now lack the wrapper


_PATCHED = ("start_message_move_task", "list_message_move_tasks", "cancel_message_move_task")
_installs = 0


def install() -> None:
    """Add the three actions to moto's SQS in this process. Installs are counted: each is undone
    by one ``uninstall``, and the actions go away with the last one."""
    global _installs
    with _install_lock:
        _installs += 1
        if _installs > 1:
            return
        _wrap_query_results()  # botocore's SQS model keeps the wrappers: harmless to other users
        SQSResponse.start_message_move_task = _start_message_move_task
        SQSResponse.list_message_move_tasks = _list_message_move_tasks
        SQSResponse.cancel_message_move_task = _cancel_message_move_task


def uninstall() -> None:
    """Undo one ``install``; the last one takes the actions off moto's SQS again."""
    global _installs
    with _install_lock:
        if _installs == 0:
            return
        _installs -= 1
        if _installs == 0:
            for name in _PATCHED:
                if name in vars(SQSResponse):
                    delattr(SQSResponse, name)
