"""``make parity``: the cloud runtimes reproduced on this machine, the real code run in them.

    python -m local.parity [--workdir DIR] [--keep]

Steps, each timed: build (or reuse) the Python 3.12 environments of the SageMaker training and
inference images (``envs``), run ``train.py`` as a training job runs it (``training``), serve its
artifact through the real model server and run the endpoint contract over HTTP (``serving``), and
run the function as ``sam build`` packs it on python3.12 through the offline stack (``function``).
The last line printed is one JSON object; the exit status is 1 when a reproduction failed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from local.parity import envs, function, serving, training


def timed(name: str, durations: dict[str, float], step: Callable[[], Any]) -> Any:
    print(f"== {name}", flush=True)
    started = time.perf_counter()
    try:
        return step()
    finally:
        durations[name] = round(time.perf_counter() - started, 1)
        print(f"== {name}: {durations[name]} s", flush=True)


def failed(exc: BaseException) -> dict[str, Any]:
    traceback.print_exc()
    return {"ok": False, "problems": [f"{type(exc).__name__}: {exc}"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.parity", description=__doc__)
    parser.add_argument("--workdir", type=Path, help="keep the runs here (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="do not delete the temp workdir")
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="parity-"))
    workdir.mkdir(parents=True, exist_ok=True)
    durations: dict[str, float] = {}
    result: dict[str, Any] = {}
    try:
        try:
            training_python = timed(
                "training environment", durations, lambda: envs.ensure(envs.training_spec())
            )
            result["training"], model_tar = timed(
                "training reproduction",
                durations,
                lambda: training.reproduce(training_python, workdir / "training"),
            )
        except Exception as exc:
            result["training"], model_tar = failed(exc), None

        if model_tar is None:
            result["serving"] = {"ok": False, "problems": ["no trained artifact to serve"]}
        else:
            try:
                serving_python = timed(
                    "serving environment", durations, lambda: envs.ensure(envs.serving_spec())
                )
                result["serving"] = timed(
                    "serving reproduction",
                    durations,
                    lambda: serving.reproduce(serving_python, workdir / "serving", model_tar),
                )
            except Exception as exc:
                result["serving"] = failed(exc)

        try:
            result["function"] = timed(
                "function reproduction",
                durations,
                lambda: function.reproduce(workdir / "function", model_tar),
            )
        except Exception as exc:
            result["function"] = failed(exc)
    finally:
        if args.workdir is None and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"runs kept in {workdir}", flush=True)

    for name, seconds in durations.items():
        print(f"  {name:<24} {seconds:>7.1f} s")
    result["serving_p50_ms"] = result["serving"].get("serving_p50_ms")
    result["serving_peak_rss_mib"] = result["serving"].get("serving_peak_rss_mib")
    result["seconds"] = durations
    print(json.dumps(result, default=str), flush=True)
    return (
        0
        if all(result[k].get("ok") is not False for k in ("training", "serving", "function"))
        else 1
    )


if __name__ == "__main__":
    sys.exit(main())
