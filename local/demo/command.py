"""The whole system, end to end, on one machine: what `make demo` runs.

    python -m local demo [--data-dir DOGIMAGES] [--epochs N] [--workdir DIR] [--keep-running]

1. dataset   the small default (``local.demo.default_model``) in the dogImages layout, or
             ``--data-dir``
2. train     ``training/container/train.py`` from random init (subprocess; its progress is shown)
3. package   ``model.tar.gz`` as SageMaker stores it, extracted again for the endpoint
4. stack     moto + ``template.yaml`` + the endpoint + the queue's event source (``local.stack``)
5. upload    the test split plus bad files, through the S3 API
6. results   wait until every upload has its item, read the table, score it
Training runs in a subprocess, the function in the stack's worker processes, everything else in
this process. The last line printed is one JSON object; the exit status is 0 only if every upload
is accounted for (an item each, with the status expected of it).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shlex
import shutil
import subprocess
import sys
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from local.demo import default_model
from local.demo.uploads import (
    Upload,
    bad_uploads,
    format_table,
    progress_printer,
    summarize,
    upload_all,
    uploads_from_test_split,
    wait_for_items,
)
from local.signals import terminate_on_sigterm, wait_for_interrupt
from local.stack import ENDPOINT_LOG, LocalStack
from local.up import cli_lines, describe

DEFAULT_WORKDIR = default_model.REPO_ROOT / "runs" / "demo"


def say(message: str) -> None:
    print(message, flush=True)


class StageClock:
    """Seconds per stage, printed as each stage ends, and the total since the clock started."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._started = time.perf_counter()

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        # Recorded only when the stage succeeds: a failure ends the demo with its traceback.
        t0 = time.perf_counter()
        yield
        self.seconds[name] = round(time.perf_counter() - t0, 2)
        say(f"[{name}] {self.seconds[name]:.1f} s")

    def stop(self) -> None:
        self.seconds["total"] = round(time.perf_counter() - self._started, 2)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m local demo", description="Train, deploy and use the system offline."
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="a dataset in the dogImages layout (train/ valid/ test/) instead of the generated one",
    )
    parser.add_argument("--epochs", type=int, default=None, help=f"default {default_model.EPOCHS}")
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    parser.add_argument(
        "--model", type=Path, help="serve this model dir or model.tar.gz; skip training"
    )
    parser.add_argument(
        "--train-args",
        default=None,
        help="extra train.py flags, one string (e.g. '--pretrained true --image_size 224')",
    )
    parser.add_argument(
        "--uploads-per-class", type=int, default=None, help="upload at most N test images a class"
    )
    parser.add_argument("--timeout", type=float, default=None, help="seconds to wait for results")
    parser.add_argument(
        "--keep-running", action="store_true", help="leave the stack up afterwards (Ctrl-C stops)"
    )
    return parser.parse_args(argv)


def prepare_dataset(data_dir: Path | None, workdir: Path) -> Path:
    """Stage 1: ``--data-dir`` as given, else the small default generated into the workdir."""
    if data_dir:
        data_dir = data_dir.resolve()
        say(f"== 1/6 dataset: {data_dir}")
    else:
        say("== 1/6 dataset: generating the small default (dogImages layout)")
        data_dir = default_model.make_dataset(workdir / "data")
    counts = {s: sum(1 for _ in (data_dir / s).glob("*/*")) for s in ("train", "valid", "test")}
    say(f"  {data_dir}: {counts}")
    return data_dir


def train_model(
    args: argparse.Namespace, data_dir: Path, workdir: Path
) -> tuple[Path, dict[str, Any]]:
    """Stage 2: the model to serve (``--model``, or one trained now) and train.py's summary."""
    if args.model:
        say(f"== 2/6 train: skipped, serving {args.model}")
        return args.model.resolve(), {}
    epochs = args.epochs or default_model.EPOCHS
    say(f"== 2/6 train: training/container/train.py, {epochs} epochs from random init")
    # The recipe is made for the default dataset; a user's dataset gets train.py's defaults.
    extra = list(default_model.RECIPE) if not args.data_dir else []
    extra += shlex.split(args.train_args or "")
    summary = default_model.train(data_dir, workdir / "model", epochs, extra)
    return workdir / "model", summary


def package_model(model_source: Path, workdir: Path) -> Path:
    """Stage 3: ``model.tar.gz`` (unless given one), extracted where the endpoint loads it."""
    say("== 3/6 package: model.tar.gz")
    if model_source.is_file():
        tar_path = model_source
    else:
        tar_path = default_model.package(model_source, workdir / "model.tar.gz")
    model_dir = default_model.extract(tar_path, workdir / "serving" / "model")
    say(f"  {tar_path} ({tar_path.stat().st_size / 1e6:.1f} MB) → {model_dir}")
    return model_dir


def start_stack(model_dir: Path, log_dir: Path, running: contextlib.ExitStack) -> LocalStack:
    """Stage 4: the stack, left running until ``running`` closes."""
    say("== 4/6 stack: moto + template.yaml + endpoint + S3 → SQS → function")
    shutil.rmtree(log_dir, ignore_errors=True)
    stack = running.enter_context(LocalStack(model_dir, log_dir=log_dir))
    assert stack.facts is not None
    say("  " + describe(stack).replace("\n", "\n  "))
    say(f"  function logs: {log_dir}/sandbox-*.log; endpoint: {log_dir}/{ENDPOINT_LOG}")
    return stack


