"""Stage ``compare``: the candidate model against the live one.

Stage ``compare``: the candidate model against the live one, before a deploy switches to it.
Reads only, so it works in --dry-run too.

The candidate: --candidate, else the model of --training-job, else of the job in
RUNS_DIR/training_job.json. The live model: --live, else the model the endpoint (--endpoint-name)
serves. Each is an S3 URI of a model.tar.gz, or a local model.tar.gz or model dir. Scored on the
test split of --data (for a training job's model, by default the job's own dataset) and/or the
newest --sample PREDICTED uploads of --table, through the
endpoint's own handlers (``training.launch.compare``); the table is printed and the JSON written to
RUNS_DIR/compare.json (and --json). With --max-accuracy-drop, exit code 2 when the candidate's test
accuracy is more than that many points below the live model's.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from training.launch import compare, endpoint
from training.launch.aws import Aws, LaunchError
from training.launch.stages import flags, runs

HELP = "candidate model against the live one (reads only)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    flags.add_endpoint_flag(parser)
    models = parser.add_argument_group("the two models (S3 URI, local model.tar.gz or model dir)")
    models.add_argument("--candidate", metavar="URI|PATH", help="the model to compare")
    models.add_argument(
        "--training-job",
        help="or this job's model (default, without --candidate: runs/training_job.json)",
    )
    models.add_argument(
        "--live",
        metavar="URI|PATH",
        help="compare with this model instead of the one --endpoint-name serves",
    )
    sources = parser.add_argument_group("scored on (one or both)")
    sources.add_argument(
        "--data",
        metavar="URI|DIR",
        help="a dataset in the dogImages layout: both models on its test/ split (accuracy; "
        "default for a training job's model: the job's own dataset)",
    )
    sources.add_argument(
        "--table",
        help="the stack's predictions table (output PredictionsTableName): both models on its "
        "newest PREDICTED uploads (agreement)",
    )
    sources.add_argument(
        "--sample",
        type=int,
        default=compare.DEFAULT_SAMPLE,
        metavar="N",
        help="how many of the newest uploads (default: %(default)s)",
    )
    parser.add_argument(
        "--json", type=Path, metavar="PATH", help="also write the JSON here (always: RUNS_DIR)"
    )
    parser.add_argument(
        "--max-accuracy-drop",
        type=float,
        metavar="POINTS",
        help="exit with code 2 if the candidate's test accuracy is more than this many "
        "percentage points below the live model's (default: report only)",
    )


def check(args: argparse.Namespace) -> None:
    if not args.data and not args.table and args.candidate:
        raise LaunchError("compare needs --data (a test split) and/or --table (recent uploads)")
    if args.sample < 1:
        raise LaunchError(f"--sample {args.sample}: use 1 or more")
    if args.candidate and args.training_job:
        raise LaunchError("--candidate and --training-job both name the candidate: give one")


def run(args: argparse.Namespace, aws: Aws) -> None:
    candidate = _candidate(args, aws)
    if not args.data and not args.candidate:
        # A training job's model: scored on the test split of the job's own dataset.
        job = args.training_job or runs.saved_training_job(args)
        args.data = endpoint.training_data_of(aws, job) if job else None
        if args.data:
            print(f"on the test split of {job}'s dataset, {args.data}")
        elif not args.table:
            raise LaunchError(f"{job} has no training channel: compare needs --data or --table")
    live = args.live or compare.endpoint_model_data(aws, args.endpoint_name)
    comparison = compare.compare(
        aws, candidate=candidate, live=live, data=args.data, table=args.table, sample=args.sample
    )
    compare.report(comparison, args.runs_dir, args.json)
    if args.max_accuracy_drop is not None:
        why = compare.refusal(comparison, args.max_accuracy_drop)
        if why:
            raise LaunchError(why)


def _candidate(args: argparse.Namespace, aws: Aws) -> str:
    if args.candidate:
        return args.candidate
    job = args.training_job or runs.saved_training_job(args)
    if not job:
        raise LaunchError(
            "compare needs --candidate (s3://.../model.tar.gz or a local model) or "
            "--training-job NAME (or a train run's runs/training_job.json)"
        )
    return endpoint.model_data_of(aws, job)
