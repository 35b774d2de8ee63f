"""Template tests: template.yaml translated by aws-sam-translator and deployed into the
session's moto server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
import pytest

from local.deploy_template import StackInfo, deploy_stack, load_template, translate

REPO_ROOT = Path(__file__).resolve().parents[3]
TEMPLATE = REPO_ROOT / "template.yaml"
REGION = "us-east-1"
# Non-default values everywhere, so the tests see each parameter flow to where it is used.
PARAMETERS = {
    "EndpointName": "dog-breeds-prod",
    "UploadPrefix": "incoming/photos/",
    "TopK": "5",
    "LogLevel": "DEBUG",
    "MaxConcurrency": "3",
}


@pytest.fixture(scope="module")
def sam_template() -> dict[str, Any]:
    return load_template(TEMPLATE)


@pytest.fixture(scope="module")
def translated(sam_template: dict[str, Any]) -> dict[str, Any]:
    """The CloudFormation template SAM's transform produces (CodeUri as sam package leaves it)."""
    packaged = dict(sam_template)
    resources = {k: dict(v) for k, v in sam_template["Resources"].items()}
    function = dict(resources["ClassifyUploadFunction"])
    function["Properties"] = {
        **function["Properties"],
        "CodeUri": {"Bucket": "artifacts", "Key": "code.zip"},
    }
    resources["ClassifyUploadFunction"] = function
    packaged["Resources"] = resources
    return translate(packaged, PARAMETERS, REGION)


@pytest.fixture(scope="module")
def moto_session(moto_url: str) -> tuple[boto3.session.Session, str]:
    session = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
    )
    return session, moto_url


@pytest.fixture(scope="module")
def deployed(moto_session: tuple[boto3.session.Session, str]) -> StackInfo:
    session, url = moto_session
    stack_name = "dog-breeds-template-tests"
    return deploy_stack(session, TEMPLATE, stack_name, PARAMETERS, endpoint_url=url)


@pytest.fixture(scope="module")
def aws(moto_session: tuple[boto3.session.Session, str]):
    session, url = moto_session
    return lambda service: session.client(service, endpoint_url=url)
