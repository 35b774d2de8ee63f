"""Compare a candidate model with the live one, through the endpoint's own serving code.

Both artifacts (an S3 URI, a local ``model.tar.gz`` or a model dir) are extracted to a temporary
folder and loaded one at a time with this repository's ``training/container/endpoint_inference.py``,
imported by file path as the SageMaker PyTorch toolkit imports its entry point: ``model_fn`` once,
then ``input_fn -> predict_fn -> output_fn`` for each image, the top-1 breed read from the JSON
answer. A ``code/`` folder inside an artifact is not run: both models go through identical code,
so what differs is the model.

Sources (``SourceResult``), scored by both models:
    test split    ``data``: a folder or S3 URI in the dogImages layout, its
                  ``test/NNN.Breed_name/*.jpg``; the label is the folder name without its prefix
    table sample  ``table``: the newest ``sample`` PREDICTED items of the predictions table
                  (DESIGN.md's table item: bucket, key, version_id, predicted_at), each object
                  read from S3; there are no labels, so agreement only
Per source: ``n`` (images both models answered), ``skipped`` (refused by the endpoint's code, or
gone from S3; each with its reason), the accuracy of each model (labelled sources only),
``agreement`` (the share of the n with the same top-1 breed), ``changed`` (how many would change
breed) and ``changes`` (``old breed -> new breed: count``, most first). Breeds are compared by
name, so models with different class lists can still be compared (a note says they differ).

The gate, for ``deploy``: ``add_gate_arguments(parser)`` and ``gate(args, aws, candidate, live)``,
which refuses (``LaunchError``, exit code 2) a candidate whose test accuracy is more than
``--max-accuracy-drop`` points below the live model's, unless ``--force``.

Everything here only reads AWS (Describe*, HeadObject, GetObject, ListObjectsV2, Scan), so a dry
run compares too.
"""

from __future__ import annotations

import argparse
import gc
import heapq
import importlib.util
import json
import tarfile
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from botocore.exceptions import ClientError

from dog_breeds import contract
from dog_breeds.artifact import serving_code
from training.launch.aws import Aws, LaunchError, split_s3_uri

DEFAULT_SAMPLE = 50
DEFAULT_MAX_ACCURACY_DROP = 1.0  # percentage points of test accuracy
TEST_SPLIT, TABLE_SAMPLE = "test split", "table sample"
# Any image: the endpoint's decoder goes by the bytes, not by the content type.
CONTENT_TYPE = "application/x-image"
ACCEPT = contract.JSON_CONTENT_TYPE
HANDLERS = ("model_fn", "input_fn", "predict_fn", "output_fn")
STATUS_PREDICTED = "PREDICTED"  # the table item's status (classify_upload.table)
CHANGES_SHOWN = 5
# The table's key and the fields a sample needs; "bucket", "key" and "status" are reserved words.
_ITEM_FIELDS = ("bucket", "key", "version_id", "status", "predicted_at", "breed")


# ---------------------------------------------------------------------------- what comes out
@dataclass(frozen=True)
class Sample:
    """One image both models score: ``id`` says where it came from, ``path`` holds its bytes."""

    id: str
    path: Path
    label: str | None = None  # the true breed, where the source has labels


@dataclass
class ModelScores:
    """One model's answers: its identity (the response's ``model``), classes, top-1 breeds."""

    source: str
    classes: list[str]
    identity: dict[str, Any] = field(default_factory=dict)
    breeds: dict[str, str] = field(default_factory=dict)  # sample id -> top-1 breed
    refused: dict[str, str] = field(default_factory=dict)  # sample id -> the endpoint's message


@dataclass(frozen=True)
class Change:
    old: str  # the live model's breed
    new: str  # the candidate's
    count: int


@dataclass(frozen=True)
class SourceResult:
    """The two models on one source; accuracies only where the source has labels."""

    source: str
    where: str
    n: int
    skipped: int
    live_accuracy: float | None
    candidate_accuracy: float | None
    agreement: float | None
    changed: int
    changes: list[Change]
    fixed: int | None = None  # labelled: the candidate right where the live model was wrong
    broken: int | None = None  # labelled: the candidate wrong where the live model was right
    skipped_items: dict[str, str] = field(default_factory=dict)  # sample id -> why


