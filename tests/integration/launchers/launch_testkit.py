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


# What each SageMaker Create*/Delete* names, by the kind of resource.
_CREATES = {
    "CreateModel": ("model", "ModelName"),
    "CreateEndpointConfig": ("endpoint config", "EndpointConfigName"),
    "CreateEndpoint": ("endpoint", "EndpointName"),
}
_DELETES = {
    "DeleteModel": ("model", "ModelName"),
    "DeleteEndpointConfig": ("endpoint config", "EndpointConfigName"),
    "DeleteEndpoint": ("endpoint", "EndpointName"),
}


def names_created_again(*runs: Run) -> list[str]:
    """SageMaker's contract, from the request logs of ``runs`` in order (on a fresh account): a
    Create* must not name a model, endpoint config or endpoint that exists at that moment. Returns
    each violation as 'KIND NAME'; empty when the runs kept the contract."""
    existing: dict[str, set[str]] = {kind: set() for kind, _ in _CREATES.values()}
    again = []
    for run in runs:
        for call in run.log.calls:
            operation, params = call["operation"], call["params"]
            if operation in _CREATES:
                kind, field = _CREATES[operation]
                name = params.get(field)
                if name in existing[kind]:
                    again.append(f"{kind} {name}")
                existing[kind].add(name)
            elif operation in _DELETES:
                kind, field = _DELETES[operation]
                existing[kind].discard(params.get(field))
    return again
