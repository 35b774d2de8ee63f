"""What S3 puts in every object event record and moto leaves out, for the in-process moto server.

S3 gives each ObjectCreated/ObjectRemoved record ``s3.object.sequencer``, a hex string that grows
with the writes to one key (the function keeps the newest result of a key by it), and, in a
versioned bucket, ``s3.object.versionId`` (the function reads that version, and a reprocess
checks it is still the current one). moto 5.2.5 builds the records with neither
(``moto.s3.notifications._get_s3_event``), so ``install()`` wraps that function to add the
object's version id and an increasing upper-case hex sequencer, the width S3's values have.
The sequencer is stamped when moto builds the notification, which moto does right after it
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


def with_sequencer(event: dict[str, Any], version_id: str | None = None) -> dict[str, Any]:
    """The event with a fresh sequencer in each object record that has none, and the object's
    version id where the bucket is versioned."""
    for record in event.get("Records", []):
        obj = record.get("s3", {}).get("object")
        if obj is None:
            continue
        if "sequencer" not in obj:
            obj["sequencer"] = next_sequencer()
        if version_id and "versionId" not in obj:
            obj["versionId"] = version_id
    return event


def _version_of(bucket: Any, key: Any) -> str | None:
    """The object's version id as S3's event gives it: only for a versioned bucket."""
    if getattr(bucket, "is_versioned", False):
        version = getattr(key, "version_id", None)
        return version if version and version != "null" else None
    return None


_installs = 0
_original: Callable[..., dict[str, Any]] | None = None


def install() -> None:
    """Make moto's S3 notifications carry sequencers and version ids in this process. Installs are
    counted: each is undone by one ``uninstall``, and moto's own builder returns with the last."""
    global _installs, _original
    with _install_lock:
        _installs += 1
        if _installs > 1:
            return
        build: Callable[..., dict[str, Any]] = notifications._get_s3_event
        _original = build

        @functools.wraps(build)
        def build_with_sequencer(
            event_name: str, bucket: Any, key: Any, *args: Any, **kwargs: Any
        ) -> dict[str, Any]:
            event = build(event_name, bucket, key, *args, **kwargs)
            return with_sequencer(event, _version_of(bucket, key))

        setattr(build_with_sequencer, _MARK, True)
        notifications._get_s3_event = build_with_sequencer


def uninstall() -> None:
    """Undo one ``install``; the last one puts moto's own event builder back."""
    global _installs, _original
    with _install_lock:
        if _installs == 0:
            return
        _installs -= 1
        if _installs == 0 and _original is not None:
            notifications._get_s3_event = _original
            _original = None
