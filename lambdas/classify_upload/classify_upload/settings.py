"""The function's configuration: the environment variables that template.yaml sets."""

from __future__ import annotations

import os
from dataclasses import dataclass

# A real-time endpoint takes up to 6 MiB a request; a serverless one 4 MB (MaxRequestBytes).
from classify_upload.images import MAX_REQUEST_BYTES as DEFAULT_MAX_REQUEST_BYTES

DEFAULT_MAX_OBJECT_BYTES = 25 * 1024 * 1024


@dataclass(frozen=True)
class Settings:
    """``TABLE_NAME``, ``ENDPOINT_NAME`` and ``UPLOAD_BUCKET`` are required; the rest have the
    template's defaults."""

    table_name: str
    endpoint_name: str
    upload_bucket: str = ""  # records naming any other bucket are dropped ("" in unit tests only)
    upload_prefix: str = "uploads/"
    top_k: int = 3
    max_object_bytes: int = DEFAULT_MAX_OBJECT_BYTES
    low_confidence_threshold: float = 0.5
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        return cls(
            table_name=env["TABLE_NAME"],
            endpoint_name=env["ENDPOINT_NAME"],
            upload_bucket=env["UPLOAD_BUCKET"],
            upload_prefix=env.get("UPLOAD_PREFIX", "uploads/"),
            top_k=int(env.get("TOP_K", "3")),
            max_object_bytes=int(env.get("MAX_OBJECT_BYTES", str(DEFAULT_MAX_OBJECT_BYTES))),
            low_confidence_threshold=float(env.get("LOW_CONFIDENCE_THRESHOLD", "0.5")),
            max_request_bytes=int(env.get("MAX_REQUEST_BYTES", str(DEFAULT_MAX_REQUEST_BYTES))),
        )
