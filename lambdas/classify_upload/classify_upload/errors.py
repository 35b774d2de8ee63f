"""The three ways one uploaded object can fail, decided once where the error is raised.

``PermanentFailure``: retrying cannot help (not an image, zero bytes, the object is gone, the model
rejected the input). The object ends as a ``FAILED`` item; the invocation still succeeds.

``TransientFailure``: the same request may succeed later (throttling, 5xx, timeouts, connection
errors). Retried with backoff inside the invocation; if it persists the invocation fails, so
Lambda's async retries and then the on-failure queue keep the event. No item is written.

``ConfigurationFailure``: the deployment is wrong (unknown endpoint, access denied, missing table).
Every upload would fail the same way, so it is neither written as a ``FAILED`` item (that would
blame good images) nor retried inside the invocation; the invocation fails at once, the error
alarm fires, and the events wait in the failure queue for a redrive once the stack is fixed.
"""

from __future__ import annotations


class UploadFailure(Exception):
    """Base class: ``error_type`` is a short stable code stored in the table and in logs."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(f"{error_type}: {message}")
        self.error_type = error_type
        self.message = message


class PermanentFailure(UploadFailure):
    """Retrying cannot help: record a FAILED item, do not fail the invocation."""


class TransientFailure(UploadFailure):
    """May succeed later: retry with backoff, then fail the invocation (no item)."""


class ConfigurationFailure(UploadFailure):
    """The stack is misconfigured: fail the invocation at once (no item, no in-invocation retry)."""


class InvocationFailed(Exception):
    """Raised by the handler after all records were processed when any needs a redelivery."""
