"""The files in RUNS_DIR (``--runs-dir``, default runs/) through which stages hand on results.

``best_hyperparameters.json``: written by tune, read by train. ``training_job.json``
(``{"training_job": NAME}``): written by train, read by deploy and report. ``training.launch.jobs``
writes both (and reads the first); this module says where they are.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def best_hyperparameters_file(args: argparse.Namespace) -> Path:
    return args.runs_dir / "best_hyperparameters.json"


def training_job_file(args: argparse.Namespace) -> Path:
    return args.runs_dir / "training_job.json"


def saved_training_job(args: argparse.Namespace) -> str | None:
    """The name train saved last, if it saved one."""
    path = training_job_file(args)
    if path.exists():
        return json.loads(path.read_text()).get("training_job")
    return None
