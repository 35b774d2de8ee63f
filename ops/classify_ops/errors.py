"""What an operator sees when a command cannot run: one line, exit status 2, no traceback.

``OpsError`` is raised where the cause is known (no such stack, an output missing); AWS's own
errors are turned into one line by ``describe`` at the command line's edge, with the usual
remedy for the common ones (no credentials, access denied, a region missing).
"""

from __future__ import annotations

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    ProfileNotFound,
)

EXIT_PROBLEM = 2  # argparse's status for a usage error: "this command cannot run as asked"
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for Ctrl-C

ACCESS_DENIED_CODES = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "AuthorizationError",
        "UnauthorizedOperation",
        "AWS.SimpleQueueService.AccessDenied",
    }
)
BAD_CREDENTIALS_CODES = frozenset(
    {
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "ExpiredTokenException",
    }
)
OFFLINE_HINT = (
    "(offline stack: export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing "
    "AWS_DEFAULT_REGION=us-east-1)"
)


class OpsError(Exception):
    """A problem the operator must fix before the command can run; the message is one line."""


class Interrupted(Exception):
    """Ctrl-C, with what was done so far and how to carry on (one line)."""


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def describe(exc: BotoCoreError | ClientError) -> str:
    """One line for an AWS error, naming the usual remedy where there is one."""
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return f"no AWS credentials found: set AWS_PROFILE or pass --profile {OFFLINE_HINT}"
    if isinstance(exc, NoRegionError):
        return "no AWS region: pass --region or set AWS_REGION"
    if isinstance(exc, ProfileNotFound):
        return f"{exc} (see ~/.aws/config)"
    if isinstance(exc, EndpointConnectionError):
        return f"cannot reach {exc.kwargs.get('endpoint_url', 'the endpoint')}: is it running?"
    if isinstance(exc, ClientError):
        code = error_code(exc)
        operation = exc.operation_name
        message = exc.response.get("Error", {}).get("Message", "") or str(exc)
        if code in ACCESS_DENIED_CODES:
            return f"access denied to {operation}: {message}"
        if code in BAD_CREDENTIALS_CODES:
            return f"AWS rejected the credentials ({code}) on {operation}: {message}"
        return f"{operation} failed ({code}): {message}"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