@dataclass(frozen=True)
class ModelInfo:
    source: str
    name: str | None
    version: str | None
    runtime: str | None
    classes: int

    def describe(self) -> str:
        return f"{self.name} {self.version} ({self.runtime}, {self.classes} classes)"


@dataclass(frozen=True)
class Comparison:
    candidate: ModelInfo
    live: ModelInfo
    sources: list[SourceResult]
    notes: list[str] = field(default_factory=list)

    def labelled_source(self) -> SourceResult | None:
        """The test split, if it was scored (the one source with labels)."""
        return next((s for s in self.sources if s.live_accuracy is not None), None)

    def accuracy_drop_points(self) -> float | None:
        """How many percentage points of test accuracy the candidate loses (negative: gains)."""
        split = self.labelled_source()
        if split is None or split.candidate_accuracy is None or split.live_accuracy is None:
            return None
        return round(100 * (split.live_accuracy - split.candidate_accuracy), 6)

    def to_json(self) -> dict[str, Any]:
        sources = []
        for result in self.sources:
            entry = asdict(result)
            entry["changes"] = [asdict(c) for c in result.changes]
            sources.append(entry)
        return {
            "candidate": asdict(self.candidate),
            "live": asdict(self.live),
            "sources": sources,
            "accuracy_drop_points": self.accuracy_drop_points(),
            "notes": list(self.notes),
        }


# ---------------------------------------------------------------------------- pure core
def summarize(
    source: str,
    where: str,
    samples: list[Sample],
    live: ModelScores,
    candidate: ModelScores,
    skipped: dict[str, str] | None = None,
) -> SourceResult:
    """The two models' answers on ``samples`` as one row; what either refused is skipped."""
    skipped = dict(skipped or {})
    for scores in (live, candidate):
        for sample in samples:
            if sample.id in scores.refused:
                skipped.setdefault(sample.id, scores.refused[sample.id])
    scored = [s for s in samples if s.id not in skipped]
    pairs = [(live.breeds[s.id], candidate.breeds[s.id], s.label) for s in scored]
    moved = Counter((old, new) for old, new, _ in pairs if old != new)
    changes = [
        Change(old, new, count)
        for (old, new), count in sorted(moved.items(), key=lambda kv: (-kv[1], kv[0]))
    ]
    labelled = bool(scored) and all(label is not None for _, _, label in pairs)
    n = len(scored)
    changed = sum(moved.values())
    return SourceResult(
        source=source,
        where=where,
        n=n,
        skipped=len(skipped),
        live_accuracy=_share(sum(old == label for old, _, label in pairs), n) if labelled else None,
        candidate_accuracy=(
            _share(sum(new == label for _, new, label in pairs), n) if labelled else None
        ),
        agreement=_share(n - changed, n),
        changed=changed,
        changes=changes,
        fixed=sum(old != lab and new == lab for old, new, lab in pairs) if labelled else None,
        broken=sum(old == lab and new != lab for old, new, lab in pairs) if labelled else None,
        skipped_items=skipped,
    )


def _share(count: int, total: int) -> float | None:
    return count / total if total else None