def upload(stack: LocalStack, data_dir: Path, per_class: int | None) -> list[Upload]:
    """Stage 5: the test split (at most ``per_class`` a class), then the bad files."""
    assert stack.facts is not None
    prefix = stack.facts.function.environment.get("UPLOAD_PREFIX", "uploads/")
    good = uploads_from_test_split(data_dir, prefix, per_class)
    if not good:
        raise RuntimeError(f"no test images under {data_dir / 'test'}")
    uploads = good + bad_uploads(good[0], prefix)
    say(f"== 5/6 upload: {len(good)} test images + {len(uploads) - len(good)} bad files")
    upload_all(stack.client("s3"), stack.facts.bucket, uploads)
    return uploads


def collect_results(
    stack: LocalStack, uploads: list[Upload], timeout: float | None
) -> dict[str, Any]:
    """Stage 6: one item per upload, or what is still missing once nothing is left to run."""
    assert stack.facts is not None
    say("== 6/6 results: waiting for one item per upload")
    return wait_for_items(
        stack.table(),
        stack.facts.bucket,
        [u.key for u in uploads],
        timeout or 60 + 2.0 * len(uploads),
        progress_printer("  results"),
        # The queue empty and nothing running: what has no item by now never will (lost, or in
        # the dead-letter queue).
        settled=lambda: stack.wait_idle(1.0),
    )


def report(stack: LocalStack, summary: dict[str, Any], dead_letters: list[Any]) -> None:
    """The table of uploads and what the function did, as the user reads them."""
    assert stack.facts is not None and stack.event_source is not None
    say("")
    say(format_table(summary["rows"]))
    say("")
    stats = stack.event_source.stats
    say(
        f"function: {stats.invocations} invocations ({stats.errors} errors) for "
        f"{stats.messages_received} messages, {stats.messages_deleted} deleted, "
        f"{stats.cold_starts} cold starts, max concurrency {stats.max_concurrency_seen} "
        f"(cap {stack.facts.event_source.maximum_concurrency}), peak memory "
        f"{stats.peak_memory_used_mb} MB of {stack.facts.function.memory_mb}; "
        f"dead-letter queue: {len(dead_letters)} messages"
    )


def keep_running(stack: LocalStack, example_breed: str) -> None:
    """``--keep-running``: print the CLI lines, wait for Ctrl-C (the demo then ends normally)."""
    say("\n" + "\n".join(cli_lines(stack, example_breed)))
    say("\nStack left running (--keep-running). Ctrl-C to stop.")
    try:
        wait_for_interrupt()
    except KeyboardInterrupt:
        say("\nstopping")


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The demo's stages; returns the final summary (without printing it)."""
    workdir: Path = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    clock = StageClock()
    with clock.stage("dataset"):
        data_dir = prepare_dataset(args.data_dir, workdir)
    with clock.stage("train"):
        model_source, train_summary = train_model(args, data_dir, workdir)
    with clock.stage("package"):
        model_dir = package_model(model_source, workdir)
    with contextlib.ExitStack() as running:
        with clock.stage("stack"):
            stack = start_stack(model_dir, workdir / "logs", running)
        with clock.stage("upload"):
            uploads = upload(stack, data_dir, args.uploads_per_class)
        with clock.stage("results"):
            items = collect_results(stack, uploads, args.timeout)
        summary = summarize(uploads, items)
        dead_letters = stack.dead_letters()
        report(stack, summary, dead_letters)
        clock.stop()  # the total leaves out the time kept running
        if args.keep_running:
            keep_running(stack, uploads[0].true_class or "Some_breed")
    return {
        "uploaded": summary["uploaded"],
        "items": summary["items"],
        "predicted": summary["predicted"],
        "failed": summary["failed"],
        "lost": summary["lost"],
        "unexpected_status": summary["unexpected_status"],
        "accuracy": summary["accuracy"],
        "train_test_accuracy": train_summary.get("test_accuracy"),
        "dead_letters": len(dead_letters),
        "function": function_runtime(stack),
        "seconds": clock.seconds,
    }


def function_runtime(stack: LocalStack) -> dict[str, Any]:
    """How the function ran: ``sam build``'s package on the runtime's python, or the fallback."""
    function = stack.function
    assert function is not None
    version = subprocess.run(
        [function.python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    return {"built": function.built, "python": version}


def main(argv: list[str] | None = None) -> int:
    """``python -m local demo``: run the stages, print the summary and then its JSON line."""
    args = parse_args(argv)
    with terminate_on_sigterm():
        try:
            result = run(args)
        except KeyboardInterrupt:
            print("\ninterrupted", file=sys.stderr)
            return 130
        except Exception as exc:  # still end with the one JSON line that scripts read
            traceback.print_exc()
            print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}), flush=True)
            return 1
    ok = result["lost"] == 0 and not result["unexpected_status"]
    say(
        f"\n{result['items']}/{result['uploaded']} uploads have an item "
        f"({result['predicted']} PREDICTED, {result['failed']} FAILED, {result['lost']} lost); "
        f"accuracy on the test images {result['accuracy']}; "
        + ", ".join(f"{k} {v:.1f} s" for k, v in result["seconds"].items())
    )
    print(json.dumps(result), flush=True)
    return 0 if ok else 1
