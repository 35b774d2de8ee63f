"""The offline stack: the whole system on loopback, no AWS account, no Docker.

    python -m local up [--model PATH] [--workdir runs/demo]     (what `make local` runs)

``LocalStack`` is also what ``python -m local demo`` and the end-to-end tests start. What runs,
all in this process except the function's sandboxes, follows the template's path
S3 → SQS → event source mapping → Lambda:
- a moto server (S3, DynamoDB, SQS, CloudFormation, Lambda metadata) with two things moto lacks
  added in-process: SQS's message move task (``local.moto_sqs_move``, which the ``classify_ops
  redrive`` command uses) and the ``sequencer`` of S3 event records (``local.moto_s3_events``);
- ``template.yaml`` deployed into it by ``local.deploy_template`` (names, environment, queues,
  limits from the template), with the bucket's versioning and its notification to the upload
  queue applied from the template, since moto's CloudFormation drops both. S3 itself (moto) then
  sends each upload's event to the upload queue; the queue's RedrivePolicy moves a message that
  failed ``maxReceiveCount`` receives to the dead-letter queue;
- the endpoint: ``local.sagemaker_runtime.SageMakerRuntimeServer`` serving the model artifact
  through the SageMaker PyTorch inference toolkit, by as many worker processes as TorchServe
  starts on an ``ml.t2.medium`` (``local.model_container.WorkerPool``: two, each with its share
  of this machine's cores; ``--endpoint-workers`` changes it);
- the event source mapping: ``local.event_source.SqsEventSource`` with the mapping's settings as
  moto holds them (BatchSize, ReportBatchItemFailures, MaximumConcurrency): that many pollers,
  each invoking ``classify_upload.handler.lambda_handler`` (the deployed package, unzipped)
  unchanged in a long-lived worker process (``local.lambda_worker``) and deleting what the
  function does not report failed.
``visibility_timeout_s`` shortens the upload queue's visibility timeout (the template's 1800 s)
so that tests see redeliveries in seconds. Every port is chosen free; ``LocalStack`` is a context
manager that stops everything it started. Without ``--model``, ``up`` serves the workdir's model,
training the small default (``local.tiny``) first if there is none.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import math
import shlex
import shutil
import sys
import tempfile
import time
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from moto.moto_api._internal.models import moto_api_backend
from moto.server import ThreadedMotoServer

from local import moto_s3_events, moto_sqs_move, tiny
from local.deploy_template import QueueInfo, StackInfo, deploy_stack
from local.event_source import MappingConfig, SqsEventSource
from local.function_build import FUNCTION_LOGICAL_ID, BuiltFunction, build_function
from local.lambda_runtime import FunctionConfig, lambda_environment
from local.model_container import ENDPOINT_WORKERS, WorkerPool
from local.sagemaker_runtime import SageMakerRuntimeServer
from local.signals import terminate_on_sigterm, wait_for_interrupt

REPO_ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = REPO_ROOT / "template.yaml"
DEFAULT_CODE_DIR = REPO_ROOT / "lambdas" / "classify_upload"
REGION = "us-east-1"
ENDPOINT_LOG = "endpoint.log"  # in log_dir: the model server workers' output
DUMMY_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": REGION,
}


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
    """What the offline stack needs from ``deploy_template.StackInfo``; ``code_dir`` is the
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
    container (tests). ``endpoint_workers`` is how many requests the endpoint serves at once, by
    that many model server workers (``ENDPOINT_WORKERS`` by default; 1 with a given container).
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
        self.timings: dict[str, float] = {}

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
        container = self._container
        if container is None:
            log_path = None
            if self.log_dir is not None:  # the workers' stdout: TorchServe's MODEL_LOG
                self.log_dir.mkdir(parents=True, exist_ok=True)
                log_path = self.log_dir / ENDPOINT_LOG
            container = WorkerPool(Path(self.model_dir), self.endpoint_workers, log_path=log_path)
            self._exit.callback(container.close)
        self.container = container
        self.endpoint = SageMakerRuntimeServer(
            {self.endpoint_name: container}, host="127.0.0.1", max_workers=self.endpoint_workers
        )
        self.endpoint.start()
        self._exit.callback(self.endpoint.stop)
        self.endpoint_url = self.endpoint.url

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

    # What a user pastes into a shell -------------------------------------------------------

    def cli_lines(self, example_breed: str = "Some_breed") -> list[str]:
        assert self.facts is not None
        cli = aws_cli()
        aws = f"{cli} --endpoint-url {self.moto_url}"
        bucket, table = self.facts.bucket, self.facts.table
        prefix = self.facts.function.environment.get("UPLOAD_PREFIX", "uploads/")
        key = json.dumps({"bucket": {"S": bucket}, "key": {"S": f"{prefix}my_dog.jpg"}})
        breed = json.dumps({":b": {"S": example_breed}})
        low = json.dumps({":c": {"S": "LOW"}})
        names = json.dumps({"#k": "key", "#s": "status"})
        ops = f"{shlex.quote(sys.executable)} -m classify_ops"
        where = f"--stack {self.stack_name} --endpoint-url {self.moto_url}"
        lines = [
            "# credentials: any non-empty value works offline",
            *(f"export {k}={v}" for k, v in DUMMY_CREDENTIALS.items()),
            "",
            "# upload an image: the function classifies it",
            f"{aws} s3 cp my_dog.jpg s3://{bucket}/{prefix}",
            "",
            "# its prediction",
            f"{aws} dynamodb get-item --table-name {table} --key {shlex.quote(key)}",
            "",
            "# every upload predicted as one breed, newest first (GSI, no scan)",
            f"{aws} dynamodb query --table-name {table} --index-name by_breed "
            f"--key-condition-expression 'breed = :b' "
            f"--expression-attribute-values {shlex.quote(breed)} --no-scan-index-forward",
            "",
            "# predictions below the confidence threshold, newest first (GSI, no scan)",
            f"{aws} dynamodb query --table-name {table} --index-name low_confidence "
            f"--key-condition-expression 'confidence = :c' "
            f"--expression-attribute-values {shlex.quote(low)} --no-scan-index-forward",
            "",
            "# everything in the table",
            f"{aws} dynamodb scan --table-name {table} "
            f"--projection-expression '#k, #s, breed, probability' "
            f"--expression-attribute-names {shlex.quote(names)}",
        ]
        if self.facts.dead_letter_queue is not None:
            lines += [
                "",
                "# uploads that failed every delivery (dead-letter queue; looking hides nothing)",
                f"{aws} sqs receive-message --queue-url {self.facts.dead_letter_queue.url} "
                "--max-number-of-messages 10 --visibility-timeout 0",
                "",
                "# once the cause is fixed: move them back to the upload queue",
                f"{ops} redrive {where}",
            ]
        lines += [
            "",
            "# classify every stored upload again (after a model update) and wait for it",
            f"{ops} reprocess {where} --all --wait",
            "",
            "# the endpoint directly (SageMaker runtime API)",
            f"{cli} --endpoint-url {self.endpoint_url} sagemaker-runtime invoke-endpoint "
            f"--endpoint-name {self.endpoint_name} --content-type image/jpeg "
            f"--body fileb://my_dog.jpg /dev/stdout",
        ]
        return lines

    def describe(self) -> str:
        assert self.facts is not None
        facts, f = self.facts, self.facts.function
        return "\n".join(
            [
                f"moto (S3, DynamoDB, SQS, CloudFormation, Lambda): {self.moto_url}",
                f"SageMaker runtime endpoint {self.endpoint_name!r}:  {self.endpoint_url} "
                f"({self.endpoint_workers} model server worker(s))",
                f"stack {self.stack_name}: bucket {facts.bucket}, table {facts.table}",
                f"bucket (from the template; moto's CloudFormation drops both): versioning "
                f"{facts.bucket_versioning or 'off'}, notifications "
                f"{json.dumps(facts.bucket_notifications)}",
                self._describe_queues(),
                f"event source mapping: BatchSize {facts.event_source.batch_size}, batching "
                f"window {facts.event_source.batching_window_s:g} s, ReportBatchItemFailures "
                f"{facts.event_source.report_batch_item_failures}, MaximumConcurrency "
                f"{facts.event_source.maximum_concurrency} (one poller and sandbox each)",
                f"function {f.function_name}: {f.handler}, timeout {f.timeout_s:g} s, "
                f"memory {f.memory_mb} MB",
                f"function code: the deployed package, unzipped in {f.code_dir}; run by {f.python}"
                + (f" ({self.function.note})" if self.function else ""),
                "in the template only (moto does not model them, or their Condition is false): "
                + ", ".join(sorted(set(facts.template_only.values()))),
            ]
        )

    def _describe_queues(self) -> str:
        assert self.facts is not None
        queue, dlq = self.facts.upload_queue, self.facts.dead_letter_queue
        timeout = f"visibility timeout {queue.visibility_timeout_s} s (template)"
        if self.visibility_timeout_s is not None:
            timeout += f", overridden to {self.visibility_timeout_s} s here"
        policy = queue.redrive_policy
        redrive = (
            f"after {policy['maxReceiveCount']} receives to the dead-letter queue {dlq.url}"
            if policy and dlq
            else "no dead-letter queue"
        )
        return f"upload queue {queue.url}: {timeout}; {redrive}"


