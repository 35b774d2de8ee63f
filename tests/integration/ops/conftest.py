"""Operator command tests: the real template deployed into the session's moto server, with SQS's
message move task added (``local.aws.moto_sqs_move``), and the commands run as an operator runs
them: ``python -m classify_ops`` in-process for the work, as a subprocess for exit codes and
stderr.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import boto3
import pytest
from moto.sqs.models import sqs_backends
from ops_testkit import CREDENTIALS, REGION, DeployedStack, drain

from classify_ops import cli
from local.aws import moto_sqs_move
from local.aws.deploy import deploy_stack

REPO_ROOT = Path(__file__).resolve().parents[3]
TEMPLATE = REPO_ROOT / "template.yaml"
STACK_NAME = "dog-breeds-ops-tests"


@pytest.fixture(scope="module")
def move_tasks(moto_url: str) -> Iterator[str]:
    """The session's moto server, with the message move task moto lacks (for this module)."""
    moto_sqs_move.install()
    yield moto_url
    moto_sqs_move.uninstall()


@pytest.fixture(scope="module")
def stack(move_tasks: str, request: pytest.FixtureRequest) -> DeployedStack:
    """The template deployed once per test module: other tests of the session may reset the
    moto server between modules, so no stack outlives its module."""
    stack_name = f"{STACK_NAME}-{request.module.__name__.rsplit('.', 1)[-1].replace('_', '-')}"
    session = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
    )
    with warnings.catch_warnings():  # moto names each resource type it does not model
        warnings.simplefilter("ignore", UserWarning)
        info = deploy_stack(
            session,
            TEMPLATE,
            stack_name,
            {"EndpointName": "dog-breeds-ops"},
            endpoint_url=move_tasks,
        )
    # moto would run the function in Docker on every message of the upload queue (its own event
    # source mapping); these tests read the queue themselves, as the offline stack's does.
    for queue in sqs_backends[info.outputs["UploadQueueArn"].split(":")[4]][REGION].queues.values():
        queue.lambda_event_source_mappings.clear()
    return DeployedStack(stack_name, move_tasks, dict(info.outputs), session)


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Credentials and region as an operator of the offline stack exports them."""
    for name, value in {**CREDENTIALS, "AWS_DEFAULT_REGION": REGION}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@pytest.fixture
def clean(stack: DeployedStack) -> Iterator[DeployedStack]:
    """Each test starts with empty queues and an empty table."""
    for url in (stack.upload_queue, stack.dead_letter_queue):
        drain(stack.client("sqs"), url)
    names = {"#b": "bucket", "#k": "key"}
    stored = stack.table.scan(ProjectionExpression="#b, #k", ExpressionAttributeNames=names)
    with stack.table.batch_writer() as batch:
        for item in stored["Items"]:
            batch.delete_item(Key={"bucket": item["bucket"], "key": item["key"]})
    yield stack


Ops = Callable[..., tuple[int, str, str]]


@pytest.fixture
def ops(stack: DeployedStack, aws_env: None, capsys: pytest.CaptureFixture[str]) -> Ops:
    """``python -m classify_ops COMMAND --stack ... --endpoint-url moto ARGS`` in this process:
    (exit status, stdout, stderr)."""

    def run(command: str, *args: str, stack_name: str = stack.name) -> tuple[int, str, str]:
        capsys.readouterr()
        argv = [command, "--stack", stack_name, "--endpoint-url", stack.moto_url, *args]
        status = cli.main(argv)
        out, err = capsys.readouterr()
        return status, out, err

    return run
