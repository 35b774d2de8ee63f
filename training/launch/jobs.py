"""Stages 2 and 3: the hyperparameter tuning job and the debugged, profiled training job."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dog_breeds.artifact.serving_code import SOURCE_DIR
from dog_breeds.training.metrics import METRIC_DEFINITIONS, OBJECTIVE_METRIC, OBJECTIVE_TYPE
from training.launch.aws import Aws, LaunchError, s3_uri

# train.py's hyperparameters (issue 4); nothing else is passed or saved.
HYPERPARAMETER_NAMES = (
    "lr",
    "eps",
    "weight_decay",
    "batch_size",
    "epochs",
    "hidden_size",
    "dropout",
    "pretrained",
    "unfreeze_stages",
)
# What a job gets unless the best-hyperparameters file or a flag says otherwise. Pretrained with
# the last residual stage unfrozen: public dogImages reports put that ~9 points ahead of a frozen
# backbone (89.6 % vs 80.6 %), with the best learning rates near 1e-4.
DEFAULT_HYPERPARAMETERS: dict[str, Any] = {
    "lr": 1e-4,
    "eps": 1e-8,
    "weight_decay": 1e-2,
    "batch_size": 64,
    "epochs": 10,
    "hidden_size": 256,
    "dropout": 0.3,
    "pretrained": "true",
    "unfreeze_stages": 1,
}

# The newest PyTorch training image SageMaker SDK 2.257 knows (image_uri_config/pytorch.json).
TRAINING_FRAMEWORK_VERSION = "2.8.0"
TRAINING_PY_VERSION = "py312"
# What that image carries beside it; local/parity reproduces the image's runtime from these.
TRAINING_PYTHON = "3.12"
TRAINING_TORCHVISION_VERSION = "0.23.0"
GPU_TRAINING_INSTANCE = "ml.g4dn.xlarge"
CPU_TRAINING_INSTANCE = "ml.m5.2xlarge"
# (vCPUs, GPUs) of those instances (AWS's instance specifications): what the training toolkit
# tells train.py as SM_NUM_CPUS / SM_NUM_GPUS, so its default --num_workers is min(4, vCPUs).
INSTANCE_RESOURCES: dict[str, tuple[int, int]] = {
    GPU_TRAINING_INSTANCE: (4, 1),
    CPU_TRAINING_INSTANCE: (8, 0),
}

# Debugger: the losses collection every N steps in training, every step in evaluation.
TRAIN_SAVE_INTERVAL = 10
EVAL_SAVE_INTERVAL = 1
PROFILER_INTERVAL_MS = 500

DEBUGGER_RULES = (
    "vanishing_gradient",
    "overfit",
    "overtraining",
    "poor_weight_initialization",
    "loss_not_decreasing",
)
LOSS_RULES = ("overfit", "overtraining", "loss_not_decreasing")


def tuning_ranges() -> dict[str, Any]:
    """The search space. Why not the original 0.01-100 / 0.1-10: docs/deploy.md, section "Why
    these tuning ranges"."""
    from sagemaker.tuner import CategoricalParameter, ContinuousParameter

    return {
        "lr": ContinuousParameter(1e-5, 1e-2, scaling_type="Logarithmic"),
        "weight_decay": ContinuousParameter(1e-4, 1e-1, scaling_type="Logarithmic"),
        "eps": ContinuousParameter(1e-9, 1e-8, scaling_type="Linear"),
        "batch_size": CategoricalParameter([64, 128]),
    }


def decode_hyperparameter(value: Any) -> Any:
    """SageMaker hands framework hyperparameters back JSON-encoded ('"64"', '0.001')."""
    if not isinstance(value, str):
        return value
    try:
        decoded = json.loads(value)
    except ValueError:
        return value
    if isinstance(decoded, str):
        return decode_hyperparameter(decoded)
    # train.py takes true/false; keep booleans in the spelling the defaults use.
    return str(decoded).lower() if isinstance(decoded, bool) else decoded


def train_hyperparameters(raw: dict[str, Any]) -> dict[str, Any]:
    """Only train.py's own names, decoded; SageMaker's sagemaker_* and _tuning_* ones dropped."""
    return {k: decode_hyperparameter(v) for k, v in raw.items() if k in HYPERPARAMETER_NAMES}


