"""Unit tests: pure functions of every package, no server, no training run, seconds in all
(``make test-fast``)."""

from __future__ import annotations

import os

from aws_lambda_powertools import Logger

# The function's modules log through Powertools child loggers whose parent the handler module
# creates on Lambda; unit tests call the modules without importing the handler.
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "1")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "DogBreeds")
os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "classify_upload")
Logger()
