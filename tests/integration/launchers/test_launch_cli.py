"""Stage 1 (upload) and what a user sees when something is missing: one line, exit code 2."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import boto3
import pytest
from launch_testkit import BUCKET, ROLE

from training.launch import cli

REPO = Path(__file__).resolve().parents[3]


def _dataset(root: Path) -> Path:
    for split, count in (("train", 3), ("valid", 1), ("test", 1)):
        for breed in ("001.Affenpinscher", "002.Afghan_hound"):
            folder = root / split / breed
            folder.mkdir(parents=True)
            for i in range(count):
                (folder / f"{breed}_{i:05d}.jpg").write_bytes(b"\xff\xd8 image %d" % i)
    return root


def _keys(prefix: str) -> list[str]:
    listed = boto3.client("s3").list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    return sorted(o["Key"] for o in listed.get("Contents", []))


def test_upload_a_dataset_folder(run_launch, tmp_path):
    source = _dataset(tmp_path / "dogImages")
    run = run_launch("upload", str(source))
    assert run.rc == 0, run.err
    keys = _keys("dog-breeds/dogImages/")
    assert len(keys) == 10
    assert "dog-breeds/dogImages/train/001.Affenpinscher/001.Affenpinscher_00002.jpg" in keys
    assert f"--data s3://{BUCKET}/dog-breeds/dogImages" in run.out


def test_upload_the_dogimages_zip_extracted(run_launch, tmp_path):
    source = _dataset(tmp_path / "unzipped" / "dogImages")
    archive = tmp_path / "dogImages.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in source.rglob("*.jpg"):
            zf.write(path, path.relative_to(source.parent).as_posix())
    run = run_launch("upload", str(archive), "--to", f"s3://{BUCKET}/data/dogs")
    assert run.rc == 0, run.err
    keys = _keys("data/dogs/")
    assert len(keys) == 10
    assert "data/dogs/valid/002.Afghan_hound/002.Afghan_hound_00000.jpg" in keys


def test_upload_dry_run_prints_every_put_and_uploads_nothing(run_launch, tmp_path):
    run = run_launch("upload", str(_dataset(tmp_path / "dogImages")), "--dry-run")
    assert run.rc == 0, run.err
    puts = [p for op, p in run.dry_run_requests() if op == "PutObject"]
    assert len(puts) == 10 and all(p["Bucket"] == BUCKET for p in puts)
    assert "would upload 10 files" in run.out
    assert _keys("") == []


def test_upload_rejects_a_folder_without_the_dogimages_layout(run_launch, tmp_path):
    (tmp_path / "photos").mkdir()
    run = run_launch("upload", str(tmp_path / "photos"))
    assert run.rc == 2
    assert "train/ valid/ test/" in run.err


@pytest.mark.parametrize("stage", ["tune", "train", "deploy"])
def test_missing_role_is_one_clear_line(run_launch, stage):
    run = run_launch(stage)
    assert run.rc == 2
    assert run.err.count("\n") == 1
    assert "SAGEMAKER_ROLE_ARN" in run.err and "--role" in run.err
    assert run.log.calls == []  # nothing was sent


def test_a_role_that_is_not_an_arn_is_refused(run_launch):
    run = run_launch("train", "--role", "SageMakerRole")
    assert run.rc == 2 and "IAM role ARN" in run.err


def test_missing_credentials_is_one_clear_line(run_launch, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    run = run_launch("teardown", "--endpoint-name", "dogs")
    assert run.rc == 2
    assert run.err.startswith("training.launch teardown: error: no AWS credentials")
    assert run.err.count("\n") == 1


def test_dry_run_needs_no_credentials_when_bucket_and_role_are_given(run_launch, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    run = run_launch("train", "--role", ROLE, "--dry-run")
    assert run.rc == 0, run.err
    assert [op for op, _ in run.dry_run_requests()] == ["PutObject", "CreateTrainingJob"]


def test_missing_region_is_one_clear_line(run_launch, monkeypatch):
    monkeypatch.delenv("AWS_REGION")
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    run = run_launch("teardown")
    assert run.rc == 2
    assert "no AWS region" in run.err


def test_aws_refusal_is_one_line_with_the_error_code(run_launch):
    run = run_launch("teardown", "--endpoint-name", "does-not-exist")
    assert run.rc == 2
    assert run.err.startswith("training.launch teardown: error: AWS refused DescribeEndpoint:")
    assert run.err.count("\n") == 1


@pytest.mark.parametrize(
    "argv, message",
    [
        (["fly"], "invalid choice"),
        (["tune", "--max-jobs", "many"], "invalid int value"),
        (["train", "--pretrained", "maybe"], "expected true or false"),
        (["invoke"], "required: image"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_bad_values_exit_2(run_launch, tmp_path):
    run = run_launch("tune", "--role", ROLE, "--max-jobs", "0")
    assert run.rc == 2 and "--max-jobs" in run.err
    run = run_launch("invoke", str(tmp_path / "missing.jpg"))
    assert run.rc == 2 and "no such image file" in run.err
    run = run_launch("invoke", str(tmp_path / "x.jpg"), "--top-k", "0")
    assert run.rc == 2 and "--top-k" in run.err
    run = run_launch("deploy", "--role", ROLE, "--model-data", "s3://b/m.tar.gz", "--endpoint-name",
                     "Dog_Breeds", "--dry-run")  # fmt: skip
    assert run.rc == 2 and "EndpointName" in run.err


def test_the_script_itself_prints_no_traceback(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SAGEMAKER_ROLE"))}
    env.update(AWS_REGION="us-east-1", HOME=str(tmp_path), AWS_CONFIG_FILE=str(tmp_path / "none"))
    done = subprocess.run(
        [sys.executable, "-m", "training.launch", "train", "--bucket", "b"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "training.launch train: error: no SageMaker execution role: pass --role "
        "arn:aws:iam::ACCOUNT:role/NAME or set SAGEMAKER_ROLE_ARN"
    ]


def test_help_names_the_configuration_and_where_the_walk_through_is(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for name in ("SAGEMAKER_ROLE_ARN", "SAGEMAKER_BUCKET", "AWS_REGION", "runs/"):
        assert name in out
    # The walk-throughs it names exist, with the sections a reader looks for.
    assert "docs/deploy.md" in out and "docs/operations.md" in out
    assert "## 1. Train and deploy on SageMaker" in (REPO / "docs" / "deploy.md").read_text()
    assert "## Update the model" in (REPO / "docs" / "operations.md").read_text()
    assert "README_launchers" not in out


@pytest.mark.parametrize(
    ("stage", "operation"),
    [("tune", "CreateHyperParameterTuningJob"), ("train", "CreateTrainingJob")],
)
def test_a_stage_run_as_a_script_exits_0_after_its_dry_run(stage, operation, tmp_path):
    """The script as a user runs it, offline with throwaway credentials: success is exit code 0,
    with nothing after the requests it printed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SAGEMAKER_"))}
    env.update(
        AWS_REGION="us-east-1",
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        HOME=str(tmp_path),
        AWS_CONFIG_FILE=str(tmp_path / "none"),
    )
    done = subprocess.run(
        [sys.executable, "-m", "training.launch", stage, "--dry-run", "--no-wait",
         "--role", ROLE, "--bucket", BUCKET, "--runs-dir", str(tmp_path / "runs")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert operation in done.stdout
    assert "Traceback" not in done.stderr