def build_estimator(
    aws: Aws,
    *,
    role: str,
    hyperparameters: dict[str, Any],
    instance_type: str,
    prefix: str,
    base_job_name: str,
    debugged: bool,
    spot: bool = False,
    max_run: int = 24 * 3600,
    max_wait: int | None = None,
    checkpoint_uri: str | None = None,
    framework_version: str = TRAINING_FRAMEWORK_VERSION,
    py_version: str = TRAINING_PY_VERSION,
) -> Any:
    """A PyTorch estimator running ``training/container/train.py``; Debugger and Profiler only
    when debugged."""
    from sagemaker.debugger import (
        CollectionConfig,
        DebuggerHookConfig,
        ProfilerConfig,
        ProfilerRule,
        Rule,
        rule_configs,
    )
    from sagemaker.pytorch import PyTorch

    bucket = aws.bucket
    extra: dict[str, Any] = {}
    if debugged:
        losses = CollectionConfig(
            name="losses",
            parameters={
                "train.save_interval": str(TRAIN_SAVE_INTERVAL),
                "eval.save_interval": str(EVAL_SAVE_INTERVAL),
            },
        )
        extra["debugger_hook_config"] = DebuggerHookConfig(
            s3_output_path=s3_uri(bucket, prefix, "debug"), collection_configs=[losses]
        )
        # The loss rules would each add a "losses" collection of their own (every 500 steps):
        # hand them ours, so the hook configuration holds one "losses" entry.
        extra["rules"] = [
            Rule.sagemaker(
                getattr(rule_configs, name)(),
                collections_to_save=[losses] if name in LOSS_RULES else None,
            )
            for name in DEBUGGER_RULES
        ] + [ProfilerRule.sagemaker(rule_configs.ProfilerReport())]
        extra["profiler_config"] = ProfilerConfig(
            s3_output_path=s3_uri(bucket, prefix, "profiler"),
            system_monitor_interval_millis=PROFILER_INTERVAL_MS,
        )
    else:
        # Tuning jobs only need the objective metric: no hook, no profiler, no rule jobs to pay.
        extra["debugger_hook_config"] = False
        extra["disable_profiler"] = True
    if spot:
        extra["use_spot_instances"] = True
        extra["max_wait"] = max_wait or max_run
        if extra["max_wait"] < max_run:
            raise LaunchError(f"--max-wait ({max_wait}) must be >= --max-run ({max_run})")
        extra["checkpoint_s3_uri"] = checkpoint_uri

    return PyTorch(
        entry_point="train.py",
        source_dir=str(SOURCE_DIR),
        role=role,
        framework_version=framework_version,
        py_version=py_version,
        instance_count=1,
        instance_type=instance_type,
        hyperparameters=hyperparameters,
        metric_definitions=METRIC_DEFINITIONS,
        output_path=s3_uri(bucket, prefix, "output"),
        code_location=s3_uri(bucket, prefix, "code"),
        base_job_name=base_job_name,
        max_run=max_run,
        sagemaker_session=aws.sagemaker_session,
        **extra,
    )


def tune(
    aws: Aws,
    *,
    role: str,
    data_uri: str,
    prefix: str,
    instance_type: str,
    static_hyperparameters: dict[str, Any],
    max_jobs: int,
    max_parallel_jobs: int,
    wait: bool,
    best_file: Path,
    framework_version: str = TRAINING_FRAMEWORK_VERSION,
    py_version: str = TRAINING_PY_VERSION,
) -> str:
    """Start the tuning job; when waited for, save its best job and hyperparameters."""
    from sagemaker.tuner import HyperparameterTuner
    from sagemaker.utils import name_from_base

    if max_jobs < 1 or max_parallel_jobs < 1:
        raise LaunchError("--max-jobs and --max-parallel-jobs must be at least 1")
    ranges = tuning_ranges()
    static = {k: v for k, v in static_hyperparameters.items() if k not in ranges}
    estimator = build_estimator(
        aws,
        role=role,
        hyperparameters=static,
        instance_type=instance_type,
        prefix=prefix,
        base_job_name="dog-breeds-hpo",
        debugged=False,
        framework_version=framework_version,
        py_version=py_version,
    )
    tuner = HyperparameterTuner(
        estimator,
        objective_metric_name=OBJECTIVE_METRIC,
        hyperparameter_ranges=ranges,
        metric_definitions=METRIC_DEFINITIONS,
        objective_type=OBJECTIVE_TYPE,
        strategy="Bayesian",
        max_jobs=max_jobs,
        max_parallel_jobs=max_parallel_jobs,
    )
    # Tuning job names: at most 32 characters.
    job_name = name_from_base("dog-breeds-hpo", max_length=32, short=True)
    tuner.fit({"training": data_uri}, job_name=job_name, wait=wait and not aws.dry_run)
    if aws.dry_run:
        print(f"would start tuning job: {job_name}")
        return job_name
    print(f"tuning job: {job_name}")
    print(
        f"  console: https://{aws.region}.console.aws.amazon.com/sagemaker/home?region="
        f"{aws.region}#/hyper-tuning-jobs/{job_name}"
    )
    if wait:
        save_best(aws, job_name, best_file)
    else:
        print(f"  when it completes: python -m training.launch tune --attach {job_name}")
    return job_name


