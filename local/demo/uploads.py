"""Uploads and what became of them: the user's side of the offline stack (demo and e2e tests).

``Upload`` is one object to put in the bucket with what we expect of it; ``upload_all`` puts them
through the S3 API; ``wait_for_items`` reads the predictions table until every upload has its
item (or time runs out); ``summarize`` turns that into the demo's numbers.
"""

from __future__ import annotations

import io
import sys
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")


@dataclass(frozen=True)
class Upload:
    key: str
    body: bytes
    true_class: str | None = None  # for good test images: the folder's class name
    expect: str = "PREDICTED"  # or "FAILED"


def class_name(folder_name: str) -> str:
    """``001.Affenpinscher`` → ``Affenpinscher``: the dataset contract, from training/."""
    from dog_breeds.data.folders import class_name as _class_name

    return _class_name(folder_name)


def uploads_from_test_split(
    data_dir: Path, prefix: str = "uploads/", per_class: int | None = None
) -> list[Upload]:
    """One upload per image of ``data_dir/test``, keyed ``PREFIX<class folder>/<file>``."""
    uploads = []
    for folder in sorted(p for p in (data_dir / "test").iterdir() if p.is_dir()):
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        for path in files[:per_class]:
            key = f"{prefix}{folder.name}/{path.name}"
            uploads.append(Upload(key, path.read_bytes(), class_name(folder.name)))
    return uploads


def bad_uploads(good: Upload, prefix: str = "uploads/") -> list[Upload]:
    """What users drop in buckets: nothing, not an image, half an image, an awkward key."""
    return [
        Upload(f"{prefix}bad/zero-bytes.jpg", b"", expect="FAILED"),
        Upload(f"{prefix}bad/not-an-image.jpg", b"a text file, not a dog\n" * 20, expect="FAILED"),
        Upload(f"{prefix}bad/truncated.jpg", good.body[: len(good.body) // 2], expect="FAILED"),
        # Spaces, '+', parentheses and non-ASCII: S3 URL-encodes the key in the event.
        Upload(f"{prefix}mon chien café (1)+copie.jpg", good.body, good.true_class),
    ]


def synthetic_images(count: int, size: int = 64, seed: int = 0) -> list[bytes]:
    """Small distinct JPEGs (for load tests: what they show does not matter)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    images = []
    for _ in range(count):
        pixels = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=80)
        images.append(buffer.getvalue())
    return images


def upload_all(s3: Any, bucket: str, uploads: Iterable[Upload], workers: int = 8) -> int:
    """PutObject every upload concurrently, as many users would; returns how many."""
    uploads = list(uploads)

    def put(upload: Upload) -> None:
        s3.put_object(Bucket=bucket, Key=upload.key, Body=upload.body)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(put, uploads))
    return len(uploads)


def read_items(table: Any, bucket: str) -> dict[str, dict[str, Any]]:
    """Every item of one bucket (the table's partition key), by object key."""
    from boto3.dynamodb.conditions import Key

    items: dict[str, dict[str, Any]] = {}
    kwargs: dict[str, Any] = {"KeyConditionExpression": Key("bucket").eq(bucket)}
    while True:
        page = table.query(**kwargs)
        for item in page["Items"]:
            items[item["key"]] = item
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def wait_for_items(
    table: Any,
    bucket: str,
    keys: Iterable[str],
    timeout_s: float,
    progress: Callable[[int, int, dict[str, dict[str, Any]]], None] | None = None,
    settled: Callable[[], bool] | None = None,
) -> dict[str, dict[str, Any]]:
    """Poll the table until every key has an item; returns what is there at the end.

    ``settled()`` (optional) says nothing is left in flight: then waiting longer cannot help.
    """
    wanted = set(keys)
    deadline = time.monotonic() + timeout_s
    while True:
        items = read_items(table, bucket)
        done = len(wanted & items.keys())
        if progress:
            progress(done, len(wanted), items)
        if done == len(wanted) or time.monotonic() > deadline:
            return items
        if settled is not None and settled():
            # One more read: an item may have landed between the read and the check.
            items = read_items(table, bucket)
            if progress:
                progress(len(wanted & items.keys()), len(wanted), items)
            return items
        time.sleep(poll_interval(len(wanted)))


def poll_interval(keys: int) -> float:
    """Seconds between reads of the table: each read returns every item of the bucket, which
    moto serialises in the same process that serves the function's own requests, so a thousand
    keys are read every 2 s rather than four times a second."""
    return min(2.0, 0.25 + keys / 500)


def progress_printer(label: str, stream: Any = sys.stdout) -> Callable[..., None]:
    """A progress callback: a redrawn line on a terminal, a line per change in logs."""
    state = {"last": None, "at": 0.0}
    tty = stream.isatty()

    def show(done: int, total: int, items: dict[str, dict[str, Any]]) -> None:
        statuses = [str(i.get("status")) for i in items.values()]
        line = (
            f"{label}: {done}/{total} items "
            f"(PREDICTED {statuses.count('PREDICTED')}, FAILED {statuses.count('FAILED')})"
        )
        now = time.monotonic()
        if line == state["last"] and not tty:
            return
        if not tty and done < total and now - state["at"] < 1.0:
            return
        state["last"], state["at"] = line, now
        if tty:
            stream.write("\r" + line + ("\n" if done == total else ""))
        else:
            stream.write(line + "\n")
        stream.flush()

    return show


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, (Decimal, int, float)) else None


def summarize(uploads: list[Upload], items: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Counts and accuracy: what became of every upload."""
    rows, correct, scored, unexpected = [], 0, 0, []
    for upload in uploads:
        item = items.get(upload.key)
        status = item.get("status") if item else "LOST"
        row = {
            "key": upload.key,
            "status": status,
            "breed": item.get("breed") if item else None,
            "probability": _float(item.get("probability")) if item else None,
            "true_class": upload.true_class,
            "error_type": item.get("error_type") if item else None,
        }
        rows.append(row)
        if status != upload.expect:
            unexpected.append(upload.key)
        if upload.true_class and status == "PREDICTED":
            scored += 1
            correct += row["breed"] == upload.true_class
    statuses = [r["status"] for r in rows]
    good = [u for u in uploads if u.true_class]
    return {
        "uploaded": len(uploads),
        "items": len([u for u in uploads if u.key in items]),
        "predicted": statuses.count("PREDICTED"),
        "failed": statuses.count("FAILED"),
        "lost": statuses.count("LOST"),
        "unexpected_status": unexpected,
        "accuracy": round(correct / len(good), 4) if good else None,
        "accuracy_scored": scored,
        "rows": rows,
    }


def format_table(rows: list[dict[str, Any]], width: int = 60) -> str:
    """The results as a fixed-width table (key, status, breed, probability, truth)."""

    def clip(text: str, n: int) -> str:
        return text if len(text) <= n else "…" + text[-(n - 1) :]

    header = f"{'key':<{width}} {'status':<9} {'breed':<22} {'prob':>6}  {'true class':<20}"
    lines = [header, "-" * len(header)]
    for r in rows:
        prob = f"{r['probability']:.3f}" if r["probability"] is not None else ""
        breed = r["breed"] or (r["error_type"] or "")
        mark = ""
        if r["true_class"] and r["breed"]:
            mark = " ✓" if r["breed"] == r["true_class"] else " ✗"
        lines.append(
            f"{clip(r['key'], width):<{width}} {r['status']:<9} {clip(breed, 22):<22} "
            f"{prob:>6}  {(r['true_class'] or '-'):<20}{mark}"
        )
    return "\n".join(lines)
