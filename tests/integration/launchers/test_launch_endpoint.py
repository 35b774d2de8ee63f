"""Stages 4, 5 and 7: deploy to ml.t2.medium, invoke through the SDK and boto3, tear down."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import boto3
import pytest
from launch_testkit import BUCKET, REGION, ROLE, model_tarball, tar_names

from dog_breeds.artifact.serving_code import serving_modules
from local.endpoint.runtime import ContainerResponse, SageMakerRuntimeServer
from training.launch.endpoint import format_predictions, stage_code_dir

SOURCE_DIR = Path(__file__).resolve().parents[3] / "training" / "container"

# The endpoint contract (DESIGN.md), as the model's container would answer it.
ANSWER = {
    "predictions": [
        {"breed": "Labrador_retriever", "index": 3, "probability": 0.91},
        {"breed": "Golden_retriever", "index": 1, "probability": 0.06},
        {"breed": "Beagle", "index": 0, "probability": 0.03},
    ],
    "top_k": 3,
    "model": {"name": "resnet50-dogs", "version": "0123456789ab", "runtime": "openvino"},
}


class CannedContainer:
    """A serving container that answers the contract's JSON and remembers what it was sent."""

    def __init__(self) -> None:
        self.calls: list[tuple[bytes, str, str | None]] = []

    def ping(self) -> bool:
        return True

    def invoke(self, body, content_type, accept="application/json", custom_attributes=None):
        self.calls.append((body, content_type, custom_attributes))
        return ContainerResponse(200, json.dumps(ANSWER).encode(), "application/json")


