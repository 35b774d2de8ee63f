"""The training reproduction: ``train.py`` run as the SageMaker PyTorch training image runs it.

What SageMaker and its training toolkit (``sagemaker-training``) do, and what this copies:
- the launcher's CreateTrainingJob request (``dry_run.training_job``) is the job: its
  ``HyperParameters`` go to ``/opt/ml/input/config/hyperparameters.json``, its
  ``DebugHookConfig`` to ``/opt/ml/input/config/debughookconfig.json`` (where smdebug reads it,
  ``SMDEBUG_CONFIG_FILE_PATH``), its ``training`` channel to ``/opt/ml/input/data/training``;
- the source tarball the SDK uploaded is unpacked in ``/opt/ml/code``, and its
  ``requirements.txt`` installed over the image's packages (``envs.training_spec``);
- the toolkit JSON-decodes each hyperparameter, drops the ``sagemaker_*`` ones, and runs
  ``python train.py --name value ...`` (sorted by name) from ``/opt/ml/code`` with the ``SM_*``
  environment (``SM_MODEL_DIR``, ``SM_CHANNEL_TRAINING``, ``SM_HPS``, ``SM_HP_*`` ...) and the
  platform's ``TRAINING_JOB_NAME``;
- afterwards ``/opt/ml/model`` becomes ``model.tar.gz``.
Here ``/opt/ml`` is a temporary folder, so the one edit to the hook configuration is its
``LocalPath`` (the platform's default ``/opt/ml/output/tensors``, moved with the tree).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
import time
from pathlib import Path
from typing import Any

from local import tiny
from local.parity import dry_run, envs

TRIAL_PROBE = Path(__file__).with_name("trial_probe.py")
CHANNEL = "training"
LOSS_TENSOR = "CrossEntropyLoss_output_0"
TRAINING_DISTRIBUTIONS = ["torch", "torchvision", "numpy", "smdebug", "protobuf", "openvino"]


def tiny_hyperparameters() -> dict[str, str]:
    """The tiny default recipe (local/tiny.py) as the estimator's hyperparameters."""
    recipe = dict(zip(tiny.RECIPE[::2], tiny.RECIPE[1::2], strict=True))
    return {"epochs": str(tiny.EPOCHS), **{k.removeprefix("--"): v for k, v in recipe.items()}}


# ---------------------------------------------------------------------------- the toolkit's rules
def decode_hyperparameters(raw: dict[str, str]) -> dict[str, Any]:
    """``hyperparameters.json`` as the toolkit reads it: each value JSON-decoded when it can be."""
    decoded = {}
    for name, value in raw.items():
        try:
            decoded[name] = json.loads(value)
        except (TypeError, ValueError):
            decoded[name] = value
    return decoded


def user_hyperparameters(decoded: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in decoded.items() if not k.startswith("sagemaker_")}


def to_cmd_args(hyperparameters: dict[str, Any]) -> list[str]:
    """The toolkit's ``mapping.to_cmd_args``: sorted ``--name str(value)`` pairs."""
    args: list[str] = []
    for name in sorted(hyperparameters):
        value = hyperparameters[name]
        if isinstance(value, dict):
            value = ",".join(f"{k}={v}" for k, v in sorted(value.items()))
        args += [f"--{name}" if len(name) > 1 else f"-{name}", "" if value is None else str(value)]
    return args


def env_value(value: Any) -> str:
    """The toolkit's ``mapping.to_env_vars`` value: strings as they are, the rest as JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def sm_environment(opt_ml: Path, hps: dict[str, Any], job_name: str) -> dict[str, str]:
    """The ``SM_*`` variables the toolkit gives the entry point (the ones a script reads)."""
    hosts = ["algo-1"]
    env = {
        "SM_MODEL_DIR": str(opt_ml / "model"),
        "SM_CHANNELS": json.dumps([CHANNEL]),
        f"SM_CHANNEL_{CHANNEL.upper()}": str(opt_ml / "input" / "data" / CHANNEL),
        "SM_OUTPUT_DATA_DIR": str(opt_ml / "output" / "data"),
        "SM_OUTPUT_DIR": str(opt_ml / "output"),
        "SM_INPUT_DIR": str(opt_ml / "input"),
        "SM_INPUT_CONFIG_DIR": str(opt_ml / "input" / "config"),
        "SM_HOSTS": json.dumps(hosts),
        "SM_CURRENT_HOST": hosts[0],
        "SM_NUM_CPUS": str(os.cpu_count() or 1),
        "SM_NUM_GPUS": "0",
        "SM_MODULE_NAME": "train",
        "SM_USER_ENTRY_POINT": "train.py",
        "SM_HPS": json.dumps(hps, sort_keys=True),
        "SM_USER_ARGS": json.dumps(to_cmd_args(hps)),
        "SM_LOG_LEVEL": "20",
        "TRAINING_JOB_NAME": job_name,
    }
    env.update({f"SM_HP_{k.upper()}": env_value(v) for k, v in hps.items()})
    return env


# ---------------------------------------------------------------------------- the /opt/ml tree
def write_opt_ml(opt_ml: Path, request: dict[str, Any], source_tar: bytes, data_dir: Path) -> None:
    config = opt_ml / "input" / "config"
    config.mkdir(parents=True)
    (config / "hyperparameters.json").write_text(json.dumps(request["HyperParameters"]))
    channels = {c["ChannelName"]: {"TrainingInputMode": "File"} for c in request["InputDataConfig"]}
    (config / "inputdataconfig.json").write_text(json.dumps(channels))
    (config / "resourceconfig.json").write_text(
        json.dumps({"current_host": "algo-1", "hosts": ["algo-1"]})
    )
    hook = dict(request["DebugHookConfig"])
    hook["LocalPath"] = str(opt_ml / "output" / "tensors")
    (config / "debughookconfig.json").write_text(json.dumps(hook, indent=1))
    for name in channels:
        (opt_ml / "input" / "data").mkdir(parents=True, exist_ok=True)
        (opt_ml / "input" / "data" / name).symlink_to(data_dir.resolve())
    for folder in ("model", "output/data", "output/tensors", "code"):
        (opt_ml / folder).mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(source_tar)) as tar:
        tar.extractall(opt_ml / "code", filter="data")


def package_model_dir(model_dir: Path, tar_path: Path) -> Path:
    """What SageMaker uploads after the job: ``/opt/ml/model``'s contents as ``model.tar.gz``."""
    with tarfile.open(tar_path, "w:gz") as tar:
        for path in sorted(model_dir.iterdir()):
            tar.add(path, arcname=path.name)
    return tar_path


