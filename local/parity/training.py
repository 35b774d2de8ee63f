"""The training reproduction: ``train.py`` run as the SageMaker PyTorch training image runs it.

Two jobs run, each built from what ``python -m training.launch`` itself sends in a dry run
(``dry_run.launcher``), with the README's commands and no flag of ours: ``train``'s
CreateTrainingJob, and one trial of ``tune``'s CreateHyperParameterTuningJob (its static
hyperparameters plus one point of each range). What may differ from the cloud, each named in the
report's ``differences``: the data (the small generated set), the epoch count, the ImageNet
weights (a random stand-in in TORCH_HOME: nothing downloads here) and the device (this CPU).

What SageMaker and its training toolkit (``sagemaker-training``) do, and what this copies:
- the request is the job: its
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
import math
import subprocess
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from local.demo import default_model
from local.parity import dry_run, envs
from training.launch import jobs

TRIAL_PROBE = Path(__file__).with_name("trial_probe.py")
CHANNEL = "training"
LOSS_TENSOR = "CrossEntropyLoss_output_0"
TRAINING_DISTRIBUTIONS = ["torch", "torchvision", "numpy", "smdebug", "protobuf", "openvino"]
# The one hyperparameter changed from the launcher's: its 10 epochs cost minutes on this CPU.
EPOCHS = 2
# torchvision's resnet50 at random init, saved where torchvision looks for the ImageNet weights.
STANDIN_WEIGHTS = (
    "import sys, torch; from torchvision import models; "
    "torch.save(models.resnet50().state_dict(), sys.argv[1])"
)


@dataclass
class Job:
    """A training job as the launcher asks SageMaker for it."""

    kind: str  # "train" or "tuning trial"
    name: str
    hyperparameters: dict[str, str]  # as SageMaker hands them to the toolkit (JSON-encoded)
    instance_type: str
    image: str
    debug_hook: dict[str, Any] | None
    source_tar: bytes


def train_job(workdir: Path) -> Job:
    """``python -m training.launch train``'s job."""
    captured = dry_run.launcher(["train"], workdir)
    request = captured.one("CreateTrainingJob")
    return Job(
        kind="train",
        name=request["TrainingJobName"],
        hyperparameters=dict(request["HyperParameters"]),
        instance_type=request["ResourceConfig"]["InstanceType"],
        image=request["AlgorithmSpecification"]["TrainingImage"],
        debug_hook=request.get("DebugHookConfig"),
        source_tar=captured.uploads.body("sourcedir.tar.gz"),
    )


def tuning_trial_job(workdir: Path) -> Job:
    """One training job of ``python -m training.launch tune``: its static hyperparameters, one
    point of each range (``trial_point``) and the objective SageMaker adds to every trial."""
    captured = dry_run.launcher(["tune"], workdir)
    request = captured.one("CreateHyperParameterTuningJob")
    definition = request["TrainingJobDefinition"]
    config = request["HyperParameterTuningJobConfig"]
    hyperparameters = {
        **definition["StaticHyperParameters"],
        **trial_point(config["ParameterRanges"]),
        "_tuning_objective_metric": config["HyperParameterTuningJobObjective"]["MetricName"],
    }
    return Job(
        kind="tuning trial",
        name=f"{request['HyperParameterTuningJobName']}-001-trial",
        hyperparameters=hyperparameters,
        instance_type=definition["HyperParameterTuningResourceConfig"]["InstanceType"],
        image=definition["AlgorithmSpecification"]["TrainingImage"],
        debug_hook=None,  # the launcher turns the hook off for tuning
        source_tar=captured.uploads.body("sourcedir.tar.gz"),
    )


def trial_point(ranges: dict[str, list[dict[str, Any]]]) -> dict[str, str]:
    """A point of the search space as a trial's hyperparameters: the middle of each continuous or
    integer range (geometric on a logarithmic scale), the first value of each categorical one."""
    point: dict[str, str] = {}
    for kind in ("ContinuousParameterRanges", "IntegerParameterRanges"):
        for r in ranges.get(kind, []):
            low, high = float(r["MinValue"]), float(r["MaxValue"])
            middle = (
                math.sqrt(low * high)
                if r.get("ScalingType") in ("Logarithmic", "ReverseLogarithmic")
                else (low + high) / 2
            )
            point[r["Name"]] = str(round(middle)) if kind.startswith("Integer") else f"{middle:g}"
    for r in ranges.get("CategoricalParameterRanges", []):
        point[r["Name"]] = r["Values"][0]
    return point


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


