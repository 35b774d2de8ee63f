"""SageMaker launchers, one stage a command: upload, tune, train, deploy, invoke, report, teardown.

    python -m training.launch <stage> [options] [--dry-run]

Configuration: --region (AWS_REGION / AWS_DEFAULT_REGION), --bucket (SAGEMAKER_BUCKET, else the
SDK's default bucket sagemaker-{region}-{account}), --role (SAGEMAKER_ROLE_ARN), --prefix (the S3
key prefix of everything this project writes). Stages hand each other their results through
runs/ (best_hyperparameters.json, training_job.json). A walk-through of all seven stages: the
README's section "Train and deploy on SageMaker".
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from training.launch.aws import DEFAULT_PREFIX, LaunchError, connect, resolve_role
from training.launch.endpoint import DEFAULT_ENDPOINT_NAME

STAGES = ("upload", "tune", "train", "deploy", "invoke", "report", "teardown")


class CliParser(argparse.ArgumentParser):
    """Bad arguments: one line on stderr and exit code 2, like every other user error here."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _bool(value: str) -> str:
    lowered = value.lower()
    if lowered in ("true", "1", "yes"):
        return "true"
    if lowered in ("false", "0", "no"):
        return "false"
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def _hyperparameter_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("hyperparameters (train.py's names; override saved values)")
    group.add_argument("--lr", type=float)
    group.add_argument("--eps", type=float)
    group.add_argument("--weight-decay", "--weight_decay", dest="weight_decay", type=float)
    group.add_argument("--batch-size", "--batch_size", dest="batch_size", type=int)
    group.add_argument("--epochs", type=int)
    group.add_argument("--hidden-size", "--hidden_size", dest="hidden_size", type=int)
    group.add_argument("--dropout", type=float)
    group.add_argument(
        "--pretrained", type=_bool, metavar="{true,false}", help="ImageNet weights, frozen backbone"
    )
    group.add_argument("--unfreeze-stages", "--unfreeze_stages", dest="unfreeze_stages", type=int)


def _wait_flag(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--wait",
        action=argparse.BooleanOptionalAction,
        default=True,
        help=f"wait until {what} (default: wait)",
    )


