"""Stage 3, ``train``: one debugged, profiled training job.

Stage 3, ``train``: one debugged, profiled training job. Hyperparameters: the defaults, under
the best of ``--tuning-job`` or else RUNS_DIR/best_hyperparameters.json, under the flags. It
leaves the job's name in RUNS_DIR/training_job.json for deploy and report.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from training.launch import jobs
from training.launch.aws import Aws, resolve_role
from training.launch.stages import flags, runs

HELP = "debugged, profiled training"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    flags.add_role_flag(parser)
    flags.add_job_flags(parser)
    parser.add_argument("--tuning-job", help="take the hyperparameters from this tuning job's best")
    parser.add_argument(
        "--spot", action="store_true", help="managed spot training with checkpoints"
    )
    parser.add_argument(
        "--max-run", type=int, default=24 * 3600, help="seconds (default: %(default)s)"
    )
    parser.add_argument(
        "--max-wait", type=int, help="seconds incl. waiting for spot (>= --max-run)"
    )
    flags.add_hyperparameter_flags(parser)
    flags.add_wait_flag(parser, "the training job completes")


def check(args: argparse.Namespace) -> None:
    resolve_role(args.role)


def run(args: argparse.Namespace, aws: Aws) -> None:
    best, source = _tuned_hyperparameters(args, aws)
    hyperparameters = {**jobs.DEFAULT_HYPERPARAMETERS, **best, **flags.hyperparameters(args)}
    print(f"hyperparameters from {source}: {json.dumps(hyperparameters, sort_keys=True)}")
    jobs.train(
        aws,
        **flags.job_options(args, aws),
        hyperparameters=hyperparameters,
        spot=args.spot,
        max_run=args.max_run,
        max_wait=args.max_wait,
        wait=args.wait,
        job_file=runs.training_job_file(args),
    )


def _tuned_hyperparameters(args: argparse.Namespace, aws: Aws) -> tuple[dict[str, Any], str]:
    """The tuning results to start from, and where they came from (printed)."""
    if args.tuning_job:
        best = jobs.best_of_tuning_job(aws, args.tuning_job)["hyperparameters"]
        return best, f"tuning job {args.tuning_job}"
    best_file = runs.best_hyperparameters_file(args)
    best = jobs.load_best_hyperparameters(best_file)
    return best, str(best_file) if best else "defaults (no tuning results found)"