# ---------------------------------------------------------------------------- the reproduction
def reproduce(python: Path, workdir: Path) -> tuple[dict[str, Any], Path | None]:
    """Run the job; returns the report and the ``model.tar.gz`` SageMaker would store."""
    report: dict[str, Any] = {"ok": False, **envs.versions(python, TRAINING_DISTRIBUTIONS)}
    report["pip_check"] = envs.pip_check(python)
    problems: list[str] = report.setdefault("problems", [])

    captured = dry_run.training_job(tiny_hyperparameters(), workdir)
    request = captured.one("CreateTrainingJob")
    report["image"] = request["AlgorithmSpecification"]["TrainingImage"]
    report["debugger_collections"] = [
        c["CollectionName"] for c in request["DebugHookConfig"]["CollectionConfigurations"]
    ]
    opt_ml = workdir / "opt" / "ml"
    data_dir = tiny.make_dataset(workdir / "data")
    write_opt_ml(opt_ml, request, captured.uploads.body("sourcedir.tar.gz"), data_dir)

    hps = user_hyperparameters(decode_hyperparameters(request["HyperParameters"]))
    env = envs.clean_environ(
        PYTHONUNBUFFERED="1",
        SMDEBUG_CONFIG_FILE_PATH=str(opt_ml / "input" / "config" / "debughookconfig.json"),
        # The platform writes these two only when TensorBoard output or framework profiling is
        # asked for (neither is): point them into the tree so nothing reads the host's /opt/ml.
        TENSORBOARD_CONFIG_FILE_PATH=str(opt_ml / "input" / "config" / "tensorboard.json"),
        SMPROFILER_CONFIG_PATH=str(opt_ml / "input" / "config" / "profilerconfig.json"),
        **sm_environment(opt_ml, hps, request["TrainingJobName"]),
    )
    command = [str(python), "train.py", *to_cmd_args(hps)]
    print("  $ " + " ".join(["python", *command[1:]]), flush=True)
    started = time.perf_counter()
    done = subprocess.run(
        command, cwd=opt_ml / "code", env=env, capture_output=True, text=True, timeout=1800
    )
    report["train_seconds"] = round(time.perf_counter() - started, 1)
    (workdir / "train.log").write_text(done.stdout + "\n--- stderr ---\n" + done.stderr)
    if done.returncode != 0:
        problems.append(f"train.py exited {done.returncode}: {tail(done.stderr)}")
        return report, None
    summary = last_json_line(done.stdout)
    report["test_accuracy"] = summary.get("test_accuracy") if summary else None
    if summary is None:
        problems.append("train.py's last stdout line is not its JSON summary")
    report["smdebug_hook"] = "smdebug hook on" in done.stderr

    report.update(read_trial(python, opt_ml / "output" / "tensors", problems))

    tar_path = package_model_dir(opt_ml / "model", workdir / "model.tar.gz")
    with tarfile.open(tar_path) as tar:
        names = sorted({n.split("/")[0] for n in tar.getnames()})
    report["artifact"] = names
    if "openvino" not in names:
        problems.append(f"model.tar.gz has no openvino/ (CPU form): {names}")
    report["ok"] = not problems
    return report, tar_path


def read_trial(python: Path, tensors: Path, problems: list[str]) -> dict[str, Any]:
    """The Debugger output read back with ``smdebug.trials.create_trial`` in the same runtime."""
    done = subprocess.run(
        [str(python), str(TRIAL_PROBE), str(tensors), LOSS_TENSOR],
        capture_output=True,
        text=True,
        env=envs.clean_environ(SMDEBUG_LOG_LEVEL="error"),
        timeout=300,
    )
    if done.returncode != 0:
        problems.append(f"create_trial failed: {tail(done.stderr)}")
        return {}
    trial = json.loads(done.stdout.strip().splitlines()[-1])
    for mode in ("TRAIN", "EVAL"):
        if not trial["loss_steps"].get(mode):
            problems.append(f"the Debugger trial has no {mode} steps of {LOSS_TENSOR}")
    return {
        "loss_steps": {mode: len(steps) for mode, steps in trial["loss_steps"].items()},
        "trial_collections": trial["collections"],
    }


def last_json_line(stdout: str) -> dict[str, Any] | None:
    lines = [line for line in stdout.splitlines() if line.strip()]
    try:
        return json.loads(lines[-1]) if lines else None
    except ValueError:
        return None


def tail(text: str, lines: int = 6) -> str:
    return " | ".join(text.strip().splitlines()[-lines:])