def aws_cli() -> str:
    """The AWS CLI that ``make install`` put next to this interpreter, else ``aws`` on PATH."""
    bundled = Path(sys.executable).parent / "aws"
    return shlex.quote(str(bundled)) if bundled.is_file() else "aws"


def main(argv: list[str] | None = None) -> int:
    """``python -m local up``: start the stack, print how to use it, run until Ctrl-C/SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m local up", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--model",
        type=Path,
        default=None,
        help="model dir or model.tar.gz (default: WORKDIR's, trained first if missing)",
    )
    parser.add_argument("--workdir", type=Path, default=REPO_ROOT / "runs" / "demo")
    parser.add_argument("--epochs", type=int, default=None, help="when a model must be trained")
    parser.add_argument(
        "--endpoint-workers",
        type=int,
        default=ENDPOINT_WORKERS,
        help="model server workers (default: %(default)s, TorchServe's one per vCPU of an "
        "ml.t2.medium); each gives OpenVINO its share of this machine's cores",
    )
    args = parser.parse_args(argv)
    if args.endpoint_workers < 1:
        parser.error("--endpoint-workers must be at least 1")

    with terminate_on_sigterm():
        try:
            model_dir = tiny.ensure_model(args.workdir, args.model, epochs=args.epochs)
            log_dir = args.workdir / "logs"
            with LocalStack(
                model_dir, log_dir=log_dir, endpoint_workers=args.endpoint_workers
            ) as stack:
                classes = json.loads((model_dir / "classes.json").read_text())
                print(stack.describe())
                print(
                    f"function logs: {log_dir}/sandbox-*.log; endpoint: {log_dir}/{ENDPOINT_LOG}\n"
                )
                print("\n".join(stack.cli_lines(classes[0] if classes else "Some_breed")))
                print("\nRunning. Ctrl-C to stop.", flush=True)
                wait_for_interrupt()
        except KeyboardInterrupt:
            print("\nstopped", file=sys.stderr)
    return 0
