"""The function's configuration: the environment variables that template.yaml sets."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Settings:
    """``TABLE_NAME`` and ``ENDPOINT_NAME`` are required; the rest have the template's defaults."""

    table_name: str
    endpoint_name: str
    upload_prefix: str = "uploads/"
    top_k: int = 3

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        return cls(
            table_name=env["TABLE_NAME"],
            endpoint_name=env["ENDPOINT_NAME"],
            upload_prefix=env.get("UPLOAD_PREFIX", "uploads/"),
            top_k=int(env.get("TOP_K", "3")),
        )
