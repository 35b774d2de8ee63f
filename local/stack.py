"""The offline stack: the whole system on loopback, no AWS account, no Docker.

``LocalStack`` is what ``python -m local up`` (``local.up``), ``python -m local demo`` and the
end-to-end tests start. What runs, all in this process except the function's sandboxes, follows
the template's path S3 → SQS → event source mapping → Lambda:
- a moto server (S3, DynamoDB, SQS, CloudFormation, Lambda metadata) with two things moto lacks
  added in-process: SQS's message move task (``local.aws.moto_sqs_move``, which the ``classify_ops
  redrive`` command uses) and the ``sequencer`` of S3 event records (``local.aws.moto_s3_events``);
- ``template.yaml`` deployed into it by ``local.aws.deploy`` (names, environment, queues,
  limits from the template), with the bucket's versioning and its notification to the upload
  queue applied from the template, since moto's CloudFormation drops both. S3 itself (moto) then
  sends each upload's event to the upload queue; the queue's RedrivePolicy moves a message that
  failed ``maxReceiveCount`` receives to the dead-letter queue;
- the endpoint: ``local.endpoint.runtime.SageMakerRuntimeServer`` serving the model artifact
  through the SageMaker PyTorch inference toolkit, by as many worker processes as TorchServe
  starts on an ``ml.t2.medium`` (``local.endpoint.container.WorkerPool``: two, each with its share
  of this machine's cores; ``--endpoint-workers`` changes it). It is also a SageMaker endpoint
  in moto (``local.aws.moto_sagemaker``'s strict control plane): its model is a ``model.tar.gz`` in
  the bucket ``sagemaker-<region>-<account>``, with a model and an endpoint config as the
  launcher creates them. The stack owns that endpoint's status: an ``UpdateEndpoint`` (the
  launcher's ``deploy`` to it, or its ``rollback``) leaves it ``Updating`` while the stack
  downloads the new config's model, starts workers for it, switches the runtime to them with no
  request refused (``SageMakerRuntimeServer.switch`` / ``drain``) and closes the old ones; then it
  is ``InService`` on the new config. A model that does not load leaves the old one serving and
  the endpoint ``InService`` on its previous config, with the reason as ``FailureReason``;
- the event source mapping: ``local.function.event_source.SqsEventSource`` with the mapping's
  settings as moto holds them (BatchSize, ReportBatchItemFailures, MaximumConcurrency): that many
  pollers, each invoking ``classify_upload.handler.lambda_handler`` (the deployed package,
  unzipped) unchanged in a long-lived worker process (``local.function.worker``) and deleting
  what the function does not report failed.
``visibility_timeout_s`` shortens the upload queue's visibility timeout (the template's 1800 s)
so that tests see redeliveries in seconds. Every port is chosen free; ``LocalStack`` is a context
manager that stops everything it started. ``local.up`` is the ``up`` command, and what it prints
of a running stack (``describe``, ``cli_lines``).
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import logging
import math
import os
import shutil
import sys
import tarfile
import tempfile
import threading
import time
import warnings
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from moto.moto_api._internal.models import moto_api_backend
from moto.server import ThreadedMotoServer

from local.aws import moto_s3_events, moto_sagemaker, moto_sqs_move
from local.aws.deploy import QueueInfo, StackInfo, deploy_stack
from local.demo import default_model
from local.endpoint.container import ENDPOINT_WORKERS, WorkerPool
from local.endpoint.runtime import Container, SageMakerRuntimeServer
from local.function.build import FUNCTION_LOGICAL_ID, BuiltFunction, build_function
from local.function.event_source import MappingConfig, SqsEventSource
from local.function.runtime import FunctionConfig, lambda_environment
from training.launch.aws import DEFAULT_PREFIX, split_s3_uri
from training.launch.endpoint import (
    ENDPOINT_INSTANCE,
    ENTRY_POINT,
    INFERENCE_FRAMEWORK_VERSION,
    INFERENCE_PY_VERSION,
    model_server_env,
)
from training.launch.rollout import TAG_ENDPOINT, TAG_MODEL_DATA, TAG_VERSION, version_from_config

REPO_ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = REPO_ROOT / "template.yaml"
DEFAULT_CODE_DIR = REPO_ROOT / "lambdas" / "classify_upload"
REGION = "us-east-1"
ENDPOINT_LOG = "endpoint.log"  # in log_dir: the model server workers' output
STACK_LOG = "stack.log"  # in log_dir: the stack's own events (endpoint updates)
DUMMY_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": REGION,
}


def offline_environ(**extra: str) -> dict[str, str]:
    """This process's environment as a shell after the lines ``make local`` prints: every ``AWS_``
    variable dropped, the dummy credentials (and ``extra``) in their place."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    return {**env, **DUMMY_CREDENTIALS, **extra}


