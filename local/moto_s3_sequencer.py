"""The ``sequencer`` S3 puts in every object event record, for the in-process moto server.

S3 gives each ObjectCreated/ObjectRemoved record ``s3.object.sequencer``, a hex string that grows
with the writes to one key; the function keeps the newest result of a key by it (newest wins).
moto 5.2.5 builds the records without one (``moto.s3.notifications._get_s3_event``), so
``install()`` wraps that function to add an increasing upper-case hex value, the width S3's
values have. It is stamped when moto builds the notification, which moto does right after it
stores the object, inside the PutObject request: for one key the order is the order of writes
that do not overlap. Nothing else in the record changes, and a record that already has a
sequencer keeps it.

``install()`` is idempotent and must run in the process that serves moto (``ThreadedMotoServer``
serves from the process that starts it); ``local.stack.LocalStack`` calls it when it starts moto.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from typing import Any

from moto.s3 import notifications

_lock = threading.Lock()
_install_lock = threading.Lock()
_last = 0
_MARK = "_adds_sequencer"


def next_sequencer() -> str:
    """A value greater than every one handed out before (nanosecond clock, forced upwards)."""
    global _last
    with _lock:
        _last = max(_last + 1, time.time_ns())
        return f"{_last:018X}"


def with_sequencer(event: dict[str, Any]) -> dict[str, Any]:
    """The event with a fresh sequencer in each object record that has none."""
    for record in event.get("Records", []):
        obj = record.get("s3", {}).get("object")
        if obj is not None and "sequencer" not in obj:
            obj["sequencer"] = next_sequencer()
    return event


def install() -> None:
    """Make moto's S3 notifications carry sequencers (once per process)."""
    with _install_lock:
        build: Callable[..., dict[str, Any]] = notifications._get_s3_event
        if getattr(build, _MARK, False):
            return

        @functools.wraps(build)
        def build_with_sequencer(*args: Any, **kwargs: Any) -> dict[str, Any]:
            return with_sequencer(build(*args, **kwargs))

        setattr(build_with_sequencer, _MARK, True)
        notifications._get_s3_event = build_with_sequencer