def _assert_code_dir_stands_on_its_own(code_dir: Path, cwd: Path) -> None:
    """The entry point imports only from code/ (on PYTHONPATH, as the serving container puts it)
    and installed packages, never from the repository's training/."""
    probe = (
        "import sys; import endpoint_inference; "
        "print(sorted(n for n, m in list(sys.modules.items()) "
        "if (getattr(m, '__file__', None) or '').startswith(sys.argv[1])))"
    )
    env = {**os.environ, "PYTHONPATH": str(code_dir)}
    done = subprocess.run(
        [sys.executable, "-s", "-c", probe, str(SOURCE_DIR.parent)],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def _put_model(key: str) -> str:
    data = model_tarball(
        {"model.pth": b"weights", "classes.json": b'["A", "B"]', "config.json": b"{}"}
    )
    boto3.client("s3").put_object(Bucket=BUCKET, Key=key, Body=data)
    return f"s3://{BUCKET}/{key}"


def test_train_deploy_teardown_on_ml_t2_medium(run_launch, tmp_path):
    assert run_launch("train", "--role", ROLE, "--no-wait").rc == 0
    job = json.loads((tmp_path / "runs" / "training_job.json").read_text())["training_job"]
    sm = boto3.client("sagemaker", region_name=REGION)
    artifact = sm.describe_training_job(TrainingJobName=job)["ModelArtifacts"]["S3ModelArtifacts"]
    _put_model(artifact[len(f"s3://{BUCKET}/") :])

    # No --training-job: deploy finds the job that `train` saved in runs/.
    run = run_launch("deploy", "--role", ROLE, "--endpoint-name", "dogs-test")
    assert run.rc == 0, run.err
    assert "EndpointName=dogs-test" in run.out

    endpoint = sm.describe_endpoint(EndpointName="dogs-test")
    assert endpoint["EndpointStatus"] == "InService"
    config = sm.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    (variant,) = config["ProductionVariants"]
    assert variant["InstanceType"] == "ml.t2.medium"
    assert variant["InitialInstanceCount"] == 1
    model = sm.describe_model(ModelName=variant["ModelName"])
    container = model["PrimaryContainer"]
    assert "pytorch-inference:2.6.0-cpu-py312" in container["Image"]
    assert container["Environment"]["SAGEMAKER_PROGRAM"] == "endpoint_inference.py"
    # No worker count: TorchServe starts one per vCPU, as runtimes.threads_per_worker assumes.
    assert "SAGEMAKER_MODEL_SERVER_WORKERS" not in container["Environment"]
    assert model["ExecutionRoleArn"] == ROLE

    # The SDK repacked the artifact with our staged code/: the entry point, what it imports,
    # the serving requirements as code/requirements.txt, and no training or launcher code.
    bucket, key = container["ModelDataUrl"][len("s3://") :].split("/", 1)
    repacked = boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    names = tar_names(repacked)
    assert {"model.pth", "classes.json", "config.json"} <= names
    assert {"code/endpoint_inference.py", "code/requirements.txt"} <= names
    assert not {n for n in names if re.match(r"code/(train|launch)", n)}
    with tarfile.open(fileobj=io.BytesIO(repacked)) as tar:
        member = next(m for m in tar.getmembers() if m.name.lstrip("./") == "code/requirements.txt")
        requirements = tar.extractfile(member).read()
    assert requirements == (SOURCE_DIR / "requirements-serving.txt").read_bytes()
    model_dir = _deployed_artifact(sm, "dogs-test", tmp_path / "deployed")
    _assert_code_dir_stands_on_its_own(model_dir / "code", tmp_path)

    run = run_launch("teardown", "--endpoint-name", "dogs-test")
    assert run.rc == 0, run.err
    assert sm.list_endpoints()["Endpoints"] == []
    assert sm.list_endpoint_configs()["EndpointConfigs"] == []
    assert sm.list_models()["Models"] == []
    assert f"deleted model {variant['ModelName']}" in run.out


def test_deploy_dry_run_prints_model_config_endpoint_and_creates_nothing(run_launch):
    model_data = _put_model("models/model.tar.gz")
    run = run_launch("deploy", "--role", ROLE, "--model-data", model_data, "--dry-run")
    assert run.rc == 0, run.err
    printed = run.dry_run_requests()
    operations = [op for op, _ in printed]
    assert operations[-3:] == ["CreateModel", "CreateEndpointConfig", "CreateEndpoint"]
    config = dict(printed)["CreateEndpointConfig"]
    assert config["ProductionVariants"][0]["InstanceType"] == "ml.t2.medium"
    assert config["ProductionVariants"][0]["InitialInstanceCount"] == 1
    assert dict(printed)["CreateEndpoint"]["EndpointName"] == "dog-breeds"
    sm = boto3.client("sagemaker", region_name=REGION)
    assert sm.list_models()["Models"] == [] and sm.list_endpoints()["Endpoints"] == []
    keys = [o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert keys == ["models/model.tar.gz"]


@pytest.fixture
def runtime(aws, monkeypatch):
    container = CannedContainer()
    with SageMakerRuntimeServer({"dogs-test": container}) as server:
        monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", server.url)
        yield server, container


def test_invoke_prints_top_k_through_predictor_and_boto3(run_launch, runtime, tmp_path):
    server, container = runtime
    image = tmp_path / "rex.jpg"
    image.write_bytes(b"\xff\xd8\xff\xe0 a jpeg, as far as the launcher cares")

    run = run_launch("invoke", str(image), "--endpoint-name", "dogs-test", "--top-k", "2")
    assert run.rc == 0, run.err

    # Two calls, one per client, each with the raw bytes, the image type and top_k.
    assert [c for c in container.calls] == [(image.read_bytes(), "image/jpeg", "top_k=2")] * 2
    assert [i.endpoint for i in server.invocations] == ["dogs-test", "dogs-test"]
    assert "SageMaker Predictor: rex.jpg on dogs-test" in run.out
    assert "boto3 sagemaker-runtime: rex.jpg on dogs-test" in run.out
    assert run.out.count("1. Labrador_retriever") == 2
    assert run.out.count("91.00%") == 2
    assert "Beagle" not in run.out  # client-side top-k as well
    assert run.out.count("runtime openvino") == 2


def test_invoke_unknown_endpoint_is_one_line_error(run_launch, runtime, tmp_path):
    image = tmp_path / "rex.png"
    image.write_bytes(b"\x89PNG not really")
    run = run_launch("invoke", str(image), "--endpoint-name", "nobody-home")
    assert run.rc == 2
    assert run.err.strip().count("\n") == 0
    assert "ValidationError" in run.err and "Traceback" not in run.err


def test_code_dir_holds_the_entry_point_and_its_imports_only(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    (source / "endpoint_inference.py").write_text("import json\nimport helper_a\n")
    (source / "helper_a.py").write_text("def f():\n    from helper_b import g\n")
    (source / "helper_b.py").write_text("import numpy\n")
    (source / "train.py").write_text("import helper_a\n")
    (source / "requirements-serving.txt").write_text("openvino==1\n")

    assert [p.name for p in serving_modules(source)] == [
        "endpoint_inference.py",
        "helper_a.py",
        "helper_b.py",
    ]
    code = stage_code_dir(tmp_path / "code", source)
    assert sorted(p.name for p in code.iterdir()) == [
        "endpoint_inference.py",
        "helper_a.py",
        "helper_b.py",
        "requirements.txt",
    ]
    assert (code / "requirements.txt").read_text() == "openvino==1\n"


def test_code_dir_follows_dotted_and_relative_imports_into_packages(tmp_path):
    source = tmp_path / "src"
    (source / "pkg" / "sub").mkdir(parents=True)
    (source / "pkg" / "unused").mkdir()
    (source / "endpoint_inference.py").write_text("from pkg.sub.handlers import model_fn\n")
    (source / "pkg" / "__init__.py").write_text("")
    (source / "pkg" / "sub" / "__init__.py").write_text("")
    handlers = "from . import decode\nfrom ..io import r\n"
    (source / "pkg" / "sub" / "handlers.py").write_text(handlers)
    (source / "pkg" / "sub" / "decode.py").write_text("import os\n")
    (source / "pkg" / "io.py").write_text("def r():\n    import pkg.unused.x\n")
    (source / "pkg" / "unused" / "__init__.py").write_text("")
    (source / "pkg" / "unused" / "x.py").write_text("")
    (source / "pkg" / "training.py").write_text("import torch\n")

    code = stage_code_dir(tmp_path / "code", source)
    assert sorted(p.relative_to(code).as_posix() for p in code.rglob("*.py")) == [
        "endpoint_inference.py",
        "pkg/__init__.py",
        "pkg/io.py",
        "pkg/sub/__init__.py",
        "pkg/sub/decode.py",
        "pkg/sub/handlers.py",
        "pkg/unused/__init__.py",
        "pkg/unused/x.py",
    ]


def test_the_real_code_dir_has_no_launcher_or_training_script(tmp_path):
    code = stage_code_dir(tmp_path / "code")
    names = {p.relative_to(code).as_posix() for p in code.rglob("*") if p.is_file()}
    assert {"endpoint_inference.py", "requirements.txt", "dog_breeds/serving/inference.py"} <= names
    assert not {n for n in names if n.startswith(("launch", "train.py", "dog_breeds/training"))}


def test_predictions_are_formatted_best_first():
    lines = format_predictions(ANSWER)
    assert lines[0].split()[:2] == ["1.", "Labrador_retriever"]
    assert "91.00%" in lines[0]
    assert "version 0123456789ab" in lines[-1]


def _deployed_artifact(sm, endpoint_name: str, target: Path) -> Path:
    """The model.tar.gz the endpoint's model points at (the SDK's repack), extracted."""
    endpoint = sm.describe_endpoint(EndpointName=endpoint_name)
    config = sm.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    model = sm.describe_model(ModelName=config["ProductionVariants"][0]["ModelName"])
    bucket, key = model["PrimaryContainer"]["ModelDataUrl"][len("s3://") :].split("/", 1)
    data = boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(target, filter="data")
    return target


@pytest.mark.slow
def test_the_deployed_artifact_serves_invoke_through_the_toolkit(
    run_launch, trained_artifact, tiny_dataset, tmp_path, monkeypatch
):
    """deploy's model.tar.gz, run as the serving container runs it, answers `invoke`."""
    from local.endpoint.container import ToolkitContainer

    # Without openvino/ (the runtime falls back to PyTorch): half the bytes through moto.
    files = {
        p.relative_to(trained_artifact).as_posix(): p.read_bytes()
        for p in trained_artifact.rglob("*")
        if p.is_file() and "openvino" not in p.relative_to(trained_artifact).parts
    }
    boto3.client("s3").put_object(
        Bucket=BUCKET, Key="models/real/model.tar.gz", Body=model_tarball(files)
    )
    run = run_launch(
        "deploy", "--role", ROLE, "--model-data", f"s3://{BUCKET}/models/real/model.tar.gz",
        "--endpoint-name", "dogs-real",
    )  # fmt: skip
    assert run.rc == 0, run.err
    model_dir = _deployed_artifact(boto3.client("sagemaker", region_name=REGION), "dogs-real",
                                   tmp_path / "model")  # fmt: skip

    classes = json.loads((model_dir / "classes.json").read_text())
    image = next((tiny_dataset / "test").rglob("*.jpg"))
    with (
        ToolkitContainer(model_dir) as container,
        SageMakerRuntimeServer({"dogs-real": container}) as server,
    ):
        monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", server.url)
        run = run_launch("invoke", str(image), "--endpoint-name", "dogs-real", "--top-k", "3")
    assert run.rc == 0, run.err
    tops = re.findall(r"^\s+1\. (\S+)", run.out, flags=re.MULTILINE)
    assert len(tops) == 2 and tops[0] == tops[1] and tops[0] in classes
    assert len(re.findall(r"^\s+3\. ", run.out, flags=re.MULTILINE)) == 2
    assert [i.status for i in server.invocations] == [200, 200]
    assert run.out.count("runtime pytorch") == 2


def test_deploy_serverless_asks_for_memory_and_concurrency_and_no_instance(run_launch):
    model_data = _put_model("models/model.tar.gz")
    run = run_launch(
        "deploy", "--role", ROLE, "--model-data", model_data, "--endpoint-name", "dogs-serverless",
        "--serverless-memory-mb", "3072", "--serverless-max-concurrency", "2",
    )  # fmt: skip
    assert run.rc == 0, run.err
    assert "dogs-serverless (serverless, 3072 MB, at most 2 at once)" in run.out

    (request,) = run.requests("CreateEndpointConfig")
    (variant,) = request["ProductionVariants"]
    assert variant["ServerlessConfig"] == {"MemorySizeInMB": 3072, "MaxConcurrency": 2}
    assert "InstanceType" not in variant and "InitialInstanceCount" not in variant
    # The serving image is still the CPU PyTorch inference image the instance endpoint gets.
    (model,) = run.requests("CreateModel")
    assert "pytorch-inference:2.6.0-cpu-py312" in model["PrimaryContainer"]["Image"]
    sm = boto3.client("sagemaker", region_name=REGION)
    assert sm.describe_endpoint(EndpointName="dogs-serverless")["EndpointStatus"] == "InService"


def _dry_run_deploy(run_launch, *flags: str) -> tuple[Any, dict[str, Any]]:
    """deploy --dry-run with ``flags``: the run and its printed requests by operation."""
    model_data = _put_model("models/model.tar.gz")
    run = run_launch("deploy", "--role", ROLE, "--model-data", model_data, *flags, "--dry-run")
    assert run.rc == 0, run.err
    return run, dict(run.dry_run_requests())


def test_deploy_serverless_dry_run_prints_the_serverless_config(run_launch):
    _, requests = _dry_run_deploy(run_launch, "--serverless-memory-mb", "6144")
    (variant,) = requests["CreateEndpointConfig"]["ProductionVariants"]
    assert variant["ServerlessConfig"] == {"MemorySizeInMB": 6144, "MaxConcurrency": 2}
    assert "InstanceType" not in variant
    # One model copy per serverless container unless asked (1024 MB holds only one).
    environment = requests["CreateModel"]["PrimaryContainer"]["Environment"]
    assert environment["SAGEMAKER_MODEL_SERVER_WORKERS"] == "1"


def test_deploy_passes_the_model_server_worker_count_to_the_container(run_launch):
    run, requests = _dry_run_deploy(run_launch, "--model-server-workers", "1")
    environment = requests["CreateModel"]["PrimaryContainer"]["Environment"]
    assert environment["SAGEMAKER_MODEL_SERVER_WORKERS"] == "1"
    assert "model server workers: 1" in run.out

    run = run_launch(
        "deploy", "--role", ROLE, "--model-data", "s3://b/m.tar.gz", "--model-server-workers", "0"
    )  # fmt: skip
    assert run.rc == 2
    assert run.err.strip().splitlines()[-1].endswith("--model-server-workers 0: use 1 or more")


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--serverless-memory-mb", "3000"], "--serverless-memory-mb 3000: use one of 1024, 2048"),
        (["--serverless-memory-mb", "512"], "--serverless-memory-mb 512: use one of"),
        (["--serverless-memory-mb", "7168"], "--serverless-memory-mb 7168: use one of"),
        (["--serverless-memory-mb", "2048", "--serverless-max-concurrency", "0"],
         "--serverless-max-concurrency 0: use 1 to 200"),
        (["--serverless-memory-mb", "2048", "--serverless-max-concurrency", "201"],
         "--serverless-max-concurrency 201: use 1 to 200"),
        (["--serverless-max-concurrency", "2"], "needs --serverless-memory-mb"),
    ],
)  # fmt: skip
def test_deploy_refuses_serverless_sizes_sagemaker_would_refuse_in_one_line(
    run_launch, flags, message
):
    run = run_launch("deploy", "--role", ROLE, "--model-data", "s3://b/m.tar.gz", *flags)
    assert run.rc == 2
    assert message in run.err and run.err.strip().count("\n") == 0
    assert run.requests("CreateModel") == [] and run.requests("CreateEndpointConfig") == []