ACCOUNT_ID = "123456789012"  # moto's account
LOCAL_ROLE_ARN = f"arn:aws:iam::{ACCOUNT_ID}:role/local"  # moto takes any role
VARIANT = "AllTraffic"  # the SDK's variant name
# The public DLC registry's account in us-east-1 (other regions have their own: not served here).
DLC_ACCOUNT = "763104351884"
# How long a switched-out model may take to finish its requests (the function's read timeout is
# far shorter), and a started model to answer its first ping.
DRAIN_TIMEOUT_S = 300.0
PING_TIMEOUT_S = 60.0
ContainerFactory = Callable[[Path], Container]


def inference_image(region: str = REGION) -> str:
    """The PyTorch inference image the launcher's ``deploy`` names (CPU: an ml.t2.medium)."""
    tag = f"{INFERENCE_FRAMEWORK_VERSION}-cpu-{INFERENCE_PY_VERSION}"
    return f"{DLC_ACCOUNT}.dkr.ecr.{region}.amazonaws.com/pytorch-inference:{tag}"


def model_environment(region: str, workers: int) -> dict[str, str]:
    """The model's environment as the launcher's ``deploy`` sets it: the SDK's script-mode
    variables for a repacked ``model.tar.gz``, and the TorchServe worker count."""
    return {
        "SAGEMAKER_PROGRAM": ENTRY_POINT,
        "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code",
        "SAGEMAKER_CONTAINER_LOG_LEVEL": "20",
        "SAGEMAKER_REGION": region,
        **model_server_env(workers, serverless=False),
    }


def model_tarball(model_dir: Path | None, tar_path: Path) -> Path:
    """``model_dir``'s files at the top of a ``model.tar.gz`` (an extracted artifact packs back
    as it came: model files, ``code/``); an empty one for no model dir (a stand-in container)."""
    # Stored, not deflated (still gzip): the weights hardly compress (217 MB against 201 MB for
    # the small default model) and deflating them took 10 s of every start, this 0.6 s.
    with tarfile.open(tar_path, "w:gz", compresslevel=0) as tar:
        for path in sorted(Path(model_dir).iterdir()) if model_dir is not None else []:
            tar.add(path, arcname=path.name)
    return tar_path


def unique_name(base: str, now: datetime | None = None) -> str:
    """``base-YYYY-MM-DD-HH-MM-SS-mmm``, as the SDK's ``name_from_base`` names models and
    configs (at most 63 characters)."""
    stamp = (now or datetime.now(UTC)).strftime("%Y-%m-%d-%H-%M-%S-%f")[:-3]
    return f"{base[: 63 - len(stamp) - 1]}-{stamp}"


@dataclass(frozen=True)
class EndpointUpdate:
    """One change of the endpoint's model, as the stack carried it out (``LocalStack.updates``).

    ``time_to_switch_s``: from the change (``CreateEndpoint`` / ``UpdateEndpoint``) to new
    requests going to the new model (download, extract, workers loaded); ``drain_s``: from then
    until the old model had finished its last request. Both None when the model did not load.
    """

    kind: str  # "create" or "update" (moto_sagemaker.EndpointChange.kind)
    config_name: str
    previous_config_name: str | None
    model_data_url: str
    ok: bool
    reason: str | None
    changed_at: datetime  # UTC
    switched_at: datetime | None  # UTC: new requests went to the new model from then on
    time_to_switch_s: float | None
    drain_s: float | None
    in_flight_at_switch: int = 0  # requests the old model still held when the switch returned


@dataclass
class StackFacts:
    """What the deployed stack says, read back from moto (not from a second description)."""

    stack_name: str
    bucket: str
    table: str
    function: FunctionConfig
    upload_queue: QueueInfo  # as deployed: its attributes are the template's
    dead_letter_queue: QueueInfo | None
    event_source: MappingConfig
    bucket_versioning: dict[str, Any] = field(default_factory=dict)
    bucket_notifications: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    parameters: dict[str, str] = field(default_factory=dict)
    # In the template, not in moto's stack: types moto does not model (alarms, bucket and queue
    # policies ...) and resources whose Condition is false.
    template_only: dict[str, str] = field(default_factory=dict)