def instance_resources(instance_type: str) -> tuple[int, int]:
    """(vCPUs, GPUs) the training toolkit reports for ``instance_type``; one line if unknown."""
    try:
        return jobs.INSTANCE_RESOURCES[instance_type]
    except KeyError:
        known = ", ".join(sorted(jobs.INSTANCE_RESOURCES))
        raise RuntimeError(
            f"no vCPU/GPU count for {instance_type} in training.launch.jobs.INSTANCE_RESOURCES "
            f"(known: {known}): add it to reproduce its SM_NUM_CPUS"
        ) from None


def sm_environment(
    opt_ml: Path, hps: dict[str, Any], job_name: str, instance_type: str
) -> dict[str, str]:
    """The ``SM_*`` variables the toolkit gives the entry point (the ones a script reads), with
    the instance's vCPUs and GPUs."""
    cpus, gpus = instance_resources(instance_type)
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
        "SM_CURRENT_INSTANCE_TYPE": instance_type,
        "SM_NUM_CPUS": str(cpus),
        "SM_NUM_GPUS": str(gpus),
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
def write_opt_ml(opt_ml: Path, job: Job, hyperparameters: dict[str, str], data_dir: Path) -> None:
    config = opt_ml / "input" / "config"
    config.mkdir(parents=True)
    (config / "hyperparameters.json").write_text(json.dumps(hyperparameters))
    channels = {CHANNEL: {"TrainingInputMode": "File"}}
    (config / "inputdataconfig.json").write_text(json.dumps(channels))
    (config / "resourceconfig.json").write_text(
        json.dumps({"current_host": "algo-1", "hosts": ["algo-1"]})
    )
    if job.debug_hook is not None:
        hook = dict(job.debug_hook)
        hook["LocalPath"] = str(opt_ml / "output" / "tensors")
        (config / "debughookconfig.json").write_text(json.dumps(hook, indent=1))
    (opt_ml / "input" / "data").mkdir(parents=True, exist_ok=True)
    (opt_ml / "input" / "data" / CHANNEL).symlink_to(data_dir.resolve())
    for folder in ("model", "output/data", "output/tensors", "code"):
        (opt_ml / folder).mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(job.source_tar)) as tar:
        tar.extractall(opt_ml / "code", filter="data")


def package_model_dir(model_dir: Path, tar_path: Path) -> Path:
    """What SageMaker uploads after the job: ``/opt/ml/model``'s contents as ``model.tar.gz``."""
    with tarfile.open(tar_path, "w:gz") as tar:
        for path in sorted(model_dir.iterdir()):
            tar.add(path, arcname=path.name)
    return tar_path


# ---------------------------------------------------------------------------- the reproduction
def reproduce(python: Path, workdir: Path) -> tuple[dict[str, Any], Path | None]:
    """Run the launcher's training job and one tuning trial; returns the report and the training
    job's ``model.tar.gz``, what SageMaker would store."""
    report: dict[str, Any] = {"ok": False, **envs.versions(python, TRAINING_DISTRIBUTIONS)}
    report["pip_check"] = envs.pip_check(python)
    problems: list[str] = report.setdefault("problems", [])
    data_dir = default_model.make_dataset(workdir / "data")
    torch_home = standin_torch_home(python, workdir / "torch-home")

    jobs_run: dict[str, Any] = {}
    tar_path = None
    for job in (train_job(workdir / "train"), tuning_trial_job(workdir / "tune")):
        run, tar = run_job(python, job, workdir / job.kind.replace(" ", "-"), data_dir, torch_home)
        jobs_run[job.kind] = run
        problems += [f"{job.kind}: {problem}" for problem in run.pop("problems")]
        if job.kind == "train":
            tar_path = tar
    report["jobs"] = jobs_run
    report["exit_code"] = jobs_run["train"]["exit_code"]
    report["test_accuracy"] = jobs_run["train"].get("test_accuracy")
    report["ok"] = not problems
    return report, tar_path


