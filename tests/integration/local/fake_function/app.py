"""A stand-in handler for the local Lambda runtime and event source tests.

Invoked directly (the sandbox tests), the event's ``mode`` chooses what it does. Invoked by the
SQS event source, each record's body (JSON) does: ``{"mode": ..., "tag": ...}``. Every record it
sees is appended as one JSON line to ``$FAKE_STATE_DIR/seen.jsonl`` (tag, message id, receive
count, request id, sandbox pid), so tests count deliveries from outside the sandbox.
"""

import json
import os
import time
from pathlib import Path


def lambda_handler(event, context):
    if "Records" in event:
        return handle_batch(event, context)
    return handle_direct(event, context)


def handle_direct(event, context):
    mode = event.get("mode")
    if mode == "raise":
        raise RuntimeError(f"boom in {context.aws_request_id}")
    if mode == "sleep":
        time.sleep(event["seconds"])
    if mode == "exit":
        os._exit(3)
    if mode == "allocate":  # hold this many MB for a moment (peak memory)
        block = bytearray(event["mb"] * 1024 * 1024)
        block[::4096] = b"x" * len(block[::4096])
        return {"allocated_mb": len(block) // (1024 * 1024)}
    return {
        "function_name": context.function_name,
        "arn": context.invoked_function_arn,
        "memory": context.memory_limit_in_mb,
        "remaining_ms": context.get_remaining_time_in_millis(),
        "log_group": context.log_group_name,
        "env": os.environ.get("GREETING"),
        "pid": os.getpid(),
    }


def handle_batch(event, context):
    state = Path(os.environ["FAKE_STATE_DIR"])
    failures, response = [], None
    for record in event["Records"]:
        body = json.loads(record["body"])
        receive_count = int(record["attributes"]["ApproximateReceiveCount"])
        _note(state, record, body, receive_count, context)
        mode = body.get("mode", "ok")
        first = receive_count == 1
        if mode == "echo":
            (state / f"event-{context.aws_request_id}.json").write_text(json.dumps(event))
        elif mode == "fail" or (mode == "fail_first" and first):
            failures.append({"itemIdentifier": record["messageId"]})
        elif mode == "raise" or (mode == "raise_first" and first):
            raise RuntimeError(f"boom on {body.get('tag')}")
        elif mode == "crash" or (mode == "crash_first" and first):
            os._exit(3)
        elif mode == "sleep":
            time.sleep(body["seconds"])
        elif mode == "malformed_first" and first:
            response = body["response"]
        elif mode == "report_all":  # reports every record failed (ignored without the setting)
            failures.append({"itemIdentifier": record["messageId"]})
        elif mode == "busy":
            _overlap(state, body, context)
        elif mode == "rendezvous":
            _rendezvous(state, body, context)
    if response is not None:
        return response
    return {"batchItemFailures": failures}


def _note(state, record, body, receive_count, context):
    line = {
        "tag": body.get("tag"),
        "message_id": record["messageId"],
        "receive_count": receive_count,
        "request_id": context.aws_request_id,
        "pid": os.getpid(),
    }
    with open(state / "seen.jsonl", "a") as seen:
        seen.write(json.dumps(line) + "\n")


def _overlap(state, body, context):
    """Records how many invocations run at once (one marker file each while it runs)."""
    running = state / "running"
    running.mkdir(exist_ok=True)
    marker = running / context.aws_request_id
    marker.touch()
    time.sleep(body.get("seconds", 0.2))
    overlapping = len(list(running.iterdir()))
    marker.unlink()
    with open(state / "overlap.jsonl", "a") as out:
        out.write(json.dumps({"overlapping": overlapping}) + "\n")


def _rendezvous(state, body, context):
    """Waits (up to 30 s) until ``body["parties"]`` invocations have arrived here."""
    arrived = state / "arrived"
    arrived.mkdir(exist_ok=True)
    (arrived / context.aws_request_id).touch()
    deadline = time.monotonic() + 30
    while len(list(arrived.iterdir())) < body["parties"] and time.monotonic() < deadline:
        time.sleep(0.02)
    with open(state / "rendezvous.jsonl", "a") as out:
        out.write(json.dumps({"met": len(list(arrived.iterdir())) >= body["parties"]}) + "\n")