def _session(region: str = REGION) -> boto3.session.Session:
    return boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=region
    )


def stack_facts(
    info: StackInfo, code_dir: Path = DEFAULT_CODE_DIR, python: str = sys.executable
) -> StackFacts:
    """What the offline stack needs from ``local.aws.deploy.StackInfo``; ``code_dir`` is the
    function's unpacked code, ``python`` the interpreter that runs it."""
    config = info.function_configuration
    function = FunctionConfig(
        function_name=info.function_name,
        function_arn=info.function_arn,
        handler=config["Handler"],
        code_dir=code_dir,
        environment=dict(info.environment),
        timeout_s=float(config.get("Timeout", 3)),
        memory_mb=int(config.get("MemorySize", 128)),
        python=python,
    )
    return StackFacts(
        stack_name=info.stack_name,
        bucket=info.bucket_name,
        table=info.table_name,
        function=function,
        upload_queue=info.upload_queue,
        dead_letter_queue=info.dead_letter_queue,
        event_source=MappingConfig.from_mapping(info.event_source_mapping, info.upload_queue.url),
        bucket_versioning=dict(info.bucket_versioning),
        bucket_notifications=dict(info.bucket_notifications),
        outputs=dict(info.outputs),
        parameters=dict(info.parameters),
        template_only={
            logical: resource["Type"]
            for logical, resource in info.translated_template.get("Resources", {}).items()
            if logical not in info.resources
        },
    )


