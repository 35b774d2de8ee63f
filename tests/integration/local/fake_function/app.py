"""A stand-in handler for the Lambda runtime tests: behaviour chosen by the event."""

import os
import time
from pathlib import Path


def lambda_handler(event, context):
    mode = event.get("mode")
    if mode == "raise":
        raise RuntimeError(f"boom in {context.aws_request_id}")
    if mode == "sleep":
        time.sleep(event["seconds"])
    if mode == "exit":
        os._exit(3)
    if mode == "flaky":  # fails the first N attempts, then succeeds
        path = event["counter"]
        attempts = int(Path(path).read_text()) if os.path.exists(path) else 0
        with open(path, "w") as f:
            f.write(str(attempts + 1))
        if attempts < event["failures"]:
            raise ConnectionError("transient")
    if mode == "busy":  # records how many invocations overlap
        marker = os.path.join(event["dir"], context.aws_request_id)
        open(marker, "w").close()
        time.sleep(0.3)
        overlapping = len(os.listdir(event["dir"]))
        os.remove(marker)
        return {"overlapping": overlapping}
    return {
        "function_name": context.function_name,
        "arn": context.invoked_function_arn,
        "memory": context.memory_limit_in_mb,
        "remaining_ms": context.get_remaining_time_in_millis(),
        "log_group": context.log_group_name,
        "env": os.environ.get("GREETING"),
        "pid": os.getpid(),
    }