def classes_note(live: ModelScores, candidate: ModelScores) -> str | None:
    if live.classes == candidate.classes:
        return None
    only_live = sorted(set(live.classes) - set(candidate.classes))
    only_candidate = sorted(set(candidate.classes) - set(live.classes))
    detail = f"live {len(live.classes)} classes, candidate {len(candidate.classes)}"
    if only_live:
        detail += f"; only live: {', '.join(only_live[:5])}"
    if only_candidate:
        detail += f"; only candidate: {', '.join(only_candidate[:5])}"
    if not only_live and not only_candidate:
        detail += "; same names, another order"
    return f"the models' class lists differ ({detail}): breeds are compared by name"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def format_table(comparison: Comparison) -> str:
    """The comparison as the user reads it: the models, one row a source, the top changes."""
    live, candidate = comparison.live, comparison.candidate
    lines = [
        f"candidate  {candidate.describe()}  {candidate.source}",
        f"live       {live.describe()}  {live.source}",
        "",
    ]
    header = ("source", "n", "skipped", "live acc", "cand acc", "agree", "changed")
    rows = [
        (
            s.source,
            str(s.n),
            str(s.skipped),
            _percent(s.live_accuracy),
            _percent(s.candidate_accuracy),
            _percent(s.agreement),
            str(s.changed),
        )
        for s in comparison.sources
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        cells = [cell.rjust(width) for cell, width in zip(row, widths, strict=True)]
        cells[0] = row[0].ljust(widths[0])
        lines.append("  ".join(cells).rstrip())
    for s in comparison.sources:
        if s.changes:
            lines.append("")
            lines.append(f"top changes, {s.source} (live → candidate):")
            lines += [f"  {c.old} → {c.new}: {c.count}" for c in s.changes[:CHANGES_SHOWN]]
            if len(s.changes) > CHANGES_SHOWN:
                lines.append(f"  ... {len(s.changes) - CHANGES_SHOWN} more (see the JSON)")
    drop = comparison.accuracy_drop_points()
    if drop is not None:
        verb = "loses" if drop > 0 else "gains"
        change = f"{verb} {abs(drop):.1f} points" if drop else "is as accurate as the live model"
        lines += ["", f"test accuracy: the candidate {change}"]
    lines += [f"note: {note}" for note in comparison.notes]
    return "\n".join(lines)


def refusal(comparison: Comparison, max_drop: float) -> str | None:
    """Why the candidate must not replace the live model, or None when it may (also when there
    is no labelled source to tell)."""
    drop = comparison.accuracy_drop_points()
    if drop is None or drop <= max_drop:
        return None
    return (
        f"the candidate's test accuracy is {drop:.1f} points below the live model's "
        f"(max {max_drop:g})"
    )


def table_scan_request(table: str) -> dict[str, Any]:
    """The Scan (low-level form) of every PREDICTED item's identity and time."""
    names = {f"#{name}": name for name in _ITEM_FIELDS}
    return {
        "TableName": table,
        "ProjectionExpression": ", ".join(names),
        "FilterExpression": "#status = :predicted",
        "ExpressionAttributeNames": names,
        "ExpressionAttributeValues": {":predicted": {"S": STATUS_PREDICTED}},
    }


def newest(items: Iterable[dict[str, Any]], count: int) -> list[dict[str, Any]]:
    """The ``count`` items with the latest ``predicted_at`` (ISO-8601 UTC sorts as text), newest
    first; holds only ``count`` items at a time."""
    return heapq.nlargest(count, items, key=lambda item: item.get("predicted_at") or "")


# ---------------------------------------------------------------------------- the models
def endpoint_model_data(aws: Aws, endpoint_name: str) -> str:
    """The live model's artifact: endpoint -> its endpoint config -> its model -> ModelDataUrl
    (after a deploy, the SDK's repacked model.tar.gz, holding code/ too)."""
    sm = aws.client("sagemaker")
    try:
        endpoint = sm.describe_endpoint(EndpointName=endpoint_name)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ValidationException":
            raise LaunchError(
                f"endpoint {endpoint_name} does not exist: no live model to compare with "
                "(pass --live s3://.../model.tar.gz)"
            ) from None
        raise
    config_name = endpoint["EndpointConfigName"]
    config = sm.describe_endpoint_config(EndpointConfigName=config_name)
    models = [v["ModelName"] for v in config.get("ProductionVariants", []) if v.get("ModelName")]
    if len(models) != 1:
        raise LaunchError(
            f"endpoint config {config_name} has {len(models)} models: pass --live with the one "
            "to compare with"
        )
    model = sm.describe_model(ModelName=models[0])
    container = model.get("PrimaryContainer") or next(iter(model.get("Containers") or []), {})
    url = container.get("ModelDataUrl")
    if not url:
        raise LaunchError(f"model {models[0]} of endpoint {endpoint_name} has no ModelDataUrl")
    return url


def fetch_model(aws: Aws, source: str, work_dir: Path) -> Path:
    """The model dir of ``source`` (S3 URI, local .tar.gz or model dir), checked for the
    artifact's files; archives are extracted under ``work_dir``."""
    if source.startswith("s3://"):
        bucket, key = split_s3_uri(source)
        s3 = aws.client("s3")
        try:
            s3.head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                raise LaunchError(
                    f"{source}: no such object: the model artifact is missing"
                ) from None
            raise
        work_dir.mkdir(parents=True, exist_ok=True)
        archive = work_dir / "model.tar.gz"
        s3.download_file(bucket, key, str(archive))
        model_dir = _extract(archive, work_dir / "model", source)
        archive.unlink()  # the extracted copy is all that is needed; keep disk use to one
    else:
        path = Path(source).expanduser()
        if not path.exists():
            raise LaunchError(f"{source}: no such file or folder: the model artifact is missing")
        model_dir = path if path.is_dir() else _extract(path, work_dir / "model", source)
    _check_model_dir(model_dir, source)
    return model_dir


def _extract(archive: Path, dest: Path, source: str) -> Path:
    """What SageMaker does before serving: untar into the model dir."""
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(dest, filter="data")
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise LaunchError(f"{source} is not a readable model.tar.gz: {exc}") from None
    return dest


def _check_model_dir(model_dir: Path, source: str) -> None:
    from dog_breeds.artifact import store  # imports torch

    expected = (store.WEIGHTS_FILE, store.CLASSES_FILE, store.CONFIG_FILE)
    missing = [name for name in expected if not (model_dir / name).is_file()]
    if missing:
        found = sorted(p.name for p in model_dir.iterdir())[:8]
        raise LaunchError(
            f"{source} holds no model files: {', '.join(missing)} missing at its top "
            f"(found: {', '.join(found) or 'nothing'})"
        )


def load_handlers() -> ModuleType:
    """``endpoint_inference.py`` as the serving toolkit loads its entry point: a module from the
    source folder, found by its file name, whose four handler functions serve each request."""
    path = serving_code.SOURCE_DIR / serving_code.ENTRY_POINT
    spec = importlib.util.spec_from_file_location(path.stem, path)
    if spec is None or spec.loader is None:
        raise LaunchError(f"{path}: cannot load the serving entry point")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    missing = [name for name in HANDLERS if not callable(getattr(module, name, None))]
    if missing:
        raise LaunchError(f"{path} lacks the handler functions {', '.join(missing)}")
    return module


def score(handlers: ModuleType, model_dir: Path, source: str, samples: list[Sample]) -> ModelScores:
    """Every sample through ``handlers`` with the model of ``model_dir``, one request each; the
    model is released before this returns."""
    from sagemaker_inference.errors import GenericInferenceToolkitError

    from dog_breeds.artifact import store

    config = store.load_config(model_dir)
    scores = ModelScores(
        source=source,
        classes=store.load_classes(model_dir),
        # Until an answer says more (the runtime): what the artifact says it is.
        identity={"name": config["model_name"], "version": config["model_version"]},
    )
    model = handlers.model_fn(str(model_dir))
    try:
        for sample in samples:
            try:
                request = handlers.input_fn(sample.path.read_bytes(), CONTENT_TYPE)
                body, _ = handlers.output_fn(handlers.predict_fn(request, model), ACCEPT)
            except GenericInferenceToolkitError as exc:  # the endpoint's 4xx: not an image ...
                scores.refused[sample.id] = f"{exc.status_code}: {exc.message}"
                continue
            answer = json.loads(body)
            scores.breeds[sample.id] = answer["predictions"][0]["breed"]
            scores.identity = answer.get("model") or scores.identity
    finally:
        del model
        gc.collect()  # one model's weights in memory at a time
    return scores


def _model_info(scores: ModelScores) -> ModelInfo:
    identity = scores.identity
    return ModelInfo(
        source=scores.source,
        name=identity.get("name"),
        version=identity.get("version"),
        runtime=identity.get("runtime"),
        classes=len(scores.classes),
    )


# ---------------------------------------------------------------------------- the sources
def dataset_samples(aws: Aws, data: str, work_dir: Path) -> list[Sample]:
    """The test split's images with their breeds; an S3 dataset's test/ is downloaded first."""
    from dog_breeds.data import folders  # imports torch

    if data.startswith("s3://"):
        root = _download_test_split(aws, data, work_dir)
    else:
        root = Path(data).expanduser()
        if not root.is_dir():
            raise LaunchError(f"--data {data}: no such folder")
    test_dir = root / "test"
    if not test_dir.is_dir():
        raise LaunchError(
            f"{data} has no test/ folder: expected the dogImages layout (test/NNN.Breed_name/*.jpg)"
        )
    samples = [
        Sample(f"test/{folder.name}/{path.name}", path, folders.class_name(folder.name))
        for folder in sorted(p for p in test_dir.iterdir() if p.is_dir())
        for path in sorted(folder.iterdir())
        if path.suffix.lower() in folders.IMAGE_SUFFIXES
    ]
    if not samples:
        raise LaunchError(f"{data}: no images in test/NNN.Breed_name/ folders")
    return samples


def _download_test_split(aws: Aws, data: str, work_dir: Path) -> Path:
    bucket, prefix = split_s3_uri(data.rstrip("/"))
    test_prefix = f"{prefix}/test/" if prefix else "test/"
    s3 = aws.client("s3")
    found = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=test_prefix):
        for obj in page.get("Contents", []):
            relative = obj["Key"][len(test_prefix) :]
            if relative.endswith("/") or relative.count("/") != 1:
                continue  # only test/NNN.Breed/file
            target = work_dir / "test" / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, obj["Key"], str(target))
            found += 1
    if not found:
        raise LaunchError(
            f"{data} has no test/ folder: expected the dogImages layout "
            f"(test/NNN.Breed_name/*.jpg under s3://{bucket}/{test_prefix})"
        )
    return work_dir