class LocalStack:
    """Start everything on ``__enter__`` (or ``start()``), stop it all on ``__exit__``.

    ``model_dir`` is an extracted model artifact. ``parameters`` override the template's
    (``EndpointName`` is always the local endpoint's name). ``container`` replaces the model
    container (tests; the caller closes it), ``container_factory`` makes the container for a
    model an update brings (the extracted ``model.tar.gz``; the stack closes what it makes), by
    default a ``WorkerPool``. ``endpoint_workers`` is how many requests the endpoint serves at
    once, by that many model server workers (``ENDPOINT_WORKERS`` by default; 1 with a given
    container). Each model update is logged and kept in ``updates`` (``EndpointUpdate``).
    ``visibility_timeout_s`` replaces the upload queue's visibility timeout
    after deployment (SQS takes whole seconds: it is rounded up), so that a failed message comes
    back in seconds rather than the template's half hour.
    """

    def __init__(
        self,
        model_dir: Path | None,
        *,
        endpoint_name: str = "dog-breeds-local",
        stack_name: str = "dog-breeds-local",
        parameters: Mapping[str, str] | None = None,
        template: Path = TEMPLATE,
        endpoint_workers: int | None = None,
        visibility_timeout_s: float | None = None,
        log_dir: Path | None = None,
        container: Any = None,
        container_factory: ContainerFactory | None = None,
        region: str = REGION,
        function: BuiltFunction | None = None,
    ) -> None:
        self.model_dir = model_dir
        self.endpoint_name = endpoint_name
        self.stack_name = stack_name
        self.parameters = dict(parameters or {})
        self.template = template
        if endpoint_workers is None:  # a given container is one worker unless the caller says
            endpoint_workers = ENDPOINT_WORKERS if container is None else 1
        self.endpoint_workers = endpoint_workers
        self.visibility_timeout_s = (
            None if visibility_timeout_s is None else math.ceil(visibility_timeout_s)
        )
        self.log_dir = log_dir
        self.region = region
        self._container = container
        self.function = function  # sam build's output on python3.12 (built on start if None)
        self._exit = contextlib.ExitStack()
        self.session = _session(region)
        self.moto_url = ""
        self.endpoint_url = ""
        self.endpoint: Any = None  # the SageMakerRuntimeServer (fault injection in tests)
        self.facts: StackFacts | None = None
        self.event_source: SqsEventSource | None = None
        self.container: Any = None  # the endpoint's model container (a WorkerPool by default)
        self.container_factory = container_factory
        self.timings: dict[str, float] = {}
        # The endpoint as a SageMaker resource in moto, and its model updates.
        self.model_bucket = f"sagemaker-{region}-{ACCOUNT_ID}"
        self.model_data_url = ""  # the first model's, in model_bucket
        self.endpoint_config_name = ""  # the first config's
        self.updates: list[EndpointUpdate] = []
        self._work: Path | None = None  # this run's scratch folder (extracted models)
        self._s3: Any = None  # for update threads (a client is thread-safe, a session is not)
        self._owned: dict[int, tuple[Any, Path | None]] = {}  # containers the stack closes
        self._owned_lock = threading.Lock()
        self._update_threads: list[threading.Thread] = []
        self._changes = itertools.count()  # numbers each change's model folder
        self._stopping = threading.Event()

    def __enter__(self) -> LocalStack:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def client(self, service: str) -> Any:
        """A boto3 client of this stack's moto server (path-style S3, as on loopback)."""
        config = Config(s3={"addressing_style": "path"}, retries={"mode": "standard"})
        return self.session.client(service, endpoint_url=self.moto_url, config=config)

    def table(self) -> Any:
        """The predictions table as a boto3 resource (numbers come back as Decimal)."""
        assert self.facts is not None
        dynamodb = self.session.resource("dynamodb", endpoint_url=self.moto_url)
        return dynamodb.Table(self.facts.table)

    def start(self) -> None:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _timed(self, stage: str, started: float) -> None:
        self.timings[stage] = round(time.perf_counter() - started, 3)

    def _start(self) -> None:
        # In dependency order: the function's environment needs both URLs and the deployed
        # configuration; the event source needs the queue and the function. Each step
        # registers its own stop.
        for name, step in [
            ("moto", self._start_moto),
            ("endpoint", self._start_endpoint),
            ("sagemaker", self._register_endpoint),
            ("build", self._build_function),
            ("deploy", self._deploy),
            ("queue", self._override_visibility_timeout),
            ("event_source", self._start_event_source),
        ]:
            t = time.perf_counter()
            step()
            self._timed(name, t)

    def _start_moto(self) -> None:
        # werkzeug logs every request moto serves; the function's logs are what matter here.
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        moto.start()
        self._exit.callback(moto.stop)
        moto_sqs_move.install()  # StartMessageMoveTask & co., for `classify_ops redrive`
        self._exit.callback(moto_sqs_move.uninstall)
        moto_s3_events.install()  # S3 event records carry a sequencer and versionId, as on AWS
        self._exit.callback(moto_s3_events.uninstall)
        host, port = moto.get_host_and_port()
        self.moto_url = f"http://{host}:{port}"
        # moto's backends live in this process: leave none of our state behind for the next user.
        self._exit.callback(self._reset_moto)

    def _start_endpoint(self) -> None:
        self._work = Path(tempfile.mkdtemp(prefix="local-stack-"))
        self._exit.callback(shutil.rmtree, self._work, ignore_errors=True)
        # After the server stops (registered first, runs last): whatever model serves by then.
        self._exit.callback(self._close_owned)
        container = self._container
        if container is None:
            container = WorkerPool(
                Path(self.model_dir), self.endpoint_workers, log_path=self._endpoint_log()
            )
            self._own(container, None)
        self.container = container
        self.endpoint = SageMakerRuntimeServer(
            {self.endpoint_name: container}, host="127.0.0.1", max_workers=self.endpoint_workers
        )
        self.endpoint.start()
        self._exit.callback(self.endpoint.stop)
        self.endpoint_url = self.endpoint.url

    def _endpoint_log(self) -> Path | None:
        """The workers' stdout (TorchServe's MODEL_LOG), in ``log_dir`` if there is one."""
        if self.log_dir is None:
            return None
        self.log_dir.mkdir(parents=True, exist_ok=True)
        return self.log_dir / ENDPOINT_LOG

    # The endpoint as SageMaker knows it ---------------------------------------------------

    def _register_endpoint(self) -> None:
        """The served model as a SageMaker endpoint in moto (model.tar.gz, model, config,
        endpoint, as the launcher's ``deploy`` makes them), whose changes the stack carries out."""
        moto_sagemaker.install()
        self._exit.callback(moto_sagemaker.uninstall)
        self._s3 = self.client("s3")
        self._s3.create_bucket(Bucket=self.model_bucket)
        assert self._work is not None
        tar_path = model_tarball(self.model_dir, self._work / "model.tar.gz")
        key = f"{DEFAULT_PREFIX}/local/{self.endpoint_name}/model.tar.gz"
        self._s3.upload_file(str(tar_path), self.model_bucket, key)
        tar_path.unlink()
        self.model_data_url = f"s3://{self.model_bucket}/{key}"
        self.endpoint_config_name = create_model_and_config(
            self.client("sagemaker"),
            self.endpoint_name,
            self.model_data_url,
            model_environment(self.region, self.endpoint_workers),
            self.region,
            version=_model_version(self.model_dir),
        )
        # Created unwatched, so InService at once: the container above already serves it.
        self.client("sagemaker").create_endpoint(
            EndpointName=self.endpoint_name, EndpointConfigName=self.endpoint_config_name
        )
        unwatch = moto_sagemaker.watch(self.endpoint_name, self._on_endpoint_change)
        self._exit.callback(self._stop_updates, unwatch)

    def _on_endpoint_change(self, change: moto_sagemaker.EndpointChange) -> None:
        """moto's request thread: the work goes to a thread of its own."""
        thread = threading.Thread(
            target=self._apply_change, args=(change,), name="endpoint-update", daemon=True
        )
        self._update_threads.append(thread)
        thread.start()

    def _apply_change(self, change: moto_sagemaker.EndpointChange) -> None:
        """Load the new config's model beside the serving one, switch, drain, close the old;
        then the endpoint is InService on the new config. If the model does not load, the old
        one keeps serving and the change fails with the reason."""
        changed_at, started = datetime.now(UTC), time.perf_counter()
        url = change.model_data_urls[0] if change.model_data_urls else ""
        new, model_dir = None, None
        try:
            model_dir = self._fetch_model(url, next(self._changes))
            new = self._new_container(model_dir)
            _wait_for_ping(new, PING_TIMEOUT_S)
            if self._stopping.is_set():
                raise RuntimeError("the offline stack is stopping")
        except Exception as exc:
            if new is not None and hasattr(new, "close"):
                new.close()
            if model_dir is not None:
                shutil.rmtree(model_dir, ignore_errors=True)
            reason = f"the model {url} did not load: {_one_line(exc)}"
            self.updates.append(_update(change, url, changed_at, reason=reason))
            self._log(f"{change.kind} to {change.endpoint_config_name} failed: {reason}")
            self._complete(change, ok=False, reason=reason)
            return
        self._own(new, model_dir)
        old = self.endpoint.switch(self.endpoint_name, new)
        self.container = new
        switched_at, switched = datetime.now(UTC), time.perf_counter()
        in_flight = self.endpoint.in_flight(old)
        drained = self.endpoint.drain(old, DRAIN_TIMEOUT_S)
        drain_s = time.perf_counter() - switched
        if not drained:
            self._log(f"the old model still answered after {drain_s:.0f} s: closing it anyway")
        self._close(old)
        update = _update(
            change,
            url,
            changed_at,
            switched_at=switched_at,
            time_to_switch_s=round(switched - started, 3),
            drain_s=round(drain_s, 3),
            in_flight_at_switch=in_flight,
        )
        self.updates.append(update)
        self._log(
            f"{change.kind} to {change.endpoint_config_name} ({url}): switched "
            f"{update.time_to_switch_s:.1f} s after the change, old model drained of its "
            f"{in_flight} request(s) in flight in {update.drain_s:.2f} s"
        )
        self._complete(change, ok=True)

    def _fetch_model(self, url: str, n: int) -> Path:
        """``url`` (s3://, in this stack's moto) downloaded and extracted into a folder of its
        own (``tarfile``'s data filter: no path outside it, no links out, no devices)."""
        bucket, key = split_s3_uri(url)
        assert self._work is not None
        models = self._work / "models"
        models.mkdir(exist_ok=True)
        tar_path = models / f"{n:03d}.tar.gz"
        try:
            self._s3.download_file(bucket, key, str(tar_path))
            return default_model.extract(tar_path, models / f"{n:03d}")
        finally:
            tar_path.unlink(missing_ok=True)

    def _new_container(self, model_dir: Path) -> Any:
        if self.container_factory is not None:
            return self.container_factory(model_dir)
        return WorkerPool(model_dir, self.endpoint_workers, log_path=self._endpoint_log())

    def _complete(
        self, change: moto_sagemaker.EndpointChange, ok: bool, reason: str | None = None
    ) -> None:
        # LookupError: moto was reset (the stack is stopping), nothing is pending any more.
        with contextlib.suppress(LookupError):
            moto_sagemaker.complete(
                change.endpoint_name,
                ok,
                reason,
                region=change.region,
                account_id=change.account_id,
            )

    def _log(self, line: str) -> None:
        """One line on stderr and in ``log_dir``'s stack log."""
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        print(f"endpoint {self.endpoint_name}: {line}", file=sys.stderr, flush=True)
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            with open(self.log_dir / STACK_LOG, "a") as log:
                log.write(f"{stamp} endpoint {self.endpoint_name}: {line}\n")

    def _own(self, container: Any, model_dir: Path | None) -> None:
        with self._owned_lock:
            self._owned[id(container)] = (container, model_dir)

    def _close(self, container: Any) -> None:
        """Close ``container`` and remove its model files if the stack made it."""
        with self._owned_lock:
            owned = self._owned.pop(id(container), None)
        if owned is None:
            return  # the caller's (``container=``): the caller closes it
        owned[0].close()
        if owned[1] is not None:
            shutil.rmtree(owned[1], ignore_errors=True)

    def _close_owned(self) -> None:
        with self._owned_lock:
            containers = [container for container, _ in self._owned.values()]
        for container in containers:
            self._close(container)

    def _stop_updates(self, unwatch: Callable[[], None]) -> None:
        """No new change is taken; one under way finishes (or gives up before switching)."""
        unwatch()
        self._stopping.set()
        for thread in self._update_threads:
            thread.join(timeout=60)

    def _deploy(self) -> None:
        parameters = {**self.parameters, "EndpointName": self.endpoint_name}
        # moto says, per resource, which types it does not model; describe() lists them once.
        moto_logger = logging.getLogger("moto")
        level = moto_logger.level
        moto_logger.setLevel(logging.ERROR)
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Tried to parse", category=UserWarning)
                warnings.filterwarnings("ignore", message="No Moto CloudFormation support")
                info = deploy_stack(
                    self.session,
                    self.template,
                    self.stack_name,
                    parameters,
                    endpoint_url=self.moto_url,
                    packages=self._packages(),
                )
        finally:
            moto_logger.setLevel(level)
        assert self.function is not None
        self.facts = stack_facts(info, self._unpack_code(info), self.function.python)

    def _build_function(self) -> None:
        """The function as `sam build` packs it, for python3.12 (cached), or the fallback."""
        if self.function is None:
            self.function = build_function()
        if not self.function.built:
            print(f"lambda: {self.function.note}", file=sys.stderr)

    def _packages(self) -> dict[str, Path]:
        assert self.function is not None
        if self.function.package is None:
            return {}
        return {FUNCTION_LOGICAL_ID: self.function.package}

    def _override_visibility_timeout(self) -> None:
        """Tests need redeliveries in seconds; the deployed value stays in ``facts``."""
        assert self.facts is not None
        if self.visibility_timeout_s is None:
            return
        self.client("sqs").set_queue_attributes(
            QueueUrl=self.facts.upload_queue.url,
            Attributes={"VisibilityTimeout": str(self.visibility_timeout_s)},
        )

    def _start_event_source(self) -> None:
        """The queue's event source mapping, invoking the function's sandboxes, with every AWS
        client in them pointed at this stack."""
        assert self.facts is not None
        config = self.facts.function
        env = lambda_environment(
            config,
            {
                "AWS_ENDPOINT_URL_S3": self.moto_url,
                "AWS_ENDPOINT_URL_DYNAMODB": self.moto_url,
                "AWS_ENDPOINT_URL_SQS": self.moto_url,
                "AWS_ENDPOINT_URL_CLOUDWATCH": self.moto_url,
                "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": self.endpoint_url,
            },
            self.region,
        )
        self.event_source = SqsEventSource(
            self.facts.event_source,
            config,
            env,
            lambda: self.client("sqs"),
            log_dir=self.log_dir,
        )
        self.event_source.start()
        self._exit.callback(self.event_source.close)

    def _unpack_code(self, info: StackInfo) -> Path:
        """The deployment package the stack points at, unzipped as Lambda does into /var/task:
        the function runs what was deployed, so a module missing from the package fails here."""
        resource = info.translated_template["Resources"].get(
            next(k for k, v in info.resources.items() if v == info.function_name), {}
        )
        code = resource.get("Properties", {}).get("Code", {})
        if not isinstance(code, dict) or "S3Key" not in code:
            return DEFAULT_CODE_DIR
        body = self.client("s3").get_object(Bucket=code["S3Bucket"], Key=code["S3Key"])["Body"]
        task_root = Path(tempfile.mkdtemp(prefix="lambda-task-"))
        self._exit.callback(shutil.rmtree, task_root, ignore_errors=True)
        with zipfile.ZipFile(io.BytesIO(body.read())) as package:
            package.extractall(task_root)
        return task_root

    @staticmethod
    def _reset_moto() -> None:
        moto_api_backend.reset()

    def stop(self) -> None:
        exit_stack, self._exit = self._exit, contextlib.ExitStack()
        exit_stack.close()

    def wait_idle(self, timeout: float) -> bool:
        """True once the upload queue is empty (nothing visible or in flight) and no batch is
        being processed. A message that failed waits out its visibility timeout first."""
        assert self.event_source is not None
        return self.event_source.wait_idle(timeout)

    def dead_letters(self, max_messages: int = 10000) -> list[Any]:
        """Read (and remove) the dead-letter queue's message bodies, JSON-decoded where they are
        JSON (an S3 event, as S3 sent it)."""
        assert self.facts is not None and self.facts.dead_letter_queue is not None
        sqs, url, bodies = self.client("sqs"), self.facts.dead_letter_queue.url, []
        while len(bodies) < max_messages:
            messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
            if not messages:
                break
            for message in messages:
                try:
                    bodies.append(json.loads(message["Body"]))
                except ValueError:
                    bodies.append(message["Body"])
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        return bodies


