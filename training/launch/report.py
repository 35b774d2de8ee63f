"""Stage 6: what Debugger and Profiler found: rule statuses, the ProfilerReport, loss curves."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from training.launch.aws import Aws, LaunchError, s3_uri, split_s3_uri

LOSS_TENSOR_REGEX = "CrossEntropyLoss"


def rule_statuses(desc: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(rule, status, details) for the Debugger rules and the Profiler rules of one job."""
    rows = []
    for key in ("DebugRuleEvaluationStatuses", "ProfilerRuleEvaluationStatuses"):
        for status in desc.get(key) or []:
            rows.append(
                (
                    status.get("RuleConfigurationName", "?"),
                    status.get("RuleEvaluationStatus", "?"),
                    status.get("StatusDetails", ""),
                )
            )
    return rows


def debug_output_uri(desc: dict[str, Any]) -> str | None:
    """Where SageMaker writes the hook's tensors: {S3OutputPath}/{job}/debug-output."""
    hook = desc.get("DebugHookConfig") or {}
    if not hook.get("S3OutputPath"):
        return None
    return s3_uri_join(hook["S3OutputPath"], desc["TrainingJobName"], "debug-output")


def s3_uri_join(base: str, *parts: str) -> str:
    bucket, key = split_s3_uri(base)
    return s3_uri(bucket, key, *parts)


def download_profiler_report(aws: Aws, desc: dict[str, Any], out_dir: Path) -> list[Path]:
    """Every file under {output}/{job}/rule-output/ProfilerReport*/ (profiler-report.html ...)."""
    bases = {
        (desc.get("ProfilerConfig") or {}).get("S3OutputPath"),
        (desc.get("OutputDataConfig") or {}).get("S3OutputPath"),
    }
    s3 = aws.client("s3")
    downloaded: list[Path] = []
    for base in sorted(b for b in bases if b):
        bucket, key = split_s3_uri(s3_uri_join(base, desc["TrainingJobName"], "rule-output"))
        prefix = key.rstrip("/") + "/"
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                relative = obj["Key"][len(prefix) :]
                if not relative.startswith("ProfilerReport") or relative.endswith("/"):
                    continue
                target = out_dir / "profiler-report" / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                s3.download_file(bucket, obj["Key"], str(target))
                downloaded.append(target)
    return downloaded


def has_debugger_output(aws: Aws | None, trial_path: str) -> bool:
    """Whether the hook has written its collections yet. smdebug's create_trial waits for them
    forever, so a wrong path or a job that has not started must be caught before it."""
    if not trial_path.startswith("s3://"):
        return any(Path(trial_path, "collections").glob("*/*collections.json"))
    if aws is None:
        return True  # nothing to look with: let smdebug try
    bucket, key = split_s3_uri(trial_path)
    listed = aws.client("s3").list_objects_v2(
        Bucket=bucket, Prefix=f"{key.rstrip('/')}/collections/", MaxKeys=1
    )
    return listed.get("KeyCount", 0) > 0


def loss_curves(trial_path: str, aws: Aws | None = None) -> dict[str, dict[str, list[float]]]:
    """{"TRAIN"|"EVAL": {"steps": [...], "loss": [...]}} from a Debugger trial (S3 or local)."""
    if not has_debugger_output(aws, trial_path):
        raise LaunchError(
            f"no Debugger output at {trial_path} (no collections/ yet): the job may not have "
            "started training, or the path is not a Debugger hook's output folder"
        )
    # smdebug logs at INFO to stdout by default; our own lines say what was read.
    os.environ.setdefault("SMDEBUG_LOG_LEVEL", "warning")
    try:
        from smdebug.core.modes import ModeKeys
        from smdebug.trials import create_trial
    except ImportError as err:
        raise LaunchError(
            f"report reads the Debugger trial with smdebug, which is missing: {err}"
        ) from None

    trial = create_trial(trial_path)
    names = trial.tensor_names(regex=LOSS_TENSOR_REGEX) or trial.tensor_names(collection="losses")
    if not names:
        raise LaunchError(f"no loss tensors in the Debugger output at {trial_path}")
    tensor = trial.tensor(sorted(names)[0])
    curves: dict[str, dict[str, list[float]]] = {}
    for mode in (ModeKeys.TRAIN, ModeKeys.EVAL):
        steps = list(tensor.steps(mode=mode))
        if steps:
            curves[mode.name] = {
                "steps": [float(s) for s in steps],
                "loss": [float(tensor.value(s, mode=mode)) for s in steps],
            }
    if not curves:
        raise LaunchError(f"{sorted(names)[0]} has no TRAIN or EVAL steps at {trial_path}")
    return curves


def plot_loss_curves(curves: dict[str, dict[str, list[float]]], png: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")  # no display on build machines
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for mode, curve in curves.items():
        ax.plot(
            curve["steps"],
            curve["loss"],
            label=mode.lower(),
            marker="." if mode == "EVAL" else None,
        )
    ax.set_xlabel("step (per mode)")
    ax.set_ylabel("cross-entropy loss")
    ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)
    return png


def report(
    aws: Aws | None, *, training_job: str | None, trial_path: str | None, out_dir: Path
) -> dict[str, Any]:
    """Print rule statuses, fetch the ProfilerReport, plot the losses; returns what it found."""
    if not training_job and not trial_path:
        raise LaunchError(
            "report needs --training-job NAME (or runs/training_job.json) or --trial PATH"
        )
    result: dict[str, Any] = {"rules": [], "profiler_report": [], "plot": None}
    label = training_job or Path(trial_path or "").name
    if training_job and aws is not None:
        desc = aws.client("sagemaker").describe_training_job(TrainingJobName=training_job)
        print(f"training job {training_job}: {desc.get('TrainingJobStatus')}")
        result["rules"] = rule_statuses(desc)
        for name, status, details in result["rules"]:
            print(f"  rule {name:<32} {status}{'  ' + details if details else ''}")
        if not result["rules"]:
            print("  no rule evaluations reported (yet)")
        result["profiler_report"] = download_profiler_report(aws, desc, out_dir)
        if result["profiler_report"]:
            html = [p for p in result["profiler_report"] if p.suffix == ".html"]
            count = len(result["profiler_report"])
            print(f"ProfilerReport: {count} files in {out_dir / 'profiler-report'}")
            for path in html:
                print(f"  open {path}")
        else:
            print("ProfilerReport: not in S3 yet (it is written while and after the job runs)")
        trial_path = trial_path or debug_output_uri(desc)
        if trial_path is None:
            raise LaunchError(f"training job {training_job} has no Debugger hook configuration")
    print(f"Debugger trial: {trial_path}")
    curves = loss_curves(str(trial_path), aws)
    png = plot_loss_curves(curves, out_dir / f"{label}-loss.png", f"{label}: cross-entropy loss")
    for mode, curve in curves.items():
        loss = curve["loss"]
        print(f"{mode.lower()} loss: {len(loss)} steps, first {loss[0]:.4f}, last {loss[-1]:.4f}")
    print(f"loss curves: {png}")
    result["plot"] = png
    result["curves"] = curves
    return result
