"""Stages 4, 5 and 7: deploy the model to an ml.t2.medium endpoint (or a serverless one), invoke
it, tear it down."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dog_breeds.artifact import serving_code
from training.launch.aws import Aws, LaunchError, s3_uri

SOURCE_DIR = serving_code.SOURCE_DIR
ENTRY_POINT = serving_code.ENTRY_POINT

# The newest PyTorch inference image SageMaker SDK 2.257 knows (image_uri_config/pytorch.json).
INFERENCE_FRAMEWORK_VERSION = "2.6.0"
INFERENCE_PY_VERSION = "py312"
# What that image carries beside it; local/parity reproduces the image's runtime from these.
INFERENCE_PYTHON = "3.12"
INFERENCE_TORCHVISION_VERSION = "0.21.0"
INFERENCE_TOOLKIT_VERSION = "2.0.25"  # sagemaker-pytorch-inference
INFERENCE_TORCHSERVE_VERSION = "0.12.0"
ENDPOINT_INSTANCE = "ml.t2.medium"
DEFAULT_ENDPOINT_NAME = "dog-breeds"
# template.yaml's EndpointName pattern: lower case, as in the endpoint's ARN (and IAM policy).
ENDPOINT_NAME_PATTERN = re.compile(r"^[a-z0-9](-*[a-z0-9]){0,62}$")

# What SageMaker Serverless Inference accepts (CreateEndpointConfig's ServerlessConfig).
SERVERLESS_MEMORY_MB = tuple(range(1024, 6144 + 1, 1024))
SERVERLESS_MAX_CONCURRENCY = (1, 200)
DEFAULT_SERVERLESS_MAX_CONCURRENCY = 2  # the upload queue's smallest MaximumConcurrency
# TorchServe's worker processes, each with its own copy of the model (about 1 GB resident) and
# runtimes.threads_per_worker() threads. Unset, TorchServe starts one per vCPU (2 on an
# ml.t2.medium, the measured best for two requests at once: see the README's performance
# section). A serverless endpoint gets 1 unless told: its smallest memory size holds one copy.
MODEL_SERVER_WORKERS_ENV = "SAGEMAKER_MODEL_SERVER_WORKERS"
DEFAULT_SERVERLESS_WORKERS = 1


def model_server_env(workers: int | None, serverless: bool) -> dict[str, str]:
    """The model's environment for ``workers`` TorchServe workers (None: TorchServe's default,
    or DEFAULT_SERVERLESS_WORKERS on a serverless endpoint); refuses fewer than one."""
    if workers is None and serverless:
        workers = DEFAULT_SERVERLESS_WORKERS
    if workers is None:
        return {}
    if workers < 1:
        raise LaunchError(f"--model-server-workers {workers}: use 1 or more")
    return {MODEL_SERVER_WORKERS_ENV: str(workers)}


@dataclass(frozen=True)
class ServerlessCapacity:
    """A serverless endpoint's memory and concurrency; refused on construction if SageMaker
    would refuse it."""

    memory_mb: int
    max_concurrency: int = DEFAULT_SERVERLESS_MAX_CONCURRENCY

    def __post_init__(self) -> None:
        if self.memory_mb not in SERVERLESS_MEMORY_MB:
            sizes = ", ".join(str(m) for m in SERVERLESS_MEMORY_MB)
            raise LaunchError(f"--serverless-memory-mb {self.memory_mb}: use one of {sizes}")
        low, high = SERVERLESS_MAX_CONCURRENCY
        if not low <= self.max_concurrency <= high:
            raise LaunchError(
                f"--serverless-max-concurrency {self.max_concurrency}: use {low} to {high}"
            )

    def sdk_config(self) -> Any:
        from sagemaker.serverless import ServerlessInferenceConfig

        return ServerlessInferenceConfig(
            memory_size_in_mb=self.memory_mb, max_concurrency=self.max_concurrency
        )

    def describe(self) -> str:
        return f"serverless, {self.memory_mb} MB, at most {self.max_concurrency} at once"


CONTENT_TYPES = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".webp": "image/webp",
}


def stage_code_dir(target: Path, source_dir: Path | None = None) -> Path:
    """code/ as the serving container wants it: entry point, its modules, requirements.txt."""
    source_dir = source_dir or SOURCE_DIR
    entry = source_dir / ENTRY_POINT
    if not entry.exists():
        raise LaunchError(f"{entry} does not exist: nothing to serve")
    return serving_code.write_code_dir(target, source_dir)


def model_data_of(aws: Aws, training_job: str) -> str:
    desc = aws.client("sagemaker").describe_training_job(TrainingJobName=training_job)
    status = desc.get("TrainingJobStatus")
    artifact = (desc.get("ModelArtifacts") or {}).get("S3ModelArtifacts")
    if status != "Completed" or not artifact:
        raise LaunchError(f"training job {training_job} is {status}: no model artifact to deploy")
    return artifact


def deploy(
    aws: Aws,
    *,
    role: str,
    model_data: str,
    endpoint_name: str,
    prefix: str,
    instance_type: str,
    wait: bool,
    staging_dir: Path,
    framework_version: str = INFERENCE_FRAMEWORK_VERSION,
    py_version: str = INFERENCE_PY_VERSION,
    serverless: ServerlessCapacity | None = None,
    model_server_workers: int | None = None,
) -> str:
    """Model (artifact repacked with code/), endpoint config (one ``instance_type`` instance, or
    ``serverless`` capacity instead), endpoint. ``model_server_workers``: TorchServe's worker
    count (None: its default, one per vCPU; serverless: DEFAULT_SERVERLESS_WORKERS)."""
    from sagemaker.deserializers import JSONDeserializer
    from sagemaker.pytorch import PyTorchModel
    from sagemaker.serializers import IdentitySerializer
    from sagemaker.utils import name_from_base

    if not ENDPOINT_NAME_PATTERN.match(endpoint_name):
        raise LaunchError(
            f"--endpoint-name {endpoint_name!r}: use lower-case letters, digits and hyphens "
            "(at most 63), as the SAM template's EndpointName parameter requires"
        )
    container_env = model_server_env(model_server_workers, serverless is not None)
    code_dir = stage_code_dir(staging_dir)
    model_name = name_from_base(endpoint_name)
    model = PyTorchModel(
        model_data=model_data,
        role=role,
        entry_point=ENTRY_POINT,
        source_dir=str(code_dir),
        framework_version=framework_version,
        py_version=py_version,
        name=model_name,
        # The SDK repacks model.tar.gz with code/ (our staged dir) and uploads it here.
        code_location=s3_uri(aws.bucket, prefix, "deploy"),
        sagemaker_session=aws.sagemaker_session,
        env=container_env,
    )
    if serverless is None:
        capacity = {"initial_instance_count": 1, "instance_type": instance_type}
        described = f"{instance_type}, 1 instance"
    else:
        capacity = {"serverless_inference_config": serverless.sdk_config()}
        described = serverless.describe()
    model.deploy(
        **capacity,
        endpoint_name=endpoint_name,
        serializer=IdentitySerializer(content_type="image/jpeg"),
        deserializer=JSONDeserializer(),
        wait=wait and not aws.dry_run,
    )
    verb = "would create " if aws.dry_run else ""
    print(f"{verb}model: {model_name}")
    print(f"{verb}endpoint: {endpoint_name} ({described})")
    workers = container_env.get(MODEL_SERVER_WORKERS_ENV, "TorchServe's default, one per vCPU")
    print(f"  model server workers: {workers}")
    if wait and not aws.dry_run:
        status = aws.client("sagemaker").describe_endpoint(EndpointName=endpoint_name)
        print(f"  status: {status['EndpointStatus']}")
    print(f"  SAM parameter: EndpointName={endpoint_name}")
    return endpoint_name


def content_type_of(image: Path) -> str:
    try:
        return CONTENT_TYPES[image.suffix.lower()]
    except KeyError:
        raise LaunchError(
            f"{image.name}: unknown image type; use one of {', '.join(CONTENT_TYPES)}"
        ) from None


def format_predictions(response: dict[str, Any]) -> list[str]:
    """The endpoint's JSON (DESIGN.md: predictions best first, model identity) as lines."""
    if not isinstance(response, dict) or not isinstance(response.get("predictions"), list):
        raise LaunchError(f"the endpoint answered something else than predictions: {response!r}")
    lines = [
        f"  {rank}. {p['breed']:<40} {100 * float(p['probability']):6.2f}%"
        for rank, p in enumerate(response["predictions"], start=1)
    ]
    model = response.get("model") or {}
    if model:
        lines.append(
            f"  model {model.get('name')} version {model.get('version')} "
            f"runtime {model.get('runtime')}"
        )
    return lines