def create_model_and_config(
    sagemaker: Any,
    base_name: str,
    model_data_url: str,
    environment: Mapping[str, str],
    region: str = REGION,
    version: str | None = None,
) -> str:
    """CreateModel and CreateEndpointConfig as the launcher's ``deploy`` sends them (the PyTorch
    inference image, one ``ENDPOINT_INSTANCE`` of variant ``AllTraffic``, the launcher's tags
    with the model's ``version`` if known), under new names; returns the config's name."""
    name = unique_name(base_name)
    tags = [
        {"Key": TAG_ENDPOINT, "Value": base_name},
        {"Key": TAG_MODEL_DATA, "Value": model_data_url},
        *([{"Key": TAG_VERSION, "Value": version}] if version else []),
    ]
    sagemaker.create_model(
        ModelName=name,
        ExecutionRoleArn=LOCAL_ROLE_ARN,
        PrimaryContainer={
            "Image": inference_image(region),
            "ModelDataUrl": model_data_url,
            "Environment": dict(environment),
        },
        Tags=tags,
    )
    sagemaker.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {
                "VariantName": VARIANT,
                "ModelName": name,
                "InitialInstanceCount": 1,
                "InstanceType": ENDPOINT_INSTANCE,
            }
        ],
        Tags=tags,
    )
    return name


