"""Stage 2, ``tune``: a hyperparameter tuning job.

Stage 2, ``tune``: a hyperparameter tuning job. Waited for (the default), it leaves its best
hyperparameters in RUNS_DIR/best_hyperparameters.json for train; ``--attach JOB`` saves those of
an existing tuning job and starts nothing.
"""

from __future__ import annotations

import argparse

from training.launch import jobs
from training.launch.aws import Aws, resolve_role
from training.launch.stages import flags, runs

HELP = "hyperparameter tuning job"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    flags.add_role_flag(parser)
    flags.add_job_flags(parser)
    parser.add_argument(
        "--max-jobs", type=int, default=8, help="training jobs in all (default: %(default)s)"
    )
    parser.add_argument(
        "--max-parallel-jobs",
        type=int,
        default=2,
        help="training jobs at a time (default: %(default)s)",
    )
    parser.add_argument(
        "--attach", metavar="TUNING_JOB", help="save the best of an existing tuning job"
    )
    flags.add_hyperparameter_flags(parser)
    flags.add_wait_flag(parser, "the tuning job completes and save its best hyperparameters")


def check(args: argparse.Namespace) -> None:
    # Attaching only reads a finished job: no role needed.
    if not args.attach:
        resolve_role(args.role)


def run(args: argparse.Namespace, aws: Aws) -> None:
    best_file = runs.best_hyperparameters_file(args)
    if args.attach:
        jobs.save_best(aws, args.attach, best_file)
        return
    jobs.tune(
        aws,
        **flags.job_options(args, aws),
        static_hyperparameters={**jobs.DEFAULT_HYPERPARAMETERS, **flags.hyperparameters(args)},
        max_jobs=args.max_jobs,
        max_parallel_jobs=args.max_parallel_jobs,
        wait=args.wait,
        best_file=best_file,
    )