def build_parser() -> argparse.ArgumentParser:
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
    role = argparse.ArgumentParser(add_help=False)
    role.add_argument("--role", help="SageMaker execution role ARN (default: SAGEMAKER_ROLE_ARN)")
    job = argparse.ArgumentParser(add_help=False)
    job.add_argument("--data", help="S3 URI of the dataset (default: s3://BUCKET/PREFIX/dogImages)")
    job.add_argument(
        "--instance-type",
        help="training instance (default: --cpu's, else SAGEMAKER_TRAINING_INSTANCE, "
        "else ml.g4dn.xlarge)",
    )
    job.add_argument("--cpu", action="store_true", help="train on a CPU instance (ml.m5.2xlarge)")
    job.add_argument("--framework-version", default=None, help="PyTorch training image (2.8.0)")
    job.add_argument("--py-version", default=None, help="Python of the image (py312)")
    endpoint = argparse.ArgumentParser(add_help=False)
    endpoint.add_argument(
        "--endpoint-name",
        default=os.environ.get("ENDPOINT_NAME", DEFAULT_ENDPOINT_NAME),
        help="the SAM template's EndpointName (default: ENDPOINT_NAME or %(default)s)",
    )

    summary, _, details = __doc__.partition("\n\n")
    parser = CliParser(
        prog="python -m training.launch",
        description=summary,
        epilog=details.strip("\n"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    stages = parser.add_subparsers(dest="stage", required=True, parser_class=CliParser)

    p = stages.add_parser("upload", parents=[common], help="dataset folder or zip to S3")
    p.add_argument(
        "source", type=Path, help="dogImages folder (train/ valid/ test/) or dogImages.zip"
    )
    p.add_argument("--to", help="destination S3 URI (default: s3://BUCKET/PREFIX/dogImages)")

    p = stages.add_parser("tune", parents=[common, role, job], help="hyperparameter tuning job")
    p.add_argument(
        "--max-jobs", type=int, default=8, help="training jobs in all (default: %(default)s)"
    )
    p.add_argument(
        "--max-parallel-jobs",
        type=int,
        default=2,
        help="training jobs at a time (default: %(default)s)",
    )
    p.add_argument("--attach", metavar="TUNING_JOB", help="save the best of an existing tuning job")
    _hyperparameter_flags(p)
    _wait_flag(p, "the tuning job completes and save its best hyperparameters")

    p = stages.add_parser("train", parents=[common, role, job], help="debugged, profiled training")
    p.add_argument("--tuning-job", help="take the hyperparameters from this tuning job's best")
    p.add_argument("--spot", action="store_true", help="managed spot training with checkpoints")
    p.add_argument("--max-run", type=int, default=24 * 3600, help="seconds (default: %(default)s)")
    p.add_argument("--max-wait", type=int, help="seconds incl. waiting for spot (>= --max-run)")
    _hyperparameter_flags(p)
    _wait_flag(p, "the training job completes")

    p = stages.add_parser("deploy", parents=[common, role, endpoint], help="model to an endpoint")
    p.add_argument(
        "--training-job", help="deploy this job's model (default: runs/training_job.json)"
    )
    p.add_argument("--model-data", help="or this model.tar.gz S3 URI")
    p.add_argument(
        "--instance-type",
        default=os.environ.get("SAGEMAKER_ENDPOINT_INSTANCE", "ml.t2.medium"),
        help="endpoint instance (default: SAGEMAKER_ENDPOINT_INSTANCE or %(default)s)",
    )
    p.add_argument("--framework-version", default=None, help="PyTorch inference image (2.6.0)")
    p.add_argument("--py-version", default=None, help="Python of the image (py312)")
    _wait_flag(p, "the endpoint is InService")

    p = stages.add_parser("invoke", parents=[common, endpoint], help="classify a local image")
    p.add_argument("image", type=Path, help="a .jpg, .jpeg, .png or .webp file")
    p.add_argument("--top-k", type=int, default=5, help="breeds to print (default: %(default)s)")

    p = stages.add_parser("report", parents=[common], help="rules, ProfilerReport, loss curves")
    p.add_argument("--training-job", help="default: runs/training_job.json")
    p.add_argument("--trial", help="Debugger output (S3 URI or local folder) instead of the job's")
    p.add_argument("--out", type=Path, help="where to write (default: RUNS_DIR/report)")

    stages.add_parser("teardown", parents=[common, endpoint], help="delete endpoint, config, model")
    return parser


def _saved_training_job(args: argparse.Namespace) -> str | None:
    path = args.runs_dir / "training_job.json"
    if path.exists():
        return json.loads(path.read_text()).get("training_job")
    return None


def _hyperparameters_from_flags(args: argparse.Namespace) -> dict[str, Any]:
    from training.launch.jobs import HYPERPARAMETER_NAMES

    return {n: getattr(args, n) for n in HYPERPARAMETER_NAMES if getattr(args, n, None) is not None}


def _job_options(args: argparse.Namespace, aws: Any) -> dict[str, Any]:
    from training.launch import jobs
    from training.launch.data import default_data_uri

    # An explicit flag beats the environment: --cpu must not be overridden by a GPU default.
    instance = args.instance_type or (
        jobs.CPU_TRAINING_INSTANCE
        if args.cpu
        else os.environ.get("SAGEMAKER_TRAINING_INSTANCE") or jobs.GPU_TRAINING_INSTANCE
    )
    return {
        "role": resolve_role(args.role),
        "data_uri": args.data or default_data_uri(aws.bucket, args.prefix),
        "prefix": args.prefix,
        "instance_type": instance,
        "framework_version": args.framework_version or jobs.TRAINING_FRAMEWORK_VERSION,
        "py_version": args.py_version or jobs.TRAINING_PY_VERSION,
    }


def run(args: argparse.Namespace, boto_session: Any = None) -> Any:
    """Run the stage; returns the ``Aws`` it used (its request log says what was sent)."""
    # Fail on what the user can fix before touching AWS at all.
    if args.stage in ("tune", "train", "deploy") and not getattr(args, "attach", None):
        resolve_role(args.role)
    if args.stage == "invoke" and args.top_k < 1:
        raise LaunchError("--top-k must be at least 1")
    aws = connect(args.region, args.bucket, args.dry_run, boto_session=boto_session)

    if args.stage == "upload":
        from training.launch.data import default_data_uri, upload_dataset

        upload_dataset(aws, args.source, args.to or default_data_uri(aws.bucket, args.prefix))

    elif args.stage == "tune":
        from training.launch import jobs

        best_file = args.runs_dir / "best_hyperparameters.json"
        if args.attach:
            jobs.save_best(aws, args.attach, best_file)
            return aws
        jobs.tune(
            aws,
            **_job_options(args, aws),
            static_hyperparameters={
                **jobs.DEFAULT_HYPERPARAMETERS,
                **_hyperparameters_from_flags(args),
            },
            max_jobs=args.max_jobs,
            max_parallel_jobs=args.max_parallel_jobs,
            wait=args.wait,
            best_file=best_file,
        )

    elif args.stage == "train":
        from training.launch import jobs

        best_file = args.runs_dir / "best_hyperparameters.json"
        if args.tuning_job:
            best = jobs.best_of_tuning_job(aws, args.tuning_job)["hyperparameters"]
            source = f"tuning job {args.tuning_job}"
        else:
            best = jobs.load_best_hyperparameters(best_file)
            source = str(best_file) if best else "defaults (no tuning results found)"
        hyperparameters = {
            **jobs.DEFAULT_HYPERPARAMETERS,
            **best,
            **_hyperparameters_from_flags(args),
        }
        print(f"hyperparameters from {source}: {json.dumps(hyperparameters, sort_keys=True)}")
        jobs.train(
            aws,
            **_job_options(args, aws),
            hyperparameters=hyperparameters,
            spot=args.spot,
            max_run=args.max_run,
            max_wait=args.max_wait,
            wait=args.wait,
            job_file=args.runs_dir / "training_job.json",
        )

    elif args.stage == "deploy":
        from training.launch import endpoint

        model_data = args.model_data
        if not model_data:
            job = args.training_job or _saved_training_job(args)
            if not job:
                raise LaunchError(
                    "deploy needs --training-job NAME or --model-data s3://.../model.tar.gz"
                )
            model_data = endpoint.model_data_of(aws, job)
        with tempfile.TemporaryDirectory(prefix="endpoint-code-") as tmp:
            endpoint.deploy(
                aws,
                role=resolve_role(args.role),
                model_data=model_data,
                endpoint_name=args.endpoint_name,
                prefix=args.prefix,
                instance_type=args.instance_type,
                wait=args.wait,
                staging_dir=Path(tmp) / "code",
                framework_version=args.framework_version or endpoint.INFERENCE_FRAMEWORK_VERSION,
                py_version=args.py_version or endpoint.INFERENCE_PY_VERSION,
            )

    elif args.stage == "invoke":
        from training.launch import endpoint

        endpoint.invoke(aws, endpoint_name=args.endpoint_name, image=args.image, top_k=args.top_k)

    elif args.stage == "report":
        from training.launch import report

        job = args.training_job or (None if args.trial else _saved_training_job(args))
        report.report(
            aws,
            training_job=job,
            trial_path=args.trial,
            out_dir=args.out or args.runs_dir / "report",
        )

    elif args.stage == "teardown":
        from training.launch import endpoint

        endpoint.teardown(aws, endpoint_name=args.endpoint_name)
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


def main(argv: list[str] | None = None, boto_session: Any = None) -> int:
    """Run one stage; 0 on success, 2 on a user error (one line on stderr), 1 if a job failed."""
    from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

    os.environ.setdefault("SAGEMAKER_SUPPRESS_V2_WARNING", "1")
    # The SDK logs its config-file search to *stdout* and every step at INFO: our own lines say
    # what started and where to look, and stdout stays the dry run's requests.
    logging.getLogger("sagemaker.config").setLevel(logging.WARNING)
    logging.getLogger("sagemaker").setLevel(logging.WARNING)
    logging.getLogger("sagemaker.estimator").addFilter(_not_about_workflow_config)
    args = build_parser().parse_args(argv)
    try:
        aws = run(args, boto_session=boto_session)
    except Exception as err:
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
        raise
    if args.dry_run:
        changes = len(aws.log.changes())
        print(f"# dry run: nothing was changed; the {changes} request(s) above were not sent")
    return 0


if __name__ == "__main__":
    sys.exit(main())
