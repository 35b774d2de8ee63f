"""What the launchers would send to AWS, taken from the launchers themselves in a dry run.

The reproductions must not hand-write what SageMaker receives: the training job request (its
hyperparameters, Debugger hook configuration) and the model (its container environment, the
repacked ``model.tar.gz`` with ``code/``) come from ``training.launch.jobs.train`` and
``training.launch.endpoint.deploy`` run with ``dry_run``, offline, with throwaway credentials.
S3 uploads are answered locally by the dry run; their bodies are kept here, so the source tarball
the training toolkit would download and the model archive the endpoint would load are the SDK's
own bytes.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REGION = "us-east-1"
BUCKET = "parity-bucket"
PREFIX = "dog-breeds"
ROLE = "arn:aws:iam::000000000000:role/parity"
DATA_URI = f"s3://{BUCKET}/{PREFIX}/data"


@dataclass
class Uploads:
    """S3 object bodies by key, from PutObject and multipart UploadPart calls."""

    parts: dict[str, dict[int, bytes]] = field(default_factory=dict)

    def attach(self, boto_session: Any) -> None:
        boto_session.events.register("before-parameter-build.s3.PutObject", self._put)
        boto_session.events.register("before-parameter-build.s3.UploadPart", self._put)

    def _put(self, params: dict, **_: Any) -> None:
        body = params.get("Body")
        if isinstance(body, bytes | bytearray):
            data = bytes(body)
        elif hasattr(body, "read"):
            data = body.read()
            with contextlib.suppress(AttributeError, OSError):
                body.seek(0)  # the dry run's own log and botocore read it again
        else:
            data = b""
        self.parts.setdefault(params["Key"], {})[int(params.get("PartNumber", 1))] = data

    def body(self, key_suffix: str) -> bytes:
        keys = [k for k in self.parts if k.endswith(key_suffix)]
        if len(keys) != 1:
            raise RuntimeError(f"expected one upload ending {key_suffix!r}, got {keys}")
        parts = self.parts[keys[0]]
        return b"".join(parts[n] for n in sorted(parts))


@dataclass
class Captured:
    requests: dict[str, list[dict[str, Any]]]
    uploads: Uploads

    def one(self, operation: str) -> dict[str, Any]:
        found = self.requests.get(operation, [])
        if len(found) != 1:
            raise RuntimeError(f"expected one {operation} request, got {len(found)}")
        return found[0]


def _offline_session() -> tuple[Any, Uploads]:
    """A boto3 session with throwaway credentials whose S3 uploads are kept."""
    import boto3

    os.environ.setdefault("SAGEMAKER_SUPPRESS_V2_WARNING", "1")
    logging.getLogger("sagemaker").setLevel(logging.WARNING)  # "Creating training-job ..."
    session = boto3.Session(
        region_name=REGION, aws_access_key_id="parity", aws_secret_access_key="parity"
    )
    uploads = Uploads()
    uploads.attach(session)  # before the SDK creates its clients: they copy the handlers
    return session, uploads


@contextlib.contextmanager
def dry_run_aws():
    """A launcher ``Aws`` in dry-run mode whose requests and uploads are kept, not printed."""
    from training.launch import aws as launch_aws

    session, uploads = _offline_session()
    with contextlib.redirect_stdout(io.StringIO()):
        aws = launch_aws.connect(REGION, BUCKET, dry_run=True, boto_session=session)
    aws.log.out = io.StringIO()
    yield aws, uploads


def launcher(argv: Sequence[str], workdir: Path) -> Captured:
    """``python -m training.launch ARGV --dry-run`` as a user types it: the stage's own defaults,
    hyperparameters and instance type, offline. Only what an account would supply is added (role,
    bucket, region) and a runs folder of its own, so no earlier tuning result is picked up."""
    from training.launch import cli

    account = ["--role", ROLE, "--bucket", BUCKET, "--region", REGION]
    args = cli.build_parser().parse_args(
        [*argv, "--dry-run", "--no-wait", *account, "--runs-dir", str(workdir / "runs")]
    )
    session, uploads = _offline_session()
    with contextlib.redirect_stdout(io.StringIO()):
        aws = cli.run(args, boto_session=session)
    return _captured(aws, uploads)


def _captured(aws: Any, uploads: Uploads) -> Captured:
    requests: dict[str, list[dict[str, Any]]] = {}
    for call in aws.log.calls:
        requests.setdefault(call["operation"], []).append(call["params"])
    return Captured(requests, uploads)


def training_job(hyperparameters: dict[str, Any], workdir: Path) -> Captured:
    """``python -m training.launch train``'s CreateTrainingJob request and source upload."""
    from training.launch import jobs

    with dry_run_aws() as (aws, uploads), contextlib.redirect_stdout(io.StringIO()):
        jobs.train(
            aws,
            role=ROLE,
            data_uri=DATA_URI,
            prefix=PREFIX,
            instance_type=jobs.CPU_TRAINING_INSTANCE,
            hyperparameters=hyperparameters,
            spot=False,
            max_run=3600,
            max_wait=None,
            wait=False,
            job_file=workdir / "training-job.json",
        )
    return _captured(aws, uploads)


def model_deployment(model_tar: Path, workdir: Path) -> Captured:
    """``python -m training.launch deploy``'s CreateModel request and the model archive the SDK
    repacks (the training artifact plus ``code/``) and uploads for the endpoint."""
    from training.launch import endpoint

    with dry_run_aws() as (aws, uploads), contextlib.redirect_stdout(io.StringIO()):
        endpoint.deploy(
            aws,
            role=ROLE,
            model_data=f"file://{model_tar}",
            endpoint_name=endpoint.DEFAULT_ENDPOINT_NAME,
            prefix=PREFIX,
            instance_type=endpoint.ENDPOINT_INSTANCE,
            wait=False,
            staging_dir=workdir / "staged-code",
        )
    return _captured(aws, uploads)
