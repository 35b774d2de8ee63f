"""SageMaker launchers, one stage a command.

SageMaker launchers, one stage a command: upload, tune, train, compare, deploy, invoke, report,
rollback, teardown.

    python -m training.launch <stage> [options] [--dry-run]

Configuration: --region (AWS_REGION / AWS_DEFAULT_REGION), --bucket (SAGEMAKER_BUCKET, else the
SDK's default bucket sagemaker-{region}-{account}), --role (SAGEMAKER_ROLE_ARN), --prefix (the S3
key prefix of everything this project writes). Stages hand each other their results through
runs/ (best_hyperparameters.json, training_job.json). A walk-through: docs/deploy.md, and for a
model update (compare, deploy, reprocess, rollback) docs/operations.md.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

from training.launch.aws import DEFAULT_PREFIX, LaunchError, connect
from training.launch.stages import STAGES


class CliParser(argparse.ArgumentParser):
    """Bad arguments: one line on stderr and exit code 2, like every other user error here."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _common_flags() -> argparse.ArgumentParser:
    """The flags every stage takes, first in each stage's help."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--region", help="AWS region (default: AWS_REGION / AWS_DEFAULT_REGION)")
    common.add_argument(
        "--bucket",
        default=os.environ.get("SAGEMAKER_BUCKET"),
        help="S3 bucket (default: SAGEMAKER_BUCKET, else sagemaker-{region}-{account})",
    )
    common.add_argument(
        "--prefix", default=DEFAULT_PREFIX, help="S3 key prefix (default: %(default)s)"
    )
    common.add_argument(
        "--runs-dir",
        type=Path,
        default=Path("runs"),
        help="local folder where stages leave results for each other (default: %(default)s)",
    )
    common.add_argument(
        "--dry-run",
        action="store_true",
        help="print the exact AWS requests that would change something; change nothing",
    )
    return common


def build_parser() -> argparse.ArgumentParser:
    summary, _, details = __doc__.partition("\n\n")
    parser = CliParser(
        prog="python -m training.launch",
        description=summary,
        epilog=details.strip("\n"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    subcommands = parser.add_subparsers(dest="stage", required=True, parser_class=CliParser)
    common = _common_flags()
    for name, stage in STAGES.items():
        stage.add_arguments(subcommands.add_parser(name, parents=[common], help=stage.HELP))
    return parser


def run(args: argparse.Namespace, boto_session: Any = None) -> Any:
    """Run the stage; returns the ``Aws`` it used (its request log says what was sent)."""
    stage = STAGES[args.stage]
    # Fail on what the user can fix before touching AWS at all.
    check = getattr(stage, "check", None)
    if check is not None:
        check(args)
    aws = connect(args.region, args.bucket, args.dry_run, boto_session=boto_session)
    stage.run(args, aws)
    return aws


def _one_line(err: BaseException) -> str:
    from botocore.exceptions import (
        ClientError,
        NoCredentialsError,
        NoRegionError,
        PartialCredentialsError,
    )

    if isinstance(err, NoCredentialsError | PartialCredentialsError):
        return (
            "no AWS credentials: run `aws configure`, set AWS_PROFILE, or set "
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        )
    if isinstance(err, NoRegionError):
        return "no AWS region: pass --region or set AWS_REGION"
    if isinstance(err, ClientError):
        error = err.response.get("Error", {})
        return f"AWS refused {err.operation_name}: {error.get('Code')}: {error.get('Message')}"
    return " ".join(str(err).split()) or type(err).__name__


def _not_about_workflow_config(record: logging.LogRecord) -> bool:
    # The tuner asks its estimator for a finished job it never has; the SDK warns each time.
    return "No finished training job found" not in record.getMessage()


def _quiet_the_sdk() -> None:
    os.environ.setdefault("SAGEMAKER_SUPPRESS_V2_WARNING", "1")
    # The SDK logs its config-file search to *stdout* and every step at INFO: our own lines say
    # what started and where to look, and stdout stays the dry run's requests.
    logging.getLogger("sagemaker.config").setLevel(logging.WARNING)
    logging.getLogger("sagemaker").setLevel(logging.WARNING)
    logging.getLogger("sagemaker.estimator").addFilter(_not_about_workflow_config)


def _report_failure(args: argparse.Namespace, err: Exception) -> int | None:
    """Print ``err`` as one line and return the exit code; None for a bug (to be raised)."""
    from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError
    from sagemaker.exceptions import UnexpectedStatusException

    if isinstance(err, UnexpectedStatusException):  # a job or endpoint ended Failed
        print(f"training.launch {args.stage}: failed: {_one_line(err)}", file=sys.stderr)
        return 1
    if isinstance(err, LaunchError | BotoCoreError | ClientError | ValueError | OSError):
        hint = ""
        if args.dry_run and isinstance(err, EndpointConnectionError):
            hint = " (a dry run still sends the reads a stage needs: Describe*, Get*, List*)"
        print(f"training.launch {args.stage}: error: {_one_line(err)}{hint}", file=sys.stderr)
        return 2
    return None


def main(argv: list[str] | None = None, boto_session: Any = None) -> int:
    """Run one stage; 0 on success, 2 on a user error (one line on stderr), 1 if a job failed."""
    _quiet_the_sdk()
    args = build_parser().parse_args(argv)
    try:
        aws = run(args, boto_session=boto_session)
    except Exception as err:
        code = _report_failure(args, err)
        if code is None:
            raise
        return code
    if args.dry_run:
        changes = len(aws.log.changes())
        print(f"# dry run: nothing was changed; the {changes} request(s) above were not sent")
    return 0


if __name__ == "__main__":
    sys.exit(main())