def best_of_tuning_job(aws: Aws, job_name: str) -> dict[str, Any]:
    """The best training job of a tuning job and its full hyperparameters (static + tuned)."""
    desc = aws.client("sagemaker").describe_hyper_parameter_tuning_job(
        HyperParameterTuningJobName=job_name
    )
    best = desc.get("BestTrainingJob")
    if not best:
        status = desc.get("HyperParameterTuningJobStatus")
        raise LaunchError(f"tuning job {job_name} ({status}) has no best training job yet")
    definition = desc.get("TrainingJobDefinition") or {}
    hyperparameters = {
        **train_hyperparameters(definition.get("StaticHyperParameters") or {}),
        **train_hyperparameters(best.get("TunedHyperParameters") or {}),
    }
    return {
        "tuning_job": job_name,
        "best_training_job": best.get("TrainingJobName"),
        "objective": best.get("FinalHyperParameterTuningJobObjectiveMetric"),
        "hyperparameters": hyperparameters,
    }


def save_best(aws: Aws, job_name: str, best_file: Path) -> dict[str, Any]:
    best = best_of_tuning_job(aws, job_name)
    best_file.parent.mkdir(parents=True, exist_ok=True)
    best_file.write_text(json.dumps(best, indent=2, default=str) + "\n")
    print(f"best training job: {best['best_training_job']} objective: {best['objective']}")
    print(f"best hyperparameters: {json.dumps(best['hyperparameters'], sort_keys=True)}")
    print(f"saved to {best_file}")
    return best


def load_best_hyperparameters(best_file: Path) -> dict[str, Any]:
    if not best_file.exists():
        return {}
    try:
        data = json.loads(best_file.read_text())
    except ValueError as err:
        raise LaunchError(f"{best_file} is not JSON: {err}") from None
    return train_hyperparameters(data.get("hyperparameters") or {})


def train(
    aws: Aws,
    *,
    role: str,
    data_uri: str,
    prefix: str,
    instance_type: str,
    hyperparameters: dict[str, Any],
    spot: bool,
    max_run: int,
    max_wait: int | None,
    wait: bool,
    job_file: Path,
    framework_version: str = TRAINING_FRAMEWORK_VERSION,
    py_version: str = TRAINING_PY_VERSION,
) -> str:
    """One training job with the Debugger hook, five rules, the Profiler and ProfilerReport."""
    from sagemaker.utils import name_from_base

    job_name = name_from_base("dog-breeds-train")
    estimator = build_estimator(
        aws,
        role=role,
        hyperparameters=hyperparameters,
        instance_type=instance_type,
        prefix=prefix,
        base_job_name="dog-breeds-train",
        debugged=True,
        spot=spot,
        max_run=max_run,
        max_wait=max_wait,
        # Per job, so that a resumed spot job finds its own checkpoints and nobody else's.
        checkpoint_uri=s3_uri(aws.bucket, prefix, "checkpoints", job_name) if spot else None,
        framework_version=framework_version,
        py_version=py_version,
    )
    estimator.fit(
        {"training": data_uri}, job_name=job_name, wait=wait and not aws.dry_run, logs="None"
    )
    if aws.dry_run:
        print(f"would start training job: {job_name}")
        return job_name
    print(f"training job: {job_name}")
    print(
        f"  console: https://{aws.region}.console.aws.amazon.com/sagemaker/home?region="
        f"{aws.region}#/jobs/{job_name}"
    )
    job_file.parent.mkdir(parents=True, exist_ok=True)
    job_file.write_text(json.dumps({"training_job": job_name}, indent=2) + "\n")
    print(f"  saved its name to {job_file} (deploy and report read it)")
    if wait:
        desc = aws.client("sagemaker").describe_training_job(TrainingJobName=job_name)
        print(f"  status: {desc['TrainingJobStatus']}")
        print(f"  model artifact: {desc.get('ModelArtifacts', {}).get('S3ModelArtifacts')}")
    return job_name