def _model_version(model_dir: Path | None) -> str | None:
    """The artifact's version from its config.json, as the launcher reads it (None: none)."""
    config = Path(model_dir) / "config.json" if model_dir is not None else None
    if config is None or not config.is_file():
        return None
    return version_from_config(json.loads(config.read_text()))


def _update(
    change: moto_sagemaker.EndpointChange,
    url: str,
    changed_at: datetime,
    *,
    reason: str | None = None,
    switched_at: datetime | None = None,
    time_to_switch_s: float | None = None,
    drain_s: float | None = None,
    in_flight_at_switch: int = 0,
) -> EndpointUpdate:
    """The record of ``change``: switched (``switched_at`` given) or failed with ``reason``."""
    return EndpointUpdate(
        kind=change.kind,
        config_name=change.endpoint_config_name,
        previous_config_name=change.previous_config_name,
        model_data_url=url,
        ok=switched_at is not None,
        reason=reason,
        changed_at=changed_at,
        switched_at=switched_at,
        time_to_switch_s=time_to_switch_s,
        drain_s=drain_s,
        in_flight_at_switch=in_flight_at_switch,
    )


def _wait_for_ping(container: Any, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not container.ping():
        if time.monotonic() > deadline:
            raise RuntimeError(f"the new model did not answer ping within {timeout_s:.0f} s")
        time.sleep(0.1)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 500 else text[:497] + "..."