def invoke(aws: Aws, *, endpoint_name: str, image: Path, top_k: int) -> dict[str, Any]:
    """The image through the SDK Predictor, then through a plain boto3 sagemaker-runtime client."""
    from sagemaker.deserializers import JSONDeserializer
    from sagemaker.predictor import Predictor
    from sagemaker.serializers import IdentitySerializer

    if top_k < 1:
        raise LaunchError("--top-k must be at least 1")
    if not image.is_file():
        raise LaunchError(f"{image}: no such image file")
    content_type = content_type_of(image)
    body = image.read_bytes()
    attributes = f"top_k={top_k}"

    predictor = Predictor(
        endpoint_name=endpoint_name,
        sagemaker_session=aws.sagemaker_session,
        serializer=IdentitySerializer(content_type=content_type),
        deserializer=JSONDeserializer(),
    )
    via_sdk = predictor.predict(body, custom_attributes=attributes)

    runtime = aws.client("sagemaker-runtime")
    answer = runtime.invoke_endpoint(
        EndpointName=endpoint_name,
        ContentType=content_type,
        Accept="application/json",
        CustomAttributes=attributes,
        Body=body,
    )
    via_boto3 = json.loads(answer["Body"].read())

    if aws.dry_run:
        return {"sdk": via_sdk, "boto3": via_boto3}
    for label, response in (
        ("SageMaker Predictor", via_sdk),
        ("boto3 sagemaker-runtime", via_boto3),
    ):
        print(f"{label}: {image.name} on {endpoint_name}")
        # Truncate client-side too: the toolkit may not pass CustomAttributes to the handlers.
        shown = {**response, "predictions": response.get("predictions", [])[:top_k]}
        for line in format_predictions(shown):
            print(line)
    return {"sdk": via_sdk, "boto3": via_boto3}


def teardown(aws: Aws, *, endpoint_name: str) -> list[str]:
    """Delete the endpoint, its endpoint config and the config's models; say what went."""
    sm = aws.client("sagemaker")
    desc = sm.describe_endpoint(EndpointName=endpoint_name)
    config_name = desc["EndpointConfigName"]
    config = sm.describe_endpoint_config(EndpointConfigName=config_name)
    models = [v["ModelName"] for v in config.get("ProductionVariants", []) if v.get("ModelName")]
    deleted = []
    sm.delete_endpoint(EndpointName=endpoint_name)
    deleted.append(f"endpoint {endpoint_name}")
    sm.delete_endpoint_config(EndpointConfigName=config_name)
    deleted.append(f"endpoint config {config_name}")
    for model in models:
        sm.delete_model(ModelName=model)
        deleted.append(f"model {model}")
    verb = "would delete" if aws.dry_run else "deleted"
    for item in deleted:
        print(f"{verb} {item}")
    return deleted
