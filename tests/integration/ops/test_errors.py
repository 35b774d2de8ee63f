"""What an operator sees when a command cannot run: one line on stderr, exit status 2, never a
traceback. Each command runs as its own process, with exactly the environment given."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from ops_testkit import CREDENTIALS, REGION, run_subprocess

OPERATOR_ENV = {**CREDENTIALS, "AWS_DEFAULT_REGION": REGION}
# No profile files and no instance metadata: only what the test's environment says exists.
NOTHING_CONFIGURED = {
    "AWS_CONFIG_FILE": "/nonexistent/config",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/credentials",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def assert_one_line_error(result, expected: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("python -m classify_ops: error: ")
    assert expected in lines[0]


@pytest.mark.parametrize("command", [["redrive"], ["reprocess", "--all"]])
def test_an_unknown_stack_is_named_with_its_region(stack, command):
    argv = [*command, "--stack", "no-such-stack", "--endpoint-url", stack.moto_url]

    result = run_subprocess(argv, {**OPERATOR_ENV, **NOTHING_CONFIGURED})

    assert_one_line_error(
        result, "no stack 'no-such-stack' in us-east-1 (check --stack and --region)"
    )


@pytest.fixture(scope="module")
def other_stack(stack) -> str:
    """A stack that is not this project's: one queue, no outputs."""
    template = {"Resources": {"Queue": {"Type": "AWS::SQS::Queue"}}}
    cloudformation = stack.client("cloudformation")
    cloudformation.create_stack(StackName="not-dog-breeds", TemplateBody=json.dumps(template))
    cloudformation.get_waiter("stack_create_complete").wait(
        StackName="not-dog-breeds", WaiterConfig={"Delay": 1}
    )
    return "not-dog-breeds"


@pytest.mark.parametrize(
    ("command", "missing"),
    [
        (["redrive"], "DeadLetterQueueUrl, DeadLetterQueueArn, UploadQueueArn"),
        (["reprocess", "--breed", "Pug"], "PredictionsTableName, UploadBucketName, UploadQueueUrl"),
    ],
)
def test_a_stack_without_the_outputs_is_not_taken_for_ours(stack, other_stack, command, missing):
    argv = [*command, "--stack", other_stack, "--endpoint-url", stack.moto_url]

    result = run_subprocess(argv, {**OPERATOR_ENV, **NOTHING_CONFIGURED})

    assert_one_line_error(result, f"stack 'not-dog-breeds' has no output {missing}")


def test_missing_credentials_say_how_to_provide_them(stack):
    argv = ["redrive", "--stack", stack.name, "--endpoint-url", stack.moto_url]

    result = run_subprocess(argv, {"AWS_DEFAULT_REGION": REGION, **NOTHING_CONFIGURED})

    assert_one_line_error(result, "no AWS credentials found: set AWS_PROFILE or pass --profile")


def test_a_missing_region_says_how_to_give_one(stack):
    argv = ["reprocess", "--all", "--stack", stack.name, "--endpoint-url", stack.moto_url]

    result = run_subprocess(argv, {**CREDENTIALS, **NOTHING_CONFIGURED})

    assert_one_line_error(result, "no AWS region: pass --region or set AWS_REGION")


def test_an_unknown_profile_is_one_line(stack):
    argv = ["redrive", "--stack", stack.name, "--profile", "nobody", "--region", REGION]

    result = run_subprocess(argv, NOTHING_CONFIGURED)

    assert_one_line_error(result, "nobody")


class DenyEverything(BaseHTTPRequestHandler):
    """An AWS endpoint for a principal without permissions: CloudFormation's 403 answer."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = (
            b'<ErrorResponse xmlns="http://cloudformation.amazonaws.com/doc/2010-05-15/"><Error>'
            b"<Type>Sender</Type><Code>AccessDenied</Code><Message>User: "
            b"arn:aws:iam::123456789012:user/intern is not authorized to perform: "
            b"cloudformation:DescribeStacks</Message></Error><RequestId>1</RequestId>"
            b"</ErrorResponse>"
        )
        self.send_response(403)
        self.send_header("Content-Type", "text/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def denying_endpoint() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), DenyEverything)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.mark.parametrize("command", [["redrive"], ["reprocess", "--prefix", "uploads/"]])
def test_access_denied_names_the_call_and_the_principal(denying_endpoint, command):
    argv = [*command, "--stack", "dog-breeds", "--endpoint-url", denying_endpoint]

    result = run_subprocess(argv, {**OPERATOR_ENV, **NOTHING_CONFIGURED})

    assert_one_line_error(
        result,
        "access denied to DescribeStacks: User: arn:aws:iam::123456789012:user/intern is not "
        "authorized to perform: cloudformation:DescribeStacks",
    )


def test_the_same_process_setup_with_everything_given_succeeds(clean):
    """The errors above are each its cause's, not the test's process setup."""
    argv = ["redrive", "--stack", clean.name, "--endpoint-url", clean.moto_url]

    result = run_subprocess(argv, {**OPERATOR_ENV, **NOTHING_CONFIGURED})

    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.startswith("nothing to redrive: the dead-letter queue ")
