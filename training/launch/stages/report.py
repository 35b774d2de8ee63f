"""Stage 6, ``report``: what Debugger and Profiler found.

Stage 6, ``report``: what Debugger and Profiler found for --training-job (else the job in
RUNS_DIR/training_job.json), or only the loss curves of a --trial; written to RUNS_DIR/report.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from training.launch import report
from training.launch.aws import Aws
from training.launch.stages import runs

HELP = "rules, ProfilerReport, loss curves"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--training-job", help="default: runs/training_job.json")
    parser.add_argument(
        "--trial", help="Debugger output (S3 URI or local folder) instead of the job's"
    )
    parser.add_argument("--out", type=Path, help="where to write (default: RUNS_DIR/report)")


def run(args: argparse.Namespace, aws: Aws) -> None:
    # With only --trial, the saved job's rules and ProfilerReport would be of another run.
    job = args.training_job or (None if args.trial else runs.saved_training_job(args))
    report.report(
        aws,
        training_job=job,
        trial_path=args.trial,
        out_dir=args.out or args.runs_dir / "report",
    )
