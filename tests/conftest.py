"""Session fixtures shared by every test area: the small default dataset and a model trained on it
from random init (once per run, through ``trainer.main`` as a user's arguments would run it).
Dataset and recipe are ``local.demo.default_model``'s, the ones the demo uses.

``make test`` runs the suite in two pytest-xdist workers: the first worker to need the dataset or
the model builds it in a folder both share, the other waits for it and reads it. Each worker's
torch gets its share of the cores (two trainings at once, each with every core's threads, took
413 s instead of 64 s on 2 cores)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from filelock import FileLock

from local.demo import default_model

os.environ.setdefault("SAGEMAKER_SUPPRESS_V2_WARNING", "1")


@dataclass(frozen=True)
class TrainingRun:
    model_dir: Path
    summary: dict[str, Any]
    stdout: str
    args: list[str]


def pytest_configure(config: pytest.Config) -> None:
    """In an xdist worker, torch's threads are this worker's share of the cores."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        import torch

        torch.set_num_threads(max(1, len(os.sched_getaffinity(0)) // workers))


# The modules that take longest (their times: docs/performance.md#the-test-suite), roughly longest
# first; every other module follows in collection order, the many short unit modules last. With
# two workers each taking one module at a time (make test), no long one starts near the end. The
# first trains on its own: one worker runs it while the other trains the session's model, which
# most of the next ones need.
LONGEST_FIRST = (
    "tests/integration/training/test_train_as_job.py",
    "tests/e2e/test_e2e_update.py",
    "tests/e2e/test_e2e_outage.py",
    "tests/e2e/test_e2e_burst.py",
    "tests/e2e/test_e2e_demo.py",
    "tests/e2e/test_e2e_local_cli.py",
    "tests/integration/launchers/test_launch_compare.py",
    "tests/integration/launchers/test_launch_update.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Order modules as ``LONGEST_FIRST`` says; tests within a module keep their order."""
    rank = {path: i for i, path in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.relative_to(config.rootpath).as_posix(), 99))


@contextlib.contextmanager
def built_once(tmp_path_factory: pytest.TempPathFactory, name: str) -> Iterator[tuple[Path, bool]]:
    """A folder every xdist worker of this run shares (this session's own folder without xdist),
    and whether the caller must build it now. Held under a lock: the first caller builds, the
    others wait, then reuse it. A build that raises leaves it unbuilt for the next caller."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # the run's folder; each worker's own is popen-gwN inside it
    folder, built = base / f"shared-{name}", base / f"shared-{name}.built"
    with FileLock(base / f"shared-{name}.lock"):
        if not built.exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            yield folder, True
            built.touch()
        else:
            yield folder, False


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``train/ valid/ test/`` with ``NNN.Breed/*.jpg`` folders, 4 learnable classes."""
    with built_once(tmp_path_factory, "tiny") as (folder, build):
        if build:
            default_model.make_dataset(folder / "dogImages", seed=0)
    return folder / "dogImages"


@pytest.fixture(scope="session")
def tiny_training(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> TrainingRun:
    """One training run from random init: its model dir, summary and stdout (metric lines)."""
    with built_once(tmp_path_factory, "trained") as (folder, build):
        if build:
            from dog_breeds.training import trainer

            args = default_model.train_args(tiny_dataset, folder / "model")
            stdout = io.StringIO()
            with contextlib.redirect_stdout(stdout):
                summary = trainer.main(args)
            run = {"summary": summary, "stdout": stdout.getvalue(), "args": args}
            (folder / "run.json").write_text(json.dumps(run))
    run = json.loads((folder / "run.json").read_text())
    return TrainingRun(folder / "model", run["summary"], run["stdout"], run["args"])


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
