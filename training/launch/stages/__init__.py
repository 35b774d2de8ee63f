"""The seven stages, in the order a user runs them: one subcommand of ``python -m training.launch``
each, in this order.

A stage module has ``HELP`` (its line in the subcommand list), ``add_arguments(parser)`` (its own
flags; the common ones are already on the parser) and ``run(args, aws)``. It may have
``check(args)``: what the user can fix, raised as ``LaunchError`` before any AWS call is made.
"""

from __future__ import annotations

from types import ModuleType

from training.launch.stages import deploy, invoke, report, teardown, train, tune, upload

STAGES: dict[str, ModuleType] = {
    "upload": upload,
    "tune": tune,
    "train": train,
    "deploy": deploy,
    "invoke": invoke,
    "report": report,
    "teardown": teardown,
}