def standin_torch_home(python: Path, torch_home: Path) -> Path:
    """A TORCH_HOME holding a stand-in for the ImageNet weights under torchvision's file name, so
    ``--pretrained true`` loads through torchvision's real cache lookup with no download."""
    from dog_breeds.model import network

    name = Path(urlparse(network.IMAGENET_WEIGHTS.url).path).name
    weights = torch_home / "hub" / "checkpoints" / name
    weights.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [str(python), "-c", STANDIN_WEIGHTS, str(weights)],
        check=True,
        env=envs.clean_environ(),
        timeout=300,
    )
    return torch_home


def differences(job: Job, data_dir: Path, epochs: str | None) -> dict[str, Any]:
    """Every way this run differs from the job in the cloud."""
    cpus, gpus = instance_resources(job.instance_type)
    return {
        "data": (
            f"the small generated set {data_dir.name}/ ({default_model.CLASSES} classes), not S3's"
        ),
        "epochs": {"launcher": epochs, "here": str(EPOCHS)},
        "imagenet_weights": "torchvision's resnet50 at random init, in TORCH_HOME",
        "device": f"this machine's CPU ({job.instance_type}: {cpus} vCPUs, {gpus} GPUs)",
    }


def run_job(
    python: Path, job: Job, workdir: Path, data_dir: Path, torch_home: Path
) -> tuple[dict[str, Any], Path | None]:
    """One job in its /opt/ml tree: train.py run by the toolkit's rules, then the artifact and
    (when the hook is on) the Debugger trial read back."""
    problems: list[str] = []
    raw = dict(job.hyperparameters)
    launcher_epochs = raw.get("epochs")
    raw["epochs"] = str(EPOCHS)
    hps = user_hyperparameters(decode_hyperparameters(raw))
    report: dict[str, Any] = {
        "job": job.name,
        "image": job.image,
        "instance_type": job.instance_type,
        "hyperparameters": hps,
        "differences": differences(job, data_dir, launcher_epochs),
        "problems": problems,
    }
    opt_ml = workdir / "opt" / "ml"
    write_opt_ml(opt_ml, job, raw, data_dir)
    env = envs.clean_environ(
        PYTHONUNBUFFERED="1",
        TORCH_HOME=str(torch_home),
        # The platform writes these two only when TensorBoard output or framework profiling is
        # asked for (neither is): point them into the tree so nothing reads the host's /opt/ml.
        TENSORBOARD_CONFIG_FILE_PATH=str(opt_ml / "input" / "config" / "tensorboard.json"),
        SMPROFILER_CONFIG_PATH=str(opt_ml / "input" / "config" / "profilerconfig.json"),
        **sm_environment(opt_ml, hps, job.name, job.instance_type),
    )
    if job.debug_hook is not None:
        env["SMDEBUG_CONFIG_FILE_PATH"] = str(opt_ml / "input" / "config" / "debughookconfig.json")
    command = [str(python), "train.py", *to_cmd_args(hps)]
    report["command"] = " ".join(["python", *command[1:]])
    print(f"  {job.kind} $ {report['command']}", flush=True)
    started = time.perf_counter()
    done = subprocess.run(
        command, cwd=opt_ml / "code", env=env, capture_output=True, text=True, timeout=1800
    )
    report["train_seconds"] = round(time.perf_counter() - started, 1)
    report["exit_code"] = done.returncode
    (workdir / "train.log").write_text(done.stdout + "\n--- stderr ---\n" + done.stderr)
    summary = last_json_line(done.stdout)
    if done.returncode != 0:
        # A job whose script exits non-zero is Failed, whatever it wrote.
        problems.append(f"train.py exited {done.returncode}: {tail(done.stderr)}")
    if summary is None:
        problems.append("train.py's last stdout line is not its JSON summary")
    else:
        report["test_accuracy"] = summary.get("test_accuracy")
        report["num_workers"] = summary.get("num_workers")
    if job.debug_hook is not None:
        report["smdebug_hook"] = "smdebug hook on" in done.stderr
        report.update(read_trial(python, opt_ml / "output" / "tensors", problems))

    tar_path = package_model_dir(opt_ml / "model", workdir / "model.tar.gz")
    with tarfile.open(tar_path) as tar:
        names = sorted(tar.getnames())
    report["artifact"] = sorted({n.split("/")[0] for n in names})
    report["openvino_forms"] = sorted(n for n in names if n.endswith(".xml"))
    if not report["openvino_forms"]:
        problems.append(f"model.tar.gz has no OpenVINO form: {report['artifact']}")
    return report, None if problems else tar_path


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
