"""The offline stack: the whole system on loopback, no AWS account, no Docker.

    python -m local up [--model PATH] [--workdir runs/demo]     (what `make local` runs)

``main`` is the ``up`` command: it starts ``local.stack.LocalStack`` on a model (without
``--model``, the workdir's, training the small default, ``local.demo.default_model``, first if
there is none), prints what runs where and how to use it, and runs until Ctrl-C/SIGTERM. What a
user reads of a running stack is here: ``describe`` (what runs where, as deployed) and
``cli_lines`` (the commands to paste into a shell), which ``python -m local demo`` prints too.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from local.demo import default_model
from local.endpoint.container import ENDPOINT_WORKERS
from local.signals import terminate_on_sigterm, wait_for_interrupt
from local.stack import (
    DUMMY_CREDENTIALS,
    ENDPOINT_LOG,
    LOCAL_ROLE_ARN,
    REPO_ROOT,
    STACK_LOG,
    LocalStack,
)
from training.launch.aws import DEFAULT_PREFIX


def describe(stack: LocalStack) -> str:
    assert stack.facts is not None
    facts, f = stack.facts, stack.facts.function
    return "\n".join(
        [
            f"moto (S3, DynamoDB, SQS, CloudFormation, Lambda): {stack.moto_url}",
            f"SageMaker runtime endpoint {stack.endpoint_name!r}:  {stack.endpoint_url} "
            f"({stack.endpoint_workers} model server worker(s))",
            f"SageMaker endpoint {stack.endpoint_name!r} in moto: config "
            f"{stack.endpoint_config_name}, model {stack.model_data_url}; an UpdateEndpoint "
            "switches the runtime to the new config's model with no request refused",
            f"stack {stack.stack_name}: bucket {facts.bucket}, table {facts.table}",
            f"bucket (from the template; moto's CloudFormation drops both): versioning "
            f"{facts.bucket_versioning or 'off'}, notifications "
            f"{json.dumps(facts.bucket_notifications)}",
            _describe_queues(stack),
            f"event source mapping: BatchSize {facts.event_source.batch_size}, batching "
            f"window {facts.event_source.batching_window_s:g} s, ReportBatchItemFailures "
            f"{facts.event_source.report_batch_item_failures}, MaximumConcurrency "
            f"{facts.event_source.maximum_concurrency} (one poller and sandbox each)",
            f"function {f.function_name}: {f.handler}, timeout {f.timeout_s:g} s, "
            f"memory {f.memory_mb} MB",
            f"function code: the deployed package, unzipped in {f.code_dir}; run by {f.python}"
            + (f" ({stack.function.note})" if stack.function else ""),
            "in the template only (moto does not model them, or their Condition is false): "
            + ", ".join(sorted(set(facts.template_only.values()))),
        ]
    )


def _describe_queues(stack: LocalStack) -> str:
    assert stack.facts is not None
    queue, dlq = stack.facts.upload_queue, stack.facts.dead_letter_queue
    timeout = f"visibility timeout {queue.visibility_timeout_s} s (template)"
    if stack.visibility_timeout_s is not None:
        timeout += f", overridden to {stack.visibility_timeout_s} s here"
    policy = queue.redrive_policy
    redrive = (
        f"after {policy['maxReceiveCount']} receives to the dead-letter queue {dlq.url}"
        if policy and dlq
        else "no dead-letter queue"
    )
    return f"upload queue {queue.url}: {timeout}; {redrive}"


def cli_lines(stack: LocalStack, example_breed: str = "Some_breed") -> list[str]:
    assert stack.facts is not None
    cli = aws_cli()
    aws = f"{cli} --endpoint-url {stack.moto_url}"
    bucket, table = stack.facts.bucket, stack.facts.table
    prefix = stack.facts.function.environment.get("UPLOAD_PREFIX", "uploads/")
    key = json.dumps({"bucket": {"S": bucket}, "key": {"S": f"{prefix}my_dog.jpg"}})
    breed = json.dumps({":b": {"S": example_breed}})
    low = json.dumps({":c": {"S": "LOW"}})
    names = json.dumps({"#k": "key", "#s": "status"})
    ops = f"{shlex.quote(sys.executable)} -m classify_ops"
    where = f"--stack {stack.stack_name} --endpoint-url {stack.moto_url}"
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
    if stack.facts.dead_letter_queue is not None:
        lines += [
            "",
            "# uploads that failed every delivery (dead-letter queue; looking hides nothing)",
            f"{aws} sqs receive-message --queue-url {stack.facts.dead_letter_queue.url} "
            "--max-number-of-messages 10 --visibility-timeout 0",
            "",
            "# once the cause is fixed: move them back to the upload queue",
            f"{ops} redrive {where}",
        ]
    python = shlex.quote(sys.executable)
    launch = f"AWS_ENDPOINT_URL={stack.moto_url} {python} -m training.launch"
    new_model = f"s3://{stack.model_bucket}/{DEFAULT_PREFIX}/models/my-model/model.tar.gz"
    lines += [
        "",
        "# a new model for the endpoint (a model.tar.gz: model files at its top, code/ too)",
        f"{aws} s3 cp model.tar.gz {new_model}",
        "",
        "# update the endpoint to it: a new model and endpoint config, then UpdateEndpoint;",
        "# uploads keep being classified, by the old model until the new one has taken over",
        f"{launch} deploy --endpoint-name {stack.endpoint_name} --model-data {new_model} "
        f"--role {LOCAL_ROLE_ARN} --bucket {stack.model_bucket}",
        "",
        "# roll the endpoint back to its previous model",
        f"{launch} rollback --endpoint-name {stack.endpoint_name} --bucket {stack.model_bucket}",
        "",
        "# the endpoint's status and config, as SageMaker tells it",
        f"{aws} sagemaker describe-endpoint --endpoint-name {stack.endpoint_name}",
    ]
    lines += [
        "",
        "# classify every stored upload again (after a model update) and wait for it",
        f"{ops} reprocess {where} --all --wait",
        "",
        "# the endpoint directly (SageMaker runtime API)",
        f"{cli} --endpoint-url {stack.endpoint_url} sagemaker-runtime invoke-endpoint "
        f"--endpoint-name {stack.endpoint_name} --content-type image/jpeg "
        f"--body fileb://my_dog.jpg /dev/stdout",
    ]
    return lines


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
            model_dir = default_model.ensure_model(args.workdir, args.model, epochs=args.epochs)
            log_dir = args.workdir / "logs"
            with LocalStack(
                model_dir, log_dir=log_dir, endpoint_workers=args.endpoint_workers
            ) as stack:
                classes = json.loads((model_dir / "classes.json").read_text())
                print(describe(stack))
                print(
                    f"function logs: {log_dir}/sandbox-*.log; endpoint: {log_dir}/{ENDPOINT_LOG}; "
                    f"model updates: {log_dir}/{STACK_LOG}\n"
                )
                print("\n".join(cli_lines(stack, classes[0] if classes else "Some_breed")))
                print("\nRunning. Ctrl-C to stop.", flush=True)
                wait_for_interrupt()
        except KeyboardInterrupt:
            print("\nstopped", file=sys.stderr)
    return 0