def _table_items(aws: Aws, table: str) -> Iterator[dict[str, Any]]:
    from boto3.dynamodb.types import TypeDeserializer

    deserializer = TypeDeserializer()
    dynamodb = aws.client("dynamodb")  # a Scan only reads: it is sent in a dry run too
    try:
        for page in dynamodb.get_paginator("scan").paginate(**table_scan_request(table)):
            for item in page.get("Items", []):
                yield {name: deserializer.deserialize(value) for name, value in item.items()}
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            raise LaunchError(f"--table {table}: no such DynamoDB table") from None
        raise


def table_sample(
    aws: Aws, table: str, count: int, work_dir: Path
) -> tuple[list[Sample], dict[str, str]]:
    """The newest ``count`` PREDICTED items' objects (the version predicted, where the item has
    one), downloaded; and the items whose object could not be read (id -> why)."""
    s3 = aws.client("s3")
    work_dir.mkdir(parents=True, exist_ok=True)
    samples: list[Sample] = []
    gone: dict[str, str] = {}
    for index, item in enumerate(newest(_table_items(aws, table), count)):
        sample_id = f"s3://{item['bucket']}/{item['key']}"
        request = {"Bucket": item["bucket"], "Key": item["key"]}
        if item.get("version_id"):
            request["VersionId"] = item["version_id"]
        try:
            body = s3.get_object(**request)["Body"].read()
        except ClientError as exc:
            error = exc.response.get("Error", {})
            gone[sample_id] = f"{error.get('Code')}: {error.get('Message')}"
            continue
        path = work_dir / f"{index:05d}{Path(item['key']).suffix[:8]}"
        path.write_bytes(body)
        samples.append(Sample(id=sample_id, path=path))
    return samples, gone


