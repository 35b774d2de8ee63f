"""The whole system, end to end, on one machine: what `make demo` runs.

    python -m local.demo [--data-dir DOGIMAGES] [--epochs N] [--workdir DIR] [--keep-running]

1. dataset   a small generated set in the dogImages layout (or ``--data-dir``)
2. train     ``training/container/train.py`` from random init (subprocess; its progress is shown)
3. package   ``model.tar.gz`` as SageMaker stores it, extracted again for the endpoint
4. stack     moto + ``template.yaml`` + the endpoint + the S3 trigger (``local.stack``)
5. upload    the test split plus bad files, through the S3 API
6. results   wait until every upload has its item, read the table, score it
The last line printed is one JSON object; the exit status is 0 only if every upload is accounted
for (an item each, with the status expected of it).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
import traceback
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
TRAIN_SCRIPT = REPO_ROOT / "training" / "container" / "train.py"
DEFAULT_WORKDIR = REPO_ROOT / "runs" / "demo"
# The embedded default (the tests' tiny set): 4 classes, 24/6/6 images of 64 px; from random init
# about 1-2 s an epoch on 2 idle cores, test accuracy near 1.0 (chance: 0.25).
DEFAULT_CLASSES = 4
DEFAULT_PER_CLASS = (24, 6, 6)
DEFAULT_IMAGE_SIZE = 64
DEFAULT_EPOCHS = 8


def say(message: str) -> None:
    print(message, flush=True)


def make_default_dataset(root: Path, seed: int = 0) -> Path:
    from dog_breeds.data.synthetic import make_dataset

    if root.exists():
        shutil.rmtree(root)
    return make_dataset(root, DEFAULT_CLASSES, DEFAULT_PER_CLASS, DEFAULT_IMAGE_SIZE, seed)


def train(data_dir: Path, model_dir: Path, epochs: int, extra: list[str] | None = None) -> dict:
    """Run ``training/container/train.py`` as a user would, streaming its progress; returns its
    summary."""
    if model_dir.exists():
        shutil.rmtree(model_dir)
    command = [
        sys.executable,
        str(TRAIN_SCRIPT),
        "--data-dir",
        str(data_dir),
        "--model-dir",
        str(model_dir),
        "--epochs",
        str(epochs),
        *(extra or []),
    ]
    env = dict(os.environ, PYTHONUNBUFFERED="1", SAGEMAKER_SUPPRESS_V2_WARNING="1")
    say("  $ " + " ".join(command[1:]))
    last = ""
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip("\n")
            if line.strip():
                last = line
                say("  | " + line)
    if proc.returncode != 0:
        raise RuntimeError(f"train.py exited with {proc.returncode}")
    try:
        return json.loads(last)
    except json.JSONDecodeError as exc:
        raise RuntimeError(f"train.py's last line is not its JSON summary: {last!r}") from exc


def package(model_dir: Path, tar_path: Path) -> Path:
    """``model.tar.gz`` exactly as the SageMaker PyTorch serving container gets it."""
    from dog_breeds.artifact.store import package_model

    return package_model(model_dir, tar_path)


def extract(tar_path: Path, dest: Path) -> Path:
    """What SageMaker does before serving: untar into ``/opt/ml/model``."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    with tarfile.open(tar_path) as tar:
        tar.extractall(dest, filter="data")
    return dest


def ensure_model(workdir: Path, model: Path | None = None, epochs: int | None = None) -> Path:
    """A servable model dir for ``make local``: ``model`` (dir or tar), WORKDIR's, or train one."""
    serving = workdir / "serving" / "model"
    if model is not None:
        return extract(model, serving) if model.is_file() else model
    tar_path = workdir / "model.tar.gz"
    if not tar_path.exists():
        say(f"no model in {workdir}: training the small default first")
        data_dir = make_default_dataset(workdir / "data")
        train(data_dir, workdir / "model", epochs or DEFAULT_EPOCHS, default_train_args())
        package(workdir / "model", tar_path)
    return extract(tar_path, serving)


