"""S3 ObjectCreated → SageMaker endpoint → DynamoDB. The Lambda edge only: see ``classify``."""

from __future__ import annotations

import functools
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from classify_upload.classify import EventSummary, classify_event
from classify_upload.clients import Clients, make_clients
from classify_upload.endpoint import RetryPolicy
from classify_upload.errors import InvocationFailed
from classify_upload.settings import Settings
from classify_upload.table import STATUS_FAILED, STATUS_PREDICTED

logger = Logger()  # service name and level: POWERTOOLS_SERVICE_NAME, POWERTOOLS_LOG_LEVEL/LOG_LEVEL
tracer = Tracer()
metrics = Metrics()  # namespace: POWERTOOLS_METRICS_NAMESPACE

SETTINGS = Settings.from_env()
RETRY_POLICY = RetryPolicy()


@functools.cache
def get_clients() -> Clients:
    """Built on first use, reused while warm; tests call ``get_clients.cache_clear()``."""
    return make_clients(SETTINGS.table_name)


def _emit_metrics(summary: EventSummary) -> None:
    metrics.add_metric(
        name="Predicted", unit=MetricUnit.Count, value=summary.count(STATUS_PREDICTED)
    )
    metrics.add_metric(name="Failed", unit=MetricUnit.Count, value=summary.count(STATUS_FAILED))
    metrics.add_metric(name="DuplicateOrStale", unit=MetricUnit.Count, value=summary.stale)
    metrics.add_metric(
        name="SkippedOutsidePrefix", unit=MetricUnit.Count, value=len(summary.skipped)
    )
    metrics.add_metric(name="RetryLater", unit=MetricUnit.Count, value=len(summary.retry_later))
    metrics.add_metric(
        name="Downscaled", unit=MetricUnit.Count, value=sum(o.downscaled for o in summary.outcomes)
    )


@logger.inject_lambda_context(
    correlation_id_path='Records[0].responseElements."x-amz-request-id"', clear_state=True
)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    summary = classify_event(event, SETTINGS, get_clients(), context.aws_request_id, RETRY_POLICY)
    _emit_metrics(summary)
    result = {
        "test_event": summary.test_event,
        "predicted": summary.count(STATUS_PREDICTED),
        "failed": summary.count(STATUS_FAILED),
        "duplicate_or_stale": summary.stale,
        "skipped": summary.skipped,
        "retry_later": [key for key, _ in summary.retry_later],
    }
    logger.info("event processed", extra=result)
    if summary.retry_later:
        # Items for the other records are written; failing now makes Lambda redeliver the whole
        # event, which is safe: the sequencer condition turns those repeats into no-ops.
        key, first = summary.retry_later[0]
        raise InvocationFailed(
            f"{len(summary.retry_later)} object(s) need a retry, first {key!r}: {first}"
        )
    return result
