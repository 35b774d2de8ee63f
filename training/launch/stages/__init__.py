"""The stages of ``python -m training.launch``.

The stages, one subcommand of ``python -m training.launch`` each, in the order a user runs
them: upload, tune, train, compare, deploy, invoke, report, rollback, teardown.

A stage module has ``HELP`` (its line in the subcommand list), ``add_arguments(parser)`` (its own
flags; the common ones are already on the parser) and ``run(args, aws)``. It may have
``check(args)``: what the user can fix, raised as ``LaunchError`` before any AWS call is made.
"""

from __future__ import annotations

from types import ModuleType

from training.launch.stages import (
    compare,
    deploy,
    invoke,
    report,
    rollback,
    teardown,
    train,
    tune,
    upload,
)

STAGES: dict[str, ModuleType] = {
    "upload": upload,
    "tune": tune,
    "train": train,
    "compare": compare,
    "deploy": deploy,
    "rollback": rollback,
    "invoke": invoke,
    "report": report,
    "teardown": teardown,
}
