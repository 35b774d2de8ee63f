"""The three ways one uploaded object can fail, decided once where the error is raised.

``PermanentFailure``: retrying cannot help (not an image, zero bytes, the object is gone, the model
rejected the input). The object ends as a ``FAILED`` item; the invocation still succeeds.

``TransientFailure``: the same request may succeed later (throttling, 5xx, timeouts, connection
errors). Retried with backoff inside the invocation; if it persists the message is reported
failed, so the queue redelivers it and, after five receives, keeps it in the dead-letter queue.
No item is written.

``ConfigurationFailure``: the deployment is wrong (unknown endpoint, access denied, missing table).
Every upload would fail the same way, so it is neither written as a ``FAILED`` item (that would
blame good images) nor retried inside the invocation; the message fails at once, the alarms fire,
and the messages wait in the dead-letter queue for a redrive once the stack is fixed.

Which AWS error code means which class is decided here, one table per meaning, for every service
the function calls (S3, DynamoDB, the SageMaker runtime). ``classify.classify_storage_error`` and
``endpoint.classify_endpoint_error`` add only what is particular to their calls: a missing or
archived object, the model's own answer, an unknown endpoint.
"""

from __future__ import annotations

from dataclasses import dataclass

from botocore.exceptions import ClientError

# The object named by the event is not there (deleted, or an older version) or its bucket is gone.
OBJECT_GONE_CODES = frozenset({"NoSuchKey", "NoSuchVersion", "NoSuchBucket", "404", "NotFound"})
# The object is in an archive storage class: GetObject cannot read it until it is restored.
OBJECT_ARCHIVED_CODES = frozenset({"InvalidObjectState"})
# "Try again later", whatever the HTTP status says.
TRANSIENT_CODES = frozenset(
    {
        "ModelNotReadyException",
        "ServiceUnavailable",
        "InternalFailure",
        "InternalDependencyException",
        "ThrottlingException",
        "Throttling",
        "TooManyRequestsException",
        "RequestTimeout",
        "RequestTimeoutException",
    }
)
# "This deployment is wrong": a role without a permission, a missing table, bad credentials.
# Retrying or blaming the image cannot help. Both KMS spellings are real: S3 answers for SSE-KMS
# objects with ``KMS.*`` codes, SageMaker and other services with ``KMSAccessDeniedException``.
CONFIGURATION_CODES = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "KMS.AccessDeniedException",
        "KMSAccessDeniedException",
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "ExpiredTokenException",
        "ResourceNotFoundException",
        "ValidationException",
    }
)
# HTTP statuses that decide when the code is in neither table above.
TRANSIENT_STATUSES = frozenset({429})  # and every 5xx
CONFIGURATION_STATUSES = frozenset({401, 403})
# A model's own answer (SageMaker's ModelError carries it as OriginalStatusCode): these 4xx are
# about load, not about the input, so they are transient; every other 4xx rejects the input.
TRANSIENT_MODEL_STATUSES = frozenset({408, 429})


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


class MessageFailed(Exception):
    """Raised for one queue message whose objects need a redelivery (reported in
    ``batchItemFailures``; the other messages of the batch are not affected)."""


@dataclass(frozen=True)
class ServiceError:
    """What decides a botocore ``ClientError``'s class: its code, message and HTTP status."""

    code: str
    message: str
    status: int  # 0 when the response carries none

    @classmethod
    def of(cls, exc: ClientError) -> ServiceError:
        error = exc.response.get("Error", {})
        return cls(
            code=error.get("Code", ""),
            message=error.get("Message", "") or str(exc),
            status=exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0),
        )

    @property
    def error_type(self) -> str:
        """The code, or the status when a service answered without one (a bare HTTP error)."""
        return self.code or f"HTTP{self.status}"

    def failure_class(self) -> type[UploadFailure] | None:
        """Transient or configuration, by code first and then by status. None when neither says:
        the caller decides what an unknown error means for its call.

        Transient wins: a throttled or failing service says nothing about the stack.
        """
        if self.code in TRANSIENT_CODES or self.status in TRANSIENT_STATUSES or self.status >= 500:
            return TransientFailure
        if self.code in CONFIGURATION_CODES or self.status in CONFIGURATION_STATUSES:
            return ConfigurationFailure
        return None
