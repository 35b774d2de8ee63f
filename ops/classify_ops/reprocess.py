"""``reprocess``: classify stored uploads again, after a model update.

Selects table items (``selection``), sends one reprocess request per item to the upload queue
(``messages``; ten per ``SendMessageBatch``), and with ``--wait`` follows them to the table
(``completion``), ending with what changed: the items' model versions before and after, how
many kept their breed, and the most frequent changes of breed. The function does the work,
through the same queue, concurrency limit and dead-letter queue as new uploads.

Each run has an id (``rp-YYYYMMDDTHHMMSSZ`` unless given). The function stamps it on every item
it classifies again, and a run skips items that already carry its id: after an interruption the
same command with ``--run-id`` sends only what is left (requests sent but not yet processed are
sent again; classifying an object twice writes the same result twice, nothing worse).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

from classify_ops.completion import Outcome, wait_for_run
from classify_ops.errors import Interrupted, OpsError
from classify_ops.messages import batch_entries, chunks, is_done, new_run_id
from classify_ops.progress import Progress
from classify_ops.selection import Selection, select_items
from classify_ops.stack import Connection, read_stack

SEND_ATTEMPTS = 5  # for entries SQS reports failed on its side (SenderFault false)


@dataclass(frozen=True)
class ReprocessOptions:
    selection: Selection
    run_id: str | None = None
    wait: bool = False
    idle_timeout_s: float = 600.0
    poll_interval_s: float = 10.0
    # The exact command that resumes this run, given its id (the command line builds it).
    resume_command: Callable[[str], str] | None = None


def run(
    connection: Connection, stack_name: str, options: ReprocessOptions, out: TextIO | None = None
) -> int:
    """Select, send, and with ``wait`` follow; 1 when waiting ended with items not done."""
    out = out or sys.stdout
    stack = read_stack(connection, stack_name)
    stack.require("PredictionsTableName", "UploadBucketName", "UploadQueueUrl")
    table, bucket, queue_url = (
        stack["PredictionsTableName"],
        stack["UploadBucketName"],
        stack["UploadQueueUrl"],
    )
    run_id = options.run_id or new_run_id()
    resume = options.resume_command(run_id) if options.resume_command else f"--run-id {run_id}"
    print(f"reprocess run {run_id}: {options.selection.describe()} of table {table}", file=out)
    print(f"to resume it if interrupted: {resume}", file=out, flush=True)

    dynamodb = connection.client("dynamodb")
    try:
        selected = list(select_items(dynamodb, options.selection, table, bucket))
    except KeyboardInterrupt:
        raise Interrupted(
            f"interrupted while selecting items; nothing was sent ({run_id})"
        ) from None
    todo = [item for item in selected if not is_done(item, run_id)]
    skipped = len(selected) - len(todo)
    if not selected:
        print(f"nothing to reprocess: no item matches {options.selection.describe()}", file=out)
        return 0
    print(
        f"selected {len(selected)} items, {skipped} already done in this run: sending {len(todo)}",
        file=out,
        flush=True,
    )

    send_all(connection.client("sqs"), queue_url, todo, run_id, resume, out)
    if not options.wait:
        print(
            f"reprocess {run_id}: sent {len(todo)} of {len(selected)} selected "
            f"({skipped} already done); the function classifies them from the queue",
            file=out,
        )
        return 0
    try:
        outcome = wait_for_run(
            dynamodb,
            table,
            selected,
            run_id,
            idle_timeout_s=options.idle_timeout_s,
            poll_interval_s=options.poll_interval_s,
            out=out,
        )
    except KeyboardInterrupt:
        raise Interrupted(
            f"stopped waiting; every request was sent and the function keeps working ({run_id})"
        ) from None
    print(summary(run_id, outcome, resume), file=out)
    if outcome.done:
        print("\n".join(outcome.changes.report()), file=out)
    return 1 if outcome.remaining else 0


def send_all(
    sqs: Any, queue_url: str, items: list[dict[str, Any]], run_id: str, resume: str, out: TextIO
) -> None:
    """Ten requests per call, "sent N/M" as it goes; Ctrl-C says how far it got."""
    progress = Progress("sent", len(items), out)
    sent = 0
    try:
        for batch in chunks(items):
            send_batch(sqs, queue_url, batch, run_id)
            sent += len(batch)
            progress.update(sent)
    except KeyboardInterrupt:
        progress.close_line()
        raise Interrupted(
            f"interrupted after sending {sent}/{len(items)}; resume with: {resume}"
        ) from None
    progress.finish()


def send_batch(sqs: Any, queue_url: str, items: list[dict[str, Any]], run_id: str) -> None:
    """One ``SendMessageBatch``; entries SQS failed on its side are sent again, with backoff.

    An entry refused as the sender's fault (too large, malformed) cannot succeed later: stop.
    """
    entries = batch_entries(items, run_id)
    for attempt in range(SEND_ATTEMPTS):
        failed = sqs.send_message_batch(QueueUrl=queue_url, Entries=entries).get("Failed", [])
        if not failed:
            return
        refused = next((f for f in failed if f.get("SenderFault")), None)
        if refused:
            raise OpsError(
                f"SQS refused a reprocess request ({refused.get('Code')}): {refused.get('Message')}"
            )
        again = {f["Id"] for f in failed}
        entries = [e for e in entries if e["Id"] in again]
        time.sleep(min(0.2 * 2**attempt, 5.0))
    raise OpsError(f"SQS kept failing {len(entries)} reprocess requests; run the command again")


def summary(run_id: str, outcome: Outcome, resume: str) -> str:
    """The final line of ``--wait``: what was classified again, what no longer needed it, and
    what is still not done, with the likely reason."""
    line = f"reprocess {run_id}: {outcome.done}/{outcome.total} classified again"
    if outcome.superseded:
        line += (
            f", {outcome.superseded} superseded "
            "(a newer upload replaced the item, or it was deleted)"
        )
    if outcome.remaining:
        line += (
            f", {len(outcome.remaining)} not done after {outcome.idle_s:.0f} s without progress: "
            "they may have been overwritten or deleted in S3 (the function skips an object that is "
            "no longer that version), or are still being retried (see the dead-letter queue); "
            f"to send them again: {resume}"
        )
    return line
