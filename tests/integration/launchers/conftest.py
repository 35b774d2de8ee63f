"""The session's moto server standing in for AWS, with SageMaker's control plane made strict
(``local.aws.moto_sagemaker``: Create* refuses a name that exists, UpdateEndpoint exists), and a way
to run launcher stages against it in-process."""

from __future__ import annotations

import time
import types
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
import requests
from launch_testkit import BUCKET, REGION, Run

from local.aws import moto_sagemaker
from training.launch import cli
from training.launch.aws import RequestLog


@pytest.fixture(scope="module", autouse=True)
def strict_sagemaker() -> Iterator[None]:
    """For each launcher test module: moto refuses what SageMaker refuses (counted install)."""
    moto_sagemaker.install()
    yield
    moto_sagemaker.uninstall()


@pytest.fixture
def aws(moto_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    """Every boto3 client of the test talks to a fresh moto; no real credentials or config."""
    requests.post(f"{moto_url}/moto-api/reset", timeout=10)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "SAGEMAKER_ROLE_ARN", "SAGEMAKER_BUCKET"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("SAGEMAKER_SUPPRESS_V2_WARNING", "1")
    boto3.client("s3", region_name=REGION).create_bucket(Bucket=BUCKET)
    yield moto_url


@pytest.fixture
def run_launch(
    aws: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
):
    """Run ``python -m training.launch <stage> ...`` in-process; common flags point it at the
    test bucket."""
    import sagemaker.session

    # moto finishes jobs and endpoints at once: the SDK's 5-30 s polling sleeps are just waiting.
    fast_time = types.SimpleNamespace(
        **{n: getattr(time, n) for n in dir(time) if not n.startswith("_")}
    )
    fast_time.sleep = lambda seconds: None
    monkeypatch.setattr(sagemaker.session, "time", fast_time)

    def run(*argv: str, common: bool = True) -> Run:
        session = boto3.Session(region_name=REGION)
        log = RequestLog()  # records only: the launcher attaches its own (dry-run) log too
        log.attach(session)
        args = list(argv)
        if common:
            args += ["--bucket", BUCKET, "--runs-dir", str(tmp_path / "runs")]
        capsys.readouterr()
        rc = cli.main(args, boto_session=session)
        captured = capsys.readouterr()
        return Run(rc, captured.out, captured.err, log)

    return run
