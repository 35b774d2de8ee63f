"""Session fixtures shared by every test area: the small default dataset and a model trained on it
from random init (once per session, in this process through ``trainer.main`` as a user's
arguments would run it). Dataset and recipe are ``local.demo.default_model``'s, the ones the demo
uses."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from local.demo import default_model

os.environ.setdefault("SAGEMAKER_SUPPRESS_V2_WARNING", "1")


@dataclass(frozen=True)
class TrainingRun:
    model_dir: Path
    summary: dict[str, Any]
    stdout: str
    args: list[str]


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``train/ valid/ test/`` with ``NNN.Breed/*.jpg`` folders, 4 learnable classes."""
    return default_model.make_dataset(tmp_path_factory.mktemp("tiny") / "dogImages", seed=0)


@pytest.fixture(scope="session")
def tiny_training(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> TrainingRun:
    """One training run from random init: its model dir, summary and stdout (metric lines)."""
    from dog_breeds.training import trainer

    model_dir = tmp_path_factory.mktemp("trained") / "model"
    args = default_model.train_args(tiny_dataset, model_dir)
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        summary = trainer.main(args)
    return TrainingRun(model_dir, summary, stdout.getvalue(), args)


@pytest.fixture(scope="session")
def trained_artifact(tiny_training: TrainingRun) -> Path:
    """A model dir as SM_MODEL_DIR holds it after training (model.pth, classes.json, ...)."""
    return tiny_training.model_dir


def _free_gib(path: Path) -> float:
    return shutil.disk_usage(path).free / 2**30


def pytest_report_header(config: pytest.Config) -> str:
    """Free disk where the tests write their temporary folders, and at the repo."""
    tmp = Path(tempfile.gettempdir())
    repo = config.rootpath
    return f"disk free: {_free_gib(tmp):.1f} GiB under {tmp}, {_free_gib(repo):.1f} GiB at {repo}"


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    tmp = Path(tempfile.gettempdir())
    terminalreporter.write_line(f"disk free at the end: {_free_gib(tmp):.1f} GiB under {tmp}")


# ---------------------------------------------------------------------------- leaked workers
# The processes the offline stack starts for the function and the endpoint (local/*/worker.py).
WORKER_SCRIPTS = ("local/function/worker.py", "local/endpoint/worker.py")


def worker_processes(root: int | None = None) -> dict[int, str]:
    """Function and endpoint worker processes descended from ``root`` (this process): pid ->
    command line, read from /proc."""
    parents: dict[int, int] = {}
    commands: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = (entry / "stat").read_text()
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
            commands[int(entry.name)] = command.decode(errors="replace")
    ours, frontier = set(), {root or os.getpid()}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - ours
        ours |= frontier
    return {
        pid: commands[pid]
        for pid in ours
        if any(script in commands.get(pid, "") for script in WORKER_SCRIPTS)
    }


@pytest.fixture(scope="module", autouse=True)
def no_worker_outlives_its_module():
    """Every container and sandbox a module starts is closed by its fixtures: a worker process
    still running once the module's fixtures are torn down fails the run (and is stopped)."""
    yield
    leftover = worker_processes()
    for pid in leftover:
        with contextlib.suppress(OSError):
            os.kill(pid, 9)
    if leftover:
        pytest.fail(f"worker processes outlived their module: {leftover}", pytrace=False)