# ---------------------------------------------------------------------------- wiring
def compare(
    aws: Aws,
    *,
    candidate: str,
    live: str,
    data: str | None = None,
    table: str | None = None,
    sample: int = DEFAULT_SAMPLE,
) -> Comparison:
    """Score ``candidate`` and ``live`` (artifacts: S3 URI, .tar.gz or dir) on the test split of
    ``data`` and on the newest ``sample`` PREDICTED items of ``table``."""
    if not data and not table:
        raise LaunchError("nothing to compare on: give a dataset (test split) or a table")
    with tempfile.TemporaryDirectory(prefix="compare-") as tmp:
        work = Path(tmp)
        # Both artifacts and all images first: a missing one fails before minutes of scoring.
        model_dirs = {
            "candidate": fetch_model(aws, candidate, work / "candidate"),
            "live": fetch_model(aws, live, work / "live"),
        }
        sources: list[tuple[str, str, list[Sample], dict[str, str]]] = []
        if data:
            sources.append((TEST_SPLIT, data, dataset_samples(aws, data, work / "data"), {}))
        if table:
            samples, gone = table_sample(aws, table, sample, work / "table")
            sources.append((TABLE_SAMPLE, f"table {table}, newest {sample}", samples, gone))
        everything = [s for _, _, samples, _ in sources for s in samples]
        handlers = load_handlers()
        scores = {
            role: score(handlers, model_dirs[role], source, everything)
            for role, source in (("live", live), ("candidate", candidate))
        }
    live_scores, candidate_scores = scores["live"], scores["candidate"]
    results = [
        summarize(source, where, samples, live_scores, candidate_scores, gone)
        for source, where, samples, gone in sources
    ]
    notes = [n for n in [classes_note(live_scores, candidate_scores)] if n]
    notes += [f"{r.source}: no image both models could score" for r in results if r.n == 0]
    return Comparison(_model_info(candidate_scores), _model_info(live_scores), results, notes)


