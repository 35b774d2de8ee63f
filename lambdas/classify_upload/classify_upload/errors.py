"""The three ways one uploaded object can fail, decided once where the error is raised.

``PermanentFailure``: retrying cannot help (not an image, zero bytes, the object is gone or
encrypted with a key this function cannot use, the model rejected the input). The object ends as a
``FAILED`` item; the invocation still succeeds.

``TransientFailure``: the same request may succeed later (throttling, 5xx, timeouts, connection
errors). Retried with backoff inside the invocation; if it persists the message is reported
failed, so the queue redelivers it and, after five receives, keeps it in the dead-letter queue.
No item is written.

``ConfigurationFailure``: the deployment is wrong (unknown endpoint, access denied, missing table).
Every upload would fail the same way, so it is neither written as a ``FAILED`` item (that would
blame good images) nor retried inside the invocation; the message fails at once, the alarms fire,
and the messages wait in the dead-letter queue for a redrive once the stack is fixed.

A message that names no upload at all is none of these: it is dropped (``MessageDropped``).

Which AWS error code means which class is decided here, one table per meaning, for every service
the function calls (S3, DynamoDB, the SageMaker runtime). ``classify.triage_storage_error`` and
``endpoint.triage_endpoint_error`` add only what is particular to their calls: a missing,
archived or unreadably encrypted object, the model's own answer, an unknown endpoint.
"""

from __future__ import annotations

import re
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
# Retrying or blaming the image cannot help. Both KMS spellings are real: S3 answers with ``KMS.*``
# codes, SageMaker and other services with ``KMSAccessDeniedException``. (From GetObject, a KMS
# code is about the object's own key instead: ``OBJECT_ENCRYPTED_CODES`` below.)
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
# The object is encrypted in a way this function cannot read: no retry and no redeploy of this
# stack makes that upload readable, so it is a FAILED item that says so (``ObjectEncrypted``).
# Only GetObject's answers are read this way (``classify.triage_storage_error``); the same KMS
# codes from DynamoDB or SageMaker stay configuration (the stack's own key). What S3 answers:
# - SSE-C, read without the customer's key: 400 ``InvalidRequest``, "The object was stored using a
#   form of Server Side Encryption. The correct parameters must be provided to retrieve the object."
#   (the S3 answer quoted in minio/minio#4894); other ``InvalidRequest`` messages are not this.
# - SSE-KMS with a key that is disabled, pending deletion or gone: ``KMS.DisabledException``,
#   ``KMS.KMSInvalidStateException``, ``KMS.NotFoundException`` (aws/aws-cli#4507,
#   localstack/localstack#8422), and ``KMS.AccessDeniedException`` for a key policy that refuses.
# - A role without ``kms:Decrypt``: 403 ``AccessDenied``, the message naming KMS ("... not
#   authorized to perform: kms:Decrypt ..."). A bare "Access Denied" cannot be told from a missing
#   ``s3:GetObject`` (boto/boto3#2952), so it stays configuration.
OBJECT_ENCRYPTED_CODES = frozenset(
    {
        "KMS.AccessDeniedException",
        "KMS.DisabledException",
        "KMS.KMSInvalidStateException",
        "KMS.NotFoundException",
    }
)
SSE_C_CODE = "InvalidRequest"
SSE_C_MESSAGE = re.compile(r"server[- ]side encryption", re.IGNORECASE)
KMS_ACCESS_DENIED_CODE = "AccessDenied"
# KMS named as S3 names it: the action, the key, the ciphertext. Not a bare "kms", which a bucket's
# or key's name in the message may hold.
KMS_MESSAGE = re.compile(
    r"\bkms:[A-Za-z]|\bKMS key\b|ciphertext|customer master key|Key Management Service",
    re.IGNORECASE,
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


class MessageDropped(ValueError):
    """A queue message that names no upload (not JSON, neither an S3 event nor a complete reprocess
    request, a sequencer S3 could not have written): logged, counted, consumed, never retried,
    since a redelivery would be the same bytes. ``reason`` says which rule it broke."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


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

    def object_encrypted(self) -> bool:
        """GetObject refused because of how the object is encrypted (``OBJECT_ENCRYPTED_CODES``)."""
        if self.code in OBJECT_ENCRYPTED_CODES:
            return True
        if self.code == SSE_C_CODE:
            return bool(SSE_C_MESSAGE.search(self.message))
        return self.code == KMS_ACCESS_DENIED_CODE and bool(KMS_MESSAGE.search(self.message))

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
