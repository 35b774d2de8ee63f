"""``sam package`` on this machine: each local ``CodeUri`` zipped into an artifacts bucket.

The packaged template points at the upload instead of the folder.
"""

from __future__ import annotations

import copy
import hashlib
import io
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ARTIFACTS_BUCKET = "sam-artifacts-local"
# Never packed: caches and build leftovers inside a CodeUri.
EXCLUDED_PARTS = {"__pycache__", ".pytest_cache", ".aws-sam"}


def zip_code(code_dir: Path) -> bytes:
    """A deterministic zip of a CodeUri directory, as ``sam package`` uploads it."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(code_dir.rglob("*")):
            relative = path.relative_to(code_dir)
            if path.is_dir() or EXCLUDED_PARTS & set(relative.parts) or path.suffix == ".pyc":
                continue
            info = zipfile.ZipInfo(relative.as_posix(), date_time=(2020, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())
    return buffer.getvalue()


def package_code(
    template: dict[str, Any],
    base_dir: Path,
    s3: Any,
    bucket: str = ARTIFACTS_BUCKET,
    packages: Mapping[str, Path] | None = None,
) -> dict[str, Any]:
    """Replace each function's local ``CodeUri`` with an S3 location holding its zip.

    ``packages``: logical id -> a zip to upload instead of zipping ``CodeUri`` (what ``sam build``
    made of it, see ``local.function.build``).
    """
    packages = dict(packages or {})
    packaged = copy.deepcopy(template)
    functions = [
        r
        for r in packaged.get("Resources", {}).values()
        if r.get("Type") == "AWS::Serverless::Function"
    ]
    code_uris = [f.get("Properties", {}).get("CodeUri") for f in functions]
    if not any(isinstance(uri, str) and not uri.startswith("s3://") for uri in code_uris):
        return packaged
    try:
        s3.head_bucket(Bucket=bucket)
    except Exception:
        s3.create_bucket(Bucket=bucket)
    for logical_id, function in packaged.get("Resources", {}).items():
        if function.get("Type") != "AWS::Serverless::Function":
            continue
        properties = function.setdefault("Properties", {})
        uri = properties.get("CodeUri")
        if not isinstance(uri, str) or uri.startswith("s3://"):
            continue
        if logical_id in packages:
            body = packages[logical_id].read_bytes()
        else:
            body = zip_code((base_dir / uri).resolve())
        key = f"{hashlib.sha256(body).hexdigest()}.zip"
        s3.put_object(Bucket=bucket, Key=key, Body=body)
        properties["CodeUri"] = {"Bucket": bucket, "Key": key}
    return packaged