def report(comparison: Comparison, runs_dir: Path, json_path: Path | None = None) -> None:
    """Print the table; write the JSON to RUNS_DIR/compare.json, and to ``json_path`` if given."""
    print(format_table(comparison))
    text = json.dumps(comparison.to_json(), indent=2) + "\n"
    for path in [Path(runs_dir) / "compare.json", *([json_path] if json_path else [])]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path}")


# ---------------------------------------------------------------------------- the gate
def add_gate_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``gate``: how much test accuracy a candidate may lose, and on what to score."""
    group = parser.add_argument_group(
        "compare with the live model first (training.launch.compare; reads only)"
    )
    group.add_argument(
        "--max-accuracy-drop",
        type=float,
        default=DEFAULT_MAX_ACCURACY_DROP,
        metavar="POINTS",
        help="refuse a candidate whose test accuracy is more than this many percentage points "
        "below the live model's (default: %(default)s)",
    )
    group.add_argument("--force", action="store_true", help="deploy even if the candidate is worse")
    group.add_argument(
        "--compare-data",
        metavar="URI|DIR",
        help="dataset (dogImages layout) whose test/ split both models are scored on "
        "(default: the training job's own dataset; with --model-data, none: only the table "
        "sample, if --compare-table)",
    )
    group.add_argument(
        "--compare-table",
        metavar="TABLE",
        help="predictions table whose newest PREDICTED uploads both models are scored on",
    )
    group.add_argument(
        "--compare-sample",
        type=int,
        default=DEFAULT_SAMPLE,
        metavar="N",
        help="how many of the newest uploads (default: %(default)s)",
    )


def gate(
    args: argparse.Namespace, aws: Aws, candidate_model_data: str, live_model_data: str | None
) -> Comparison | None:
    """Compare before a deploy switches the endpoint: print the table, write
    RUNS_DIR/compare.json, and raise ``LaunchError`` if the candidate's test accuracy is more than
    ``args.max_accuracy_drop`` points below the live model's, unless ``args.force``.

    Returns None (one printed line) when there is nothing to compare: no live model, or neither
    --compare-data nor --compare-table. Without --compare-data there are no labels, so the table
    sample is reported and nothing is refused.
    """
    if not live_model_data:
        print("compare: skipped: no live model to compare with")
        return None
    if not args.compare_data and not args.compare_table:
        print("compare: skipped: no --compare-data or --compare-table to score the models on")
        return None
    if args.compare_sample < 1:
        raise LaunchError(f"--compare-sample {args.compare_sample}: use 1 or more")
    comparison = compare(
        aws,
        candidate=candidate_model_data,
        live=live_model_data,
        data=args.compare_data,
        table=args.compare_table,
        sample=args.compare_sample,
    )
    report(comparison, getattr(args, "runs_dir", Path("runs")))
    why = refusal(comparison, args.max_accuracy_drop)
    if why and not args.force:
        raise LaunchError(f"{why}; deploy --force to deploy anyway")
    if why:
        print(f"compare: {why}: deploying anyway (--force)")
    return comparison
