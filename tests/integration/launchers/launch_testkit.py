"""Shared by the launcher tests: the test account's names and what a launcher run produced."""

from __future__ import annotations

import io
import json
import tarfile
from dataclasses import dataclass
from typing import Any

from training.launch.aws import RequestLog

REGION = "us-east-1"
BUCKET = "launch-test-bucket"
ROLE = "arn:aws:iam::123456789012:role/SageMakerExecution"


@dataclass
class Run:
    rc: int
    out: str
    err: str
    log: RequestLog

    def requests(self, operation: str) -> list[dict[str, Any]]:
        """The parameters of every call to ``operation`` that left the process (or would have)."""
        return self.log.find(operation)

    def dry_run_requests(self) -> list[tuple[str, dict[str, Any]]]:
        """(operation, params) for every '# dry run: would call SERVICE OP' block on stdout."""
        decoder = json.JSONDecoder()
        found, text, marker = [], self.out, "# dry run: would call "
        while (start := text.find(marker)) >= 0:
            header_end = text.index("\n", start)
            operation = text[start + len(marker) : header_end].split()[-1]
            params, end = decoder.raw_decode(text, header_end + 1)
            found.append((operation, params))
            text = text[end:]
        return found


def model_tarball(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def tar_names(data: bytes) -> set[str]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        return {m.name.lstrip("./") for m in tar.getmembers() if m.isfile()}