def default_train_args(image_size: int = DEFAULT_IMAGE_SIZE) -> list[str]:
    # From random init the whole network must train (a frozen random backbone stays at chance).
    return [
        "--pretrained",
        "false",
        "--image_size",
        str(image_size),
        "--batch_size",
        "16",
        "--num_workers",
        "0",
        "--patience",
        "3",
    ]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m local.demo", description="Train, deploy and use the system offline."
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="a dataset in the dogImages layout (train/ valid/ test/) instead of the generated one",
    )
    parser.add_argument("--epochs", type=int, default=None, help=f"default {DEFAULT_EPOCHS}")
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


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The demo's stages; returns the final summary (without printing it)."""
    import shlex

    from local.stack import LocalStack, wait_for_interrupt
    from local.uploads import (
        bad_uploads,
        format_table,
        progress_printer,
        summarize,
        upload_all,
        uploads_from_test_split,
        wait_for_items,
    )

    workdir: Path = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    started = time.perf_counter()

    def stage(name: str, t0: float) -> None:
        seconds[name] = round(time.perf_counter() - t0, 2)
        say(f"[{name}] {seconds[name]:.1f} s")

    t = time.perf_counter()
    if args.data_dir:
        data_dir = args.data_dir.resolve()
        say(f"== 1/6 dataset: {data_dir}")
    else:
        say("== 1/6 dataset: generating the small default (dogImages layout)")
        data_dir = make_default_dataset(workdir / "data")
    counts = {s: sum(1 for _ in (data_dir / s).glob("*/*")) for s in ("train", "valid", "test")}
    say(f"  {data_dir}: {counts}")
    stage("dataset", t)

    t = time.perf_counter()
    train_summary: dict[str, Any] = {}
    if args.model:
        say(f"== 2/6 train: skipped, serving {args.model}")
        model_source = args.model.resolve()
    else:
        epochs = args.epochs or DEFAULT_EPOCHS
        say(f"== 2/6 train: training/container/train.py, {epochs} epochs from random init")
        extra = default_train_args() if not args.data_dir else []
        extra += shlex.split(args.train_args or "")
        train_summary = train(data_dir, workdir / "model", epochs, extra)
        model_source = workdir / "model"
    stage("train", t)

    t = time.perf_counter()
    say("== 3/6 package: model.tar.gz")
    if model_source.is_file():
        tar_path = model_source
    else:
        tar_path = package(model_source, workdir / "model.tar.gz")
    model_dir = extract(tar_path, workdir / "serving" / "model")
    say(f"  {tar_path} ({tar_path.stat().st_size / 1e6:.1f} MB) → {model_dir}")
    stage("package", t)

    t = time.perf_counter()
    say("== 4/6 stack: moto + template.yaml + endpoint + S3 trigger")
    log_dir = workdir / "logs"
    shutil.rmtree(log_dir, ignore_errors=True)
    with LocalStack(model_dir, log_dir=log_dir) as stack:
        assert stack.facts is not None
        say("  " + stack.describe().replace("\n", "\n  "))
        say(f"  function logs: {log_dir}/sandbox-*.log")
        stage("stack", t)

        t = time.perf_counter()
        prefix = stack.facts.function.environment.get("UPLOAD_PREFIX", "uploads/")
        good = uploads_from_test_split(data_dir, prefix, args.uploads_per_class)
        if not good:
            raise RuntimeError(f"no test images under {data_dir / 'test'}")
        uploads = good + bad_uploads(good[0], prefix)
        say(f"== 5/6 upload: {len(good)} test images + {len(uploads) - len(good)} bad files")
        upload_all(stack.client("s3"), stack.facts.bucket, uploads)
        stage("upload", t)

        t = time.perf_counter()
        say("== 6/6 results: waiting for one item per upload")
        table = stack.table()
        timeout = args.timeout or 60 + 2.0 * len(uploads)
        items = wait_for_items(
            table,
            stack.facts.bucket,
            [u.key for u in uploads],
            timeout,
            progress_printer("  results"),
            # Nothing queued, retrying or running: what has no item by now never will (lost).
            settled=lambda: stack.wait_idle(1.0),
        )
        stage("results", t)
        summary = summarize(uploads, items)
        failure_records = stack.failure_records()
        say("")
        say(format_table(summary["rows"]))
        say("")
        invoker = stack.invoker.stats if stack.invoker else None
        say(
            f"function: {invoker.invocations} invocations, {invoker.retries} async retries, "
            f"{invoker.cold_starts} cold starts, max concurrency {invoker.max_concurrency_seen}"
            f" (cap {stack.facts.function.reserved_concurrency}); "
            f"failure queue: {len(failure_records)} records"
        )
        seconds["total"] = round(time.perf_counter() - started, 2)  # not the time kept running
        if args.keep_running:
            say("\n" + "\n".join(stack.cli_lines(good[0].true_class or "Some_breed")))
            say("\nStack left running (--keep-running). Ctrl-C to stop.")
            try:
                wait_for_interrupt()
            except KeyboardInterrupt:
                say("\nstopping")
    return {
        "uploaded": summary["uploaded"],
        "items": summary["items"],
        "predicted": summary["predicted"],
        "failed": summary["failed"],
        "lost": summary["lost"],
        "unexpected_status": summary["unexpected_status"],
        "accuracy": summary["accuracy"],
        "train_test_accuracy": train_summary.get("test_accuracy"),
        "failure_queue": len(failure_records),
        "seconds": seconds,
    }


def main(argv: list[str] | None = None) -> int:
    from local.stack import terminate_on_sigterm

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


if __name__ == "__main__":
    sys.exit(main())
