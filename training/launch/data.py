"""Stage 1: the dataset (a dogImages-layout folder, or the dogImages zip) to S3."""

from __future__ import annotations

import tempfile
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from training.launch.aws import Aws, LaunchError, s3_uri

SPLITS = ("train", "valid", "test")


def dataset_root(folder: Path) -> Path:
    """The folder holding train/ valid/ test/: ``folder`` itself or one level down (dogImages/)."""
    candidates = [folder, *sorted(p for p in folder.iterdir() if p.is_dir())]
    for candidate in candidates:
        if all((candidate / split).is_dir() for split in SPLITS):
            return candidate
    raise LaunchError(f"{folder} has no train/ valid/ test/ folders (the dogImages layout)")


def upload_dataset(aws: Aws, source: Path, destination: str, workers: int = 8) -> str:
    """Upload every file of the dataset under ``destination`` (s3://bucket/prefix); return it."""
    if not source.exists():
        raise LaunchError(f"{source}: no such file or folder")
    if source.is_file():
        if not zipfile.is_zipfile(source):
            raise LaunchError(f"{source} is neither a folder nor a zip file")
        with tempfile.TemporaryDirectory(prefix="dogImages-") as tmp:
            with zipfile.ZipFile(source) as archive:
                archive.extractall(tmp)
            return _upload_folder(aws, dataset_root(Path(tmp)), destination, workers)
    return _upload_folder(aws, dataset_root(source), destination, workers)


def _upload_folder(aws: Aws, root: Path, destination: str, workers: int) -> str:
    files = [
        p
        for split in SPLITS
        for p in sorted((root / split).rglob("*"))
        if p.is_file() and not p.name.startswith(".")
    ]
    if not files:
        raise LaunchError(f"{root} holds no files under {', '.join(SPLITS)}")
    bucket, _, prefix = destination[len("s3://") :].partition("/")
    s3 = aws.client("s3")

    def upload(path: Path) -> int:
        key = f"{prefix.rstrip('/')}/{path.relative_to(root).as_posix()}".lstrip("/")
        s3.upload_file(str(path), bucket, key)
        return path.stat().st_size

    # One worker in a dry run keeps the printed requests in file order.
    with ThreadPoolExecutor(max_workers=1 if aws.dry_run else workers) as pool:
        total = sum(pool.map(upload, files))
    verb = "would upload" if aws.dry_run else "uploaded"
    print(f"{verb} {len(files)} files ({total / 1e6:.1f} MB) from {root} to {destination}")
    print(f"  classes: {len([p for p in (root / 'train').iterdir() if p.is_dir()])}")
    print(f"  tune/train read it with --data {destination}")
    return destination


def default_data_uri(bucket: str, prefix: str) -> str:
    return s3_uri(bucket, prefix, "dogImages")
