"""The offline stack: the whole system on loopback, no AWS account, no Docker.

    python -m local up [--model PATH] [--workdir runs/demo]     (what `make local` runs)

``LocalStack`` is also what ``python -m local demo`` and the end-to-end tests start. What runs,
all in this process except the function's sandboxes:
- a moto server (S3, DynamoDB, SQS, CloudFormation, Lambda metadata) with ``template.yaml``
  deployed into it by ``local.deploy_template`` (names, environment, limits from the template);
- the endpoint: ``local.sagemaker_runtime.SageMakerRuntimeServer`` serving the model artifact
  through the SageMaker PyTorch inference toolkit (``local.model_container.ToolkitContainer``);
- the trigger: the bucket notifies an SQS queue with the template's filter and
  ``local.trigger.S3EventPump`` hands each event to ``local.lambda_runtime.AsyncInvoker``, which
  runs ``classify_upload.handler.lambda_handler`` (from ``lambdas/classify_upload``) unchanged in
  ReservedConcurrentExecutions long-lived worker processes (``local.lambda_worker``), with
  Lambda's async retries and on-failure destination.
Every port is chosen free; ``LocalStack`` is a context manager that stops everything it started.
Without ``--model``, ``up`` serves the workdir's model, training the small default
(``local.tiny``) first if there is none.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
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

from local import tiny
from local.deploy_template import deploy_stack
from local.lambda_runtime import (
    DEFAULT_RETRY_DELAYS_S,
    AsyncInvoker,
    FunctionConfig,
    lambda_environment,
)
from local.model_container import ToolkitContainer
from local.sagemaker_runtime import SageMakerRuntimeServer
from local.signals import terminate_on_sigterm, wait_for_interrupt
from local.trigger import S3EventPump, function_triggers, notify_queue

REPO_ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = REPO_ROOT / "template.yaml"
DEFAULT_CODE_DIR = REPO_ROOT / "lambdas" / "classify_upload"
REGION = "us-east-1"
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
    failure_queue_url: str | None
    triggers: list[dict[str, Any]]
    outputs: dict[str, str] = field(default_factory=dict)
    parameters: dict[str, str] = field(default_factory=dict)
    # In the template but not modelled by moto (alarms, bucket policy, EventInvokeConfig ...).
    template_only: dict[str, str] = field(default_factory=dict)


def _session(region: str = REGION) -> boto3.session.Session:
    return boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=region
    )


def stack_facts(
    info: Any, parameters: Mapping[str, str], code_dir: Path = DEFAULT_CODE_DIR
) -> StackFacts:
    """What the offline stack needs from ``deploy_template.StackInfo``.

    ``parameters``: the values passed to the deployment; the template's defaults fill the rest
    (the trigger's filter refers to them). ``code_dir``: the function's unpacked code.
    """
    template = info.translated_template
    values = {
        name: str(spec["Default"])
        for name, spec in template.get("Parameters", {}).items()
        if "Default" in spec
    }
    values.update({k: str(v) for k, v in parameters.items()})
    config = info.function_configuration
    invoke = info.event_invoke_config
    bucket_logical = next((k for k, v in info.resources.items() if v == info.bucket_name), None)
    function = FunctionConfig(
        function_name=info.function_name,
        function_arn=info.function_arn,
        handler=config["Handler"],
        code_dir=code_dir,
        environment=dict(info.environment),
        timeout_s=float(config.get("Timeout", 3)),
        memory_mb=int(config.get("MemorySize", 128)),
        # No reserved concurrency would mean "the account's limit": one machine's few workers.
        reserved_concurrency=int(info.reserved_concurrency or 4),
        max_retry_attempts=int(invoke.get("MaximumRetryAttempts", 2)),
        max_event_age_s=float(invoke.get("MaximumEventAgeInSeconds", 21600)),
        on_failure_queue_url=info.failure_queue_url,
    )
    return StackFacts(
        stack_name=info.stack_name,
        bucket=info.bucket_name,
        table=info.table_name,
        function=function,
        failure_queue_url=info.failure_queue_url,
        triggers=function_triggers(template, bucket_logical, values),
        outputs=dict(info.outputs),
        parameters=values,
        template_only={
            logical: resource["Type"]
            for logical, resource in template.get("Resources", {}).items()
            if logical not in info.resources
        },
    )


class LocalStack:
    """Start everything on ``__enter__`` (or ``start()``), stop it all on ``__exit__``.

    ``model_dir`` is an extracted model artifact. ``parameters`` override the template's
    (``EndpointName`` is always the local endpoint's name). ``containers`` replaces the model
    container (tests); ``retry_delays_s`` are the async retry delays (Lambda: minutes).
    """

    def __init__(
        self,
        model_dir: Path | None,
        *,
        endpoint_name: str = "dog-breeds-local",
        stack_name: str = "dog-breeds-local",
        parameters: Mapping[str, str] | None = None,
        template: Path = TEMPLATE,
        endpoint_workers: int = 1,
        retry_delays_s: tuple[float, ...] = DEFAULT_RETRY_DELAYS_S,
        log_dir: Path | None = None,
        container: Any = None,
        region: str = REGION,
    ) -> None:
        self.model_dir = model_dir
        self.endpoint_name = endpoint_name
        self.stack_name = stack_name
        self.parameters = dict(parameters or {})
        self.template = template
        self.endpoint_workers = endpoint_workers
        self.retry_delays_s = retry_delays_s
        self.log_dir = log_dir
        self.region = region
        self._container = container
        self._exit = contextlib.ExitStack()
        self.session = _session(region)
        self.moto_url = ""
        self.endpoint_url = ""
        self.endpoint: Any = None  # the SageMakerRuntimeServer (fault injection in tests)
        self.facts: StackFacts | None = None
        self.invoker: AsyncInvoker | None = None
        self.pump: S3EventPump | None = None
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
        # configuration; the trigger needs the function. Each step registers its own stop.
        for name, step in [
            ("moto", self._start_moto),
            ("endpoint", self._start_endpoint),
            ("deploy", self._deploy),
            ("function", self._start_function),
            ("trigger", self._start_trigger),
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
        host, port = moto.get_host_and_port()
        self.moto_url = f"http://{host}:{port}"
        # moto's backends live in this process: leave none of our state behind for the next user.
        self._exit.callback(self._reset_moto)

    def _start_endpoint(self) -> None:
        container = self._container
        if container is None:
            container = ToolkitContainer(Path(self.model_dir))
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
                info = deploy_stack(
                    self.session,
                    self.template,
                    self.stack_name,
                    parameters,
                    endpoint_url=self.moto_url,
                )
        finally:
            moto_logger.setLevel(level)
        self.facts = stack_facts(info, parameters, self._unpack_code(info))

    def _start_function(self) -> None:
        """The function's sandboxes, with every AWS client in them pointed at this stack."""
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
        self.invoker = AsyncInvoker(
            config,
            env,
            self._send_to_failure_destination,
            retry_delays_s=self.retry_delays_s,
            log_dir=self.log_dir,
        )
        self.invoker.start()
        self._exit.callback(self.invoker.close)

    def _start_trigger(self) -> None:
        """The bucket's notifications into an SQS queue, pumped into the function."""
        assert self.facts is not None and self.invoker is not None
        sqs = self.client("sqs")
        queue_url = notify_queue(
            self.client("s3"),
            sqs,
            self.facts.bucket,
            f"{self.stack_name}-s3-events",
            self.facts.triggers,
        )
        self.pump = S3EventPump(sqs, queue_url, self.invoker.invoke_async)
        self.pump.start()
        self._exit.callback(self.pump.stop)

    def _unpack_code(self, info: Any) -> Path:
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

    def _send_to_failure_destination(self, record: dict[str, Any]) -> None:
        url = self.facts.failure_queue_url if self.facts else None
        if url is None:  # no destination configured: Lambda discards the event
            print("lambda: event discarded (no on-failure destination)", file=sys.stderr)
            return
        self.client("sqs").send_message(QueueUrl=url, MessageBody=json.dumps(record))

    @staticmethod
    def _reset_moto() -> None:
        moto_api_backend.reset()

    def stop(self) -> None:
        exit_stack, self._exit = self._exit, contextlib.ExitStack()
        exit_stack.close()

    def wait_idle(self, timeout: float) -> bool:
        """True once the notification queue is empty and the function has nothing in flight."""
        assert self.pump is not None and self.invoker is not None
        deadline = time.monotonic() + timeout
        quiet_since = None
        while time.monotonic() < deadline:
            idle = self.invoker.pending() == 0 and self._notifications_waiting() == 0
            if idle:
                quiet_since = quiet_since or time.monotonic()
                if time.monotonic() - quiet_since > 0.3:
                    return True
            else:
                quiet_since = None
            time.sleep(0.1)
        return False

    def _notifications_waiting(self) -> int:
        sqs = self.client("sqs")
        url = sqs.get_queue_url(QueueName=f"{self.stack_name}-s3-events")["QueueUrl"]
        attrs = sqs.get_queue_attributes(
            QueueUrl=url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]) + int(
            attrs["ApproximateNumberOfMessagesNotVisible"]
        )

    def failure_records(self, max_messages: int = 1000) -> list[dict[str, Any]]:
        """Read (and remove) every record in the stack's failure queue."""
        assert self.facts is not None and self.facts.failure_queue_url
        sqs, url, records = self.client("sqs"), self.facts.failure_queue_url, []
        while len(records) < max_messages:
            messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
            if not messages:
                break
            for message in messages:
                records.append(json.loads(message["Body"]))
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        return records

    # What a user pastes into a shell -------------------------------------------------------

    def cli_lines(self, example_breed: str = "Some_breed") -> list[str]:
        assert self.facts is not None
        cli = aws_cli()
        aws = f"{cli} --endpoint-url {self.moto_url}"
        bucket, table = self.facts.bucket, self.facts.table
        prefix = self.facts.function.environment.get("UPLOAD_PREFIX", "uploads/")
        key = json.dumps({"bucket": {"S": bucket}, "key": {"S": f"{prefix}my_dog.jpg"}})
        breed = json.dumps({":b": {"S": example_breed}})
        names = json.dumps({"#k": "key", "#s": "status"})
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
            "# everything in the table",
            f"{aws} dynamodb scan --table-name {table} "
            f"--projection-expression '#k, #s, breed, probability' "
            f"--expression-attribute-names {shlex.quote(names)}",
        ]
        if self.facts.failure_queue_url:
            lines += [
                "",
                "# events that failed after Lambda's retries (on-failure destination)",
                f"{aws} sqs receive-message --queue-url {self.facts.failure_queue_url}",
            ]
        lines += [
            "",
            "# the endpoint directly (SageMaker runtime API)",
            f"{cli} --endpoint-url {self.endpoint_url} sagemaker-runtime invoke-endpoint "
            f"--endpoint-name {self.endpoint_name} --content-type image/jpeg "
            f"--body fileb://my_dog.jpg /dev/stdout",
        ]
        return lines

    def describe(self) -> str:
        assert self.facts is not None
        f = self.facts.function
        return "\n".join(
            [
                f"moto (S3, DynamoDB, SQS, CloudFormation, Lambda): {self.moto_url}",
                f"SageMaker runtime endpoint {self.endpoint_name!r}:  {self.endpoint_url}",
                f"stack {self.stack_name}: bucket {self.facts.bucket}, table {self.facts.table}",
                f"function {f.function_name}: {f.handler}, timeout {f.timeout_s:g} s, "
                f"concurrency {f.reserved_concurrency}, async retries {f.max_retry_attempts}, "
                f"failure queue {self.facts.failure_queue_url}",
                f"function code: the deployed package, unzipped in {f.code_dir}",
                f"trigger: {json.dumps(self.facts.triggers)}",
                "template only (moto does not model them; the local runtime honours "
                "EventInvokeConfig): " + ", ".join(sorted(set(self.facts.template_only.values()))),
            ]
        )


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
    args = parser.parse_args(argv)

    with terminate_on_sigterm():
        try:
            model_dir = tiny.ensure_model(args.workdir, args.model, epochs=args.epochs)
            log_dir = args.workdir / "logs"
            with LocalStack(model_dir, log_dir=log_dir) as stack:
                classes = json.loads((model_dir / "classes.json").read_text())
                print(stack.describe())
                print(f"function logs: {log_dir}/sandbox-*.log\n")
                print("\n".join(stack.cli_lines(classes[0] if classes else "Some_breed")))
                print("\nRunning. Ctrl-C to stop.", flush=True)
                wait_for_interrupt()
        except KeyboardInterrupt:
            print("\nstopped", file=sys.stderr)
    return 0
