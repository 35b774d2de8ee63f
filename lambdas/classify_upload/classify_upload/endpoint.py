"""Calling the SageMaker endpoint: error classification, bounded retries, response parsing.

botocore's own retries are switched off for this client (see ``clients``): the retry loop here is
the only one, so a throttled endpoint is not hit ``botocore attempts x our attempts`` times, and the
classification below sees every error. Which codes mean what is ``errors``'s table, shared with the
S3 and DynamoDB calls; only what is particular to InvokeEndpoint is decided here.
"""

from __future__ import annotations

import json
import math
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from classify_upload.clients import ENDPOINT_CALL_MAX_S
from classify_upload.errors import (
    TRANSIENT_MODEL_STATUSES,
    ConfigurationFailure,
    PermanentFailure,
    ServiceError,
    TransientFailure,
    UploadFailure,
)

# What the table keeps from the endpoint's answer is bounded, so a misbehaving model cannot push an
# item past DynamoDB's limits (400 KB per item, 2048 bytes for the by_breed key) and lose it.
MAX_BREED_CHARS = 200
MAX_MODEL_FIELDS = 16
MAX_MODEL_VALUE_CHARS = 200

# The SageMaker inference toolkit answers a handler's error with its message, a newline and the
# Python traceback (container paths included). Only the message is for the table and the user.
TRACEBACK_MARKER = "Traceback (most recent call last):"
# An absolute path of two or more parts (/opt/ml/model/code/x.py, C:/x/y): never stored.
_ABSOLUTE_PATH = re.compile(r"(?<![\w.:/])(?:[A-Za-z]:)?(?:/[\w.@+-]+){2,}/?")
NO_MESSAGE = "the model gave no message"


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, bounded in attempts and in each delay."""

    max_attempts: int = 4
    base_delay_s: float = 0.25
    max_delay_s: float = 4.0

    def delay(self, retry_number: int, rng: Callable[[], float] = random.random) -> float:
        """Seconds to wait before retry ``retry_number`` (1-based): uniform in [0, cap]."""
        cap = min(self.max_delay_s, self.base_delay_s * 2 ** (retry_number - 1))
        return rng() * cap


# Kept back from the invocation's time for what comes after the last endpoint call: the item's
# write (DynamoDB, milliseconds as a rule; botocore retries a slow one) and the batch's response.
WRITE_RESERVE_S = 20.0
DEADLINE_EXCEEDED = "DeadlineExceeded"


@dataclass(frozen=True)
class Deadline:
    """The end of the invocation, read from ``remaining_ms`` (Lambda's
    ``context.get_remaining_time_in_millis``, or a test's clock).

    An endpoint call, or a backoff sleep and the call after it, is started only if it ends, at its
    longest (``call_max_s``: the client's connect plus read timeout), ``reserve_s`` before the
    function's timeout. So a slow endpoint makes a message give up and come back, never makes the
    function time out and lose the batch's response.
    """

    remaining_ms: Callable[[], float]
    reserve_s: float = WRITE_RESERVE_S
    call_max_s: float = ENDPOINT_CALL_MAX_S

    @classmethod
    def unlimited(cls) -> Deadline:
        return cls(lambda: math.inf)

    def left_s(self) -> float:
        """Seconds left for work, the reserve already taken off."""
        return self.remaining_ms() / 1000.0 - self.reserve_s

    def allows_call(self, wait_s: float = 0.0) -> bool:
        """Whether waiting ``wait_s`` and then the longest endpoint call still end in time."""
        return self.left_s() >= wait_s + self.call_max_s

    def exceeded(self, what: str) -> TransientFailure:
        """The failure of work not started for lack of time (the message comes back)."""
        return TransientFailure(
            DEADLINE_EXCEEDED,
            f"{what}: {self.left_s() + self.reserve_s:.0f} s of the invocation left, one endpoint "
            f"call takes up to {self.call_max_s:.0f} s and {self.reserve_s:.0f} s are kept back",
        )


@dataclass(frozen=True)
class Prediction:
    breed: str
    probability: float
    top_k: list[dict[str, Any]]
    model: dict[str, Any] = field(default_factory=dict)
    attempts: int = 1


def triage_endpoint_error(exc: Exception) -> UploadFailure:
    """Decide once whether an InvokeEndpoint error is permanent, transient or configuration."""
    if isinstance(exc, UploadFailure):
        return exc
    if isinstance(exc, ClientError):
        error = ServiceError.of(exc)
        if error.code == "ModelError":
            return model_failure(exc.response, error.message)
        failure_class = error.failure_class()
        if failure_class is not None:
            return failure_class(error.error_type, error.message)
        if error.code == "ValidationError":
            # SageMaker says "Endpoint X of account Y not found." for an unknown endpoint: that is
            # the stack's parameter, not this image. Anything else is about this request's body.
            lowered = error.message.lower()
            if "not found" in lowered or "could not find" in lowered:
                return ConfigurationFailure("EndpointNotFound", error.message)
            return PermanentFailure("RequestRejected", error.message)
        # Unknown codes: keep the event (fail the invocation) rather than guess "permanent".
        return TransientFailure(error.error_type, error.message)
    if isinstance(exc, BotoCoreError):
        # Connection refused/reset, read and connect timeouts, ...: the network, not the input.
        return TransientFailure(type(exc).__name__, str(exc))
    return TransientFailure(type(exc).__name__, str(exc))


def model_failure(response: dict[str, Any], message: str) -> UploadFailure:
    """The model container's own answer, passed on by SageMaker as a ``ModelError``: a 4xx rejects
    this input (permanent) unless it is about load; anything else is the container failing."""
    original = response.get("OriginalStatusCode")
    original_message = model_message(response.get("OriginalMessage") or message)
    if isinstance(original, int) and 400 <= original < 500:
        if original in TRANSIENT_MODEL_STATUSES:
            return TransientFailure(f"ModelError{original}", original_message)
        return PermanentFailure(f"ModelRejected{original}", original_message)
    return TransientFailure(f"ModelError{original or ''}", original_message)


def model_message(text: str) -> str:
    """The model's own words from an error body: no traceback, no file path.

    The message comes before the toolkit's traceback; a body that is only a traceback keeps its
    last line (the exception and its message). Paths are replaced by ``<path>``.
    """
    head, marker, tail = text.partition(TRACEBACK_MARKER)
    message = head.strip()
    if not message and marker:
        exception_lines = [
            line.strip() for line in tail.splitlines() if line.strip() and not line[:1].isspace()
        ]
        message = exception_lines[-1] if exception_lines else ""
    message = _ABSOLUTE_PATH.sub("<path>", message)
    return message or NO_MESSAGE


def parse_prediction(body: bytes, top_k: int) -> Prediction:
    """The endpoint contract's JSON → best breed, probability, and the first ``top_k`` entries."""
    try:
        payload = json.loads(body)
        predictions = payload["predictions"]
        ranked = [
            {"breed": str(p["breed"]), "probability": float(p["probability"])}
            for p in predictions[:top_k]
        ]
    except (ValueError, KeyError, TypeError) as exc:
        raise PermanentFailure("BadModelResponse", f"unexpected endpoint response: {exc}") from exc
    if not ranked:
        raise PermanentFailure("BadModelResponse", "endpoint returned no predictions")
    for p in ranked:
        # NaN/inf cannot be stored (DynamoDB numbers are finite) and mean a broken model anyway.
        if not math.isfinite(p["probability"]):
            raise PermanentFailure("BadModelResponse", f"non-finite probability for {p['breed']!r}")
        if not p["breed"] or len(p["breed"]) > MAX_BREED_CHARS:
            raise PermanentFailure(
                "BadModelResponse",
                f"breed name of {len(p['breed'])} characters: {p['breed'][:80]!r}",
            )
    return Prediction(ranked[0]["breed"], ranked[0]["probability"], ranked, model_identity(payload))


def model_identity(payload: Any) -> dict[str, str | int | bool]:
    """The scalar fields of the response's ``model`` object, bounded in number and length."""
    model = payload.get("model") if isinstance(payload, dict) else None
    if not isinstance(model, dict):
        return {}
    identity: dict[str, str | int | bool] = {}
    for name, value in list(model.items())[:MAX_MODEL_FIELDS]:
        if isinstance(value, str):
            identity[str(name)[:MAX_MODEL_VALUE_CHARS]] = value[:MAX_MODEL_VALUE_CHARS]
        elif isinstance(value, bool | int) and abs(value) < 10**38:  # DynamoDB's number range
            identity[str(name)[:MAX_MODEL_VALUE_CHARS]] = value
    return identity


def invoke_endpoint(
    client: Any,
    endpoint_name: str,
    body: bytes,
    content_type: str,
    top_k: int,
    policy: RetryPolicy,
    sleep: Callable[[float], None] = time.sleep,
    on_retry: Callable[[UploadFailure, int, float], None] | None = None,
    deadline: Deadline | None = None,
) -> Prediction:
    """InvokeEndpoint with retries on transient errors only; raises a typed ``UploadFailure``.

    Retries stop at ``policy.max_attempts`` or when ``deadline`` leaves no time for the backoff
    and one more call, whichever comes first; either way the last transient failure is raised.
    """
    deadline = deadline or Deadline.unlimited()
    if not deadline.allows_call():
        raise deadline.exceeded("endpoint call not started")
    attempt = 0
    while True:
        attempt += 1
        try:
            response = client.invoke_endpoint(
                EndpointName=endpoint_name,
                Body=body,
                ContentType=content_type,
                Accept="application/json",
                CustomAttributes=f"top_k={top_k}",
            )
            raw = response["Body"].read()
        except Exception as exc:
            failure = triage_endpoint_error(exc)
            if not isinstance(failure, TransientFailure) or attempt >= policy.max_attempts:
                raise failure from exc
            delay = policy.delay(attempt)
            if not deadline.allows_call(delay):
                raise TransientFailure(
                    failure.error_type,
                    f"{failure.message} (no retry after attempt {attempt}: "
                    f"{deadline.exceeded('out of time').message})",
                ) from exc
            if on_retry is not None:
                on_retry(failure, attempt, delay)
            sleep(delay)
            continue
        prediction = parse_prediction(raw, top_k)
        return Prediction(
            prediction.breed, prediction.probability, prediction.top_k, prediction.model, attempt
        )
