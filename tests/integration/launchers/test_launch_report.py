"""Stage 6: rule statuses, the ProfilerReport and the loss curves of a real (tiny) training run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import boto3
import pytest
from launch_testkit import BUCKET, ROLE
from PIL import Image

from dog_breeds.training import trainer
from training.launch.report import rule_statuses


@pytest.fixture(scope="module")
def smdebug_dir(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What train.py's Debugger hook writes: 2 epochs from random init on the tiny dataset."""
    out = tmp_path_factory.mktemp("smdebug-run")
    summary = trainer.main(
        [
            "--data-dir", str(tiny_dataset), "--model-dir", str(out / "model"),
            "--epochs", "2", "--pretrained", "false", "--batch_size", "32", "--image_size", "32",
            "--hidden_size", "16", "--num_workers", "0", "--cpu_form", "false",
            "--smdebug-dir", str(out / "debug-output"),
        ]
    )  # fmt: skip
    assert summary["epochs"] == 2
    return out / "debug-output"


def _assert_loss_png(png: Path) -> None:
    assert png.is_file()
    with Image.open(png) as image:
        assert image.format == "PNG"
        assert image.size == (800, 450)
        assert len(image.convert("L").getcolors(maxcolors=100000)) > 10  # lines, not a blank


def test_report_plots_train_and_eval_losses_from_a_local_trial(run_launch, smdebug_dir, tmp_path):
    run = run_launch("report", "--trial", str(smdebug_dir), "--out", str(tmp_path / "report"))
    assert run.rc == 0, run.err

    png = tmp_path / "report" / "debug-output-loss.png"
    _assert_loss_png(png)
    assert f"loss curves: {png}" in run.out
    for mode in ("train", "eval"):
        line = next(li for li in run.out.splitlines() if li.startswith(f"{mode} loss:"))
        steps = int(line.split()[2])
        first, last = (float(v) for v in line.replace(",", "").split()[-3::2])
        assert steps >= 2 and math.isfinite(first) and math.isfinite(last)


def test_report_on_a_training_job_reads_s3_and_fetches_the_profiler_report(
    run_launch, smdebug_dir, tmp_path
):
    assert run_launch("train", "--role", ROLE, "--no-wait").rc == 0
    job = json.loads((tmp_path / "runs" / "training_job.json").read_text())["training_job"]
    s3 = boto3.client("s3")
    # What SageMaker would have written while the job ran: the hook's tensors under
    # {DebugHookConfig.S3OutputPath}/{job}/debug-output, the ProfilerReport under rule-output.
    for path in smdebug_dir.rglob("*"):
        if path.is_file():
            key = f"dog-breeds/debug/{job}/debug-output/{path.relative_to(smdebug_dir).as_posix()}"
            s3.upload_file(str(path), BUCKET, key)
    report_key = (
        f"dog-breeds/output/{job}/rule-output/ProfilerReport/profiler-output/profiler-report.html"
    )
    s3.put_object(Bucket=BUCKET, Key=report_key, Body=b"<html>report</html>")

    run = run_launch("report")  # the job that `train` saved in runs/
    assert run.rc == 0, run.err

    out = tmp_path / "runs" / "report"
    html = out / "profiler-report" / "ProfilerReport" / "profiler-output" / "profiler-report.html"
    assert html.read_bytes() == b"<html>report</html>"
    assert f"open {html}" in run.out
    _assert_loss_png(out / f"{job}-loss.png")
    # The trial was read from where SageMaker writes it, in S3 (moto), not the local folder.
    assert f"Debugger trial: s3://{BUCKET}/dog-breeds/debug/{job}/debug-output" in run.out


def test_rule_statuses_cover_debugger_and_profiler_rules():
    desc = {
        "DebugRuleEvaluationStatuses": [
            {"RuleConfigurationName": "Overfit", "RuleEvaluationStatus": "NoIssuesFound"},
            {
                "RuleConfigurationName": "LossNotDecreasing",
                "RuleEvaluationStatus": "IssuesFound",
                "StatusDetails": "loss stalled at step 400",
            },
        ],
        "ProfilerRuleEvaluationStatuses": [
            {"RuleConfigurationName": "ProfilerReport", "RuleEvaluationStatus": "InProgress"}
        ],
    }
    assert rule_statuses(desc) == [
        ("Overfit", "NoIssuesFound", ""),
        ("LossNotDecreasing", "IssuesFound", "loss stalled at step 400"),
        ("ProfilerReport", "InProgress", ""),
    ]


def test_report_without_a_job_or_trial_says_what_it_needs(run_launch):
    run = run_launch("report")
    assert run.rc == 2
    assert "--training-job" in run.err and "Traceback" not in run.err


def test_report_on_a_folder_without_debugger_output_says_so_instead_of_waiting(
    run_launch, tmp_path
):
    """smdebug's create_trial waits forever for collections that never come: not the user."""
    (tmp_path / "empty").mkdir()
    run = run_launch("report", "--trial", str(tmp_path / "empty"))
    assert run.rc == 2
    assert run.err.startswith("training.launch report: error: no Debugger output at")
    assert run.err.count("\n") == 1


def test_report_on_a_job_that_wrote_no_tensors_yet_says_so(run_launch, tmp_path):
    assert run_launch("train", "--role", ROLE, "--no-wait").rc == 0
    run = run_launch("report")
    assert run.rc == 2, run.out
    job = json.loads((tmp_path / "runs" / "training_job.json").read_text())["training_job"]
    assert f"no Debugger output at s3://{BUCKET}/dog-breeds/debug/{job}/debug-output" in run.err
    assert "ProfilerReport: not in S3 yet" in run.out


def test_report_output_is_ours_not_smdebugs(run_launch, smdebug_dir, tmp_path):
    run = run_launch("report", "--trial", str(smdebug_dir), "--out", str(tmp_path / "r"))
    assert run.rc == 0, run.err
    assert "INFO" not in run.out
    assert all(
        line.startswith(("Debugger trial:", "train loss:", "eval loss:", "loss curves:"))
        for line in run.out.strip().splitlines()
    ), run.out
