"""``compare``: the candidate against the live model before a deploy, and the gate deploy calls.

Two real artifacts: the session's tiny model trained from random init (live, served by an endpoint
created in moto) and the same network before training, saved and exported as training saves and
exports it (the candidate, clearly worse). The numbers the launcher prints must be exactly what
each model's own runtime answers for each image, computed here without the handlers' request path.
"""

from __future__ import annotations

import json
import shutil
import types
from collections import Counter
from pathlib import Path

import boto3
import numpy as np
import pytest
from launch_testkit import BUCKET, REGION, ROLE, model_tarball

from local.demo import default_model
from training.launch import compare
from training.launch.aws import Aws
from training.launch.stages import STAGES

ENDPOINT = "dogs-live"
TABLE = "predictions"
DATA_URI = f"s3://{BUCKET}/dog-breeds/dogImages"
LIVE_KEY = "deploy/dogs-live-2024/model.tar.gz"
CANDIDATE_KEY = "jobs/candidate/output/model.tar.gz"
IMAGE_REGISTRY = "763104351884.dkr.ecr.us-east-1.amazonaws.com"
BROKEN = "001.Affenpinscher/broken.jpg"  # in the test split: not an image


def untrained_artifact(trained: Path, model_dir: Path, seed: int) -> Path:
    """The trained model's network at random init (``seed``), saved as training saves it, with its
    CPU form (train.py --int8 false): served by OpenVINO like the trained one."""
    import torch

    from dog_breeds.artifact import store
    from dog_breeds.model import network
    from dog_breeds.training import cpu_export, quantize

    config = store.load_config(trained)
    classes = store.load_classes(trained)
    torch.manual_seed(seed)
    model = network.build_model(
        len(classes), config["hidden_size"], config["dropout"], pretrained=False
    )
    store.save_artifact(
        model.eval(),
        model_dir,
        classes,
        hidden_size=config["hidden_size"],
        dropout=config["dropout"],
        image_size=config["image_size"],
        mean=config["mean"],
        std=config["std"],
        model_name=config["model_name"],
    )
    assert cpu_export.export_cpu_form(model, model_dir) is not None
    quantize.disabled(model_dir, "disabled (--int8 false)")
    return model_dir


def own_predictions(model_dir: Path, images: list[Path]) -> dict[str, object]:
    """Each image's top-1 breed from the model's runtime (None: the decoder refuses it)."""
    from dog_breeds.serving import image_decode, inference, preprocess

    served = inference.model_fn(str(model_dir))
    breeds: dict[Path, str | None] = {}
    for path in images:
        try:
            image = image_decode.decode_image(path.read_bytes())
        except image_decode.BadImage:
            breeds[path] = None
            continue
        pixels = preprocess.to_model_input(image, served.image_size, served.mean, served.std)
        breeds[path] = served.classes[int(np.argmax(served.runtime(pixels[np.newaxis])[0]))]
    return {"breeds": breeds, "name": served.name, "version": served.version,
            "runtime": served.runtime.name}  # fmt: skip


@pytest.fixture(scope="module")
def models(trained_artifact: Path, tmp_path_factory: pytest.TempPathFactory):
    """The live (trained) and candidate (untrained) model dirs."""
    work = tmp_path_factory.mktemp("compare-models")
    candidate = untrained_artifact(trained_artifact, work / "candidate", seed=1)
    return types.SimpleNamespace(live=trained_artifact, candidate=candidate)


@pytest.fixture(scope="module")
def tarballs(models, tmp_path_factory: pytest.TempPathFactory):
    """Both as model.tar.gz with code/, as SageMaker stores them (the SDK's repack adds code/)."""
    work = tmp_path_factory.mktemp("compare-tarballs")
    return types.SimpleNamespace(
        live=default_model.package(models.live, work / "live.tar.gz"),
        candidate=default_model.package(models.candidate, work / "candidate.tar.gz"),
    )


@pytest.fixture(scope="module")
def dataset(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny test split (24 images, 4 breeds) plus one file that is no image."""
    root = tmp_path_factory.mktemp("compare-data") / "dogImages"
    shutil.copytree(tiny_dataset / "test", root / "test")
    (root / "test" / BROKEN).write_bytes(b"these bytes are not a jpeg")
    return root


@pytest.fixture(scope="module")
def expected(models, dataset: Path):
    """What each model's own runtime answers for every test image."""
    images = sorted((dataset / "test").glob("*/*"))
    return {
        "images": images,
        "live": own_predictions(models.live, images),
        "candidate": own_predictions(models.candidate, images),
    }


def label(path: Path) -> str:
    return path.parent.name.split(".", 1)[1]


def expected_numbers(expected, images: list[Path]) -> dict[str, object]:
    live, candidate = expected["live"]["breeds"], expected["candidate"]["breeds"]
    scored = [p for p in images if live[p] is not None]
    moved = Counter((live[p], candidate[p]) for p in scored if live[p] != candidate[p])
    return {
        "n": len(scored),
        "changed": sum(moved.values()),
        "agreement": (len(scored) - sum(moved.values())) / len(scored),
        "changes": sorted(
            ({"old": o, "new": n, "count": c} for (o, n), c in moved.items()),
            key=lambda c: (-c["count"], c["old"], c["new"]),
        ),
        "live_accuracy": sum(live[p] == label(p) for p in scored) / len(scored),
        "candidate_accuracy": sum(candidate[p] == label(p) for p in scored) / len(scored),
    }


def put_live_endpoint(tarballs) -> str:
    """The endpoint as deploy leaves it: model (ModelDataUrl: the artifact with code/), endpoint
    config, endpoint."""
    s3 = boto3.client("s3", region_name=REGION)
    s3.upload_file(str(tarballs.live), BUCKET, LIVE_KEY)
    sm = boto3.client("sagemaker", region_name=REGION)
    url = f"s3://{BUCKET}/{LIVE_KEY}"
    sm.create_model(
        ModelName="dogs-live-2024",
        ExecutionRoleArn=ROLE,
        PrimaryContainer={
            "Image": f"{IMAGE_REGISTRY}/pytorch-inference:2.6.0-cpu-py312",
            "ModelDataUrl": url,
            "Environment": {"SAGEMAKER_PROGRAM": "endpoint_inference.py"},
        },
    )
    sm.create_endpoint_config(
        EndpointConfigName="dogs-live-2024",
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": "dogs-live-2024",
                "InitialInstanceCount": 1,
                "InstanceType": "ml.t2.medium",
            }
        ],
    )
    sm.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName="dogs-live-2024")
    return url


def put_candidate(tarballs) -> str:
    boto3.client("s3", region_name=REGION).upload_file(
        str(tarballs.candidate), BUCKET, CANDIDATE_KEY
    )
    return f"s3://{BUCKET}/{CANDIDATE_KEY}"


def put_dataset(dataset: Path) -> None:
    s3 = boto3.client("s3", region_name=REGION)
    for path in sorted((dataset / "test").glob("*/*")):
        s3.upload_file(str(path), BUCKET, f"dog-breeds/dogImages/{path.relative_to(dataset)}")


def put_table(images: list[Path]) -> list[Path]:
    """A predictions table whose newest PREDICTED items are ``images`` (uploaded), one whose
    object is gone and one that is no image; older and FAILED items around them. Returns the
    images the sample must score."""
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    dynamodb.create_table(
        TableName=TABLE,
        KeySchema=[
            {"AttributeName": "bucket", "KeyType": "HASH"},
            {"AttributeName": "key", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "bucket", "AttributeType": "S"},
            {"AttributeName": "key", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    table = boto3.resource("dynamodb", region_name=REGION).Table(TABLE)
    s3 = boto3.client("s3", region_name=REGION)

    def item(key: str, minute: int, status: str = "PREDICTED", body: bytes | None = None):
        if body is not None:
            s3.put_object(Bucket=BUCKET, Key=key, Body=body)
        fields = {"bucket": BUCKET, "key": key, "status": status}
        fields["predicted_at"] = f"2024-05-01T12:{minute:02d}:00.000Z"
        if status == "PREDICTED":
            fields.update(breed="Akita", model={"name": "dog-breeds-resnet50"})
        table.put_item(Item=fields)

    item("uploads/oldest.jpg", 0, body=images[-1].read_bytes())  # outside the newest 7
    for minute, path in enumerate(images, start=1):
        item(f"uploads/{path.name}", minute, body=path.read_bytes())
    item("uploads/gone.jpg", 10)  # its object was deleted since
    item("uploads/notes.jpg", 11, body=b"meeting notes, not a dog")
    item("uploads/failed.jpg", 12, status="FAILED", body=b"")
    return images


def test_compare_scores_both_models_on_the_test_split_and_recent_uploads(
    run_launch, tarballs, dataset, expected, tmp_path
):
    live_url = put_live_endpoint(tarballs)
    candidate_url = put_candidate(tarballs)
    put_dataset(dataset)
    good = [p for p in expected["images"] if not str(p).endswith(BROKEN)]
    sampled = put_table(good[::5])  # 5 images, of every breed
    json_path = tmp_path / "out" / "compare.json"

    run = run_launch(
        "compare", "--endpoint-name", ENDPOINT, "--candidate", candidate_url,
        "--data", DATA_URI, "--table", TABLE, "--sample", "7", "--json", str(json_path),
    )  # fmt: skip
    assert run.rc == 0, run.err
    print(run.out)

    report = json.loads(json_path.read_text())
    assert report == json.loads((tmp_path / "runs" / "compare.json").read_text())
    for role, url in (("live", live_url), ("candidate", candidate_url)):
        own = expected[role]
        assert report[role] == {
            "source": url,
            "name": own["name"],
            "version": own["version"],
            "runtime": own["runtime"],
            "classes": 4,
        }
    test_split, table = report["sources"]

    want = expected_numbers(expected, expected["images"])
    assert test_split["source"] == "test split" and test_split["where"] == DATA_URI
    assert {k: test_split[k] for k in want} == want
    assert test_split["skipped"] == 1
    assert list(test_split["skipped_items"]) == [f"test/{BROKEN}"]
    assert test_split["skipped_items"][f"test/{BROKEN}"].startswith("400: ")
    assert test_split["live_accuracy"] == 1.0  # the trained model
    assert report["accuracy_drop_points"] == pytest.approx(
        100 * (want["live_accuracy"] - want["candidate_accuracy"])
    )

    want = expected_numbers(expected, sampled)
    assert table["source"] == "table sample"
    assert {k: table[k] for k in ("n", "changed", "agreement", "changes")} == {
        k: want[k] for k in ("n", "changed", "agreement", "changes")
    }
    assert table["live_accuracy"] is None and table["candidate_accuracy"] is None
    assert sorted(table["skipped_items"]) == [
        f"s3://{BUCKET}/uploads/gone.jpg",
        f"s3://{BUCKET}/uploads/notes.jpg",
    ]

    # The printed table: one aligned row a source, the top changes, the accuracy difference.
    lines = run.out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("source"))
    rows = lines[start : lines.index("", start)]
    assert rows[0].split() == ["source", "n", "skipped", "live", "acc", "cand", "acc", "agree",
                               "changed"]  # fmt: skip
    assert rows[1].split()[2:5] == [str(test_split["n"]), "1", "100.0%"]
    assert rows[2].split()[2:4] == [str(table["n"]), "2"]
    assert len({len(row) for row in rows}) == 1  # right-aligned columns
    first = test_split["changes"][0]
    assert f"  {first['old']} → {first['new']}: {first['count']}" in run.out
    assert "test accuracy: the candidate loses" in run.out

    # A dry run reads the same and prints the same: nothing it does is a change.
    dry = run_launch(
        "compare", "--endpoint-name", ENDPOINT, "--candidate", candidate_url,
        "--data", DATA_URI, "--table", TABLE, "--sample", "7", "--dry-run",
    )  # fmt: skip
    assert dry.rc == 0, dry.err
    assert dry.dry_run_requests() == []
    assert "the 0 request(s) above were not sent" in dry.out
    again = json.loads((tmp_path / "runs" / "compare.json").read_text())
    assert again == report
    sent = {c["operation"] for c in dry.log.calls}
    assert "Scan" in sent
    assert sent <= {"DescribeEndpoint", "DescribeEndpointConfig", "DescribeModel", "HeadObject",
                    "GetObject", "ListObjectsV2", "Scan"}  # fmt: skip


def test_without_candidate_compare_takes_the_model_of_the_last_training_run(
    run_launch, models, dataset, tmp_path
):
    assert run_launch("train", "--role", ROLE, "--no-wait").rc == 0
    job = json.loads((tmp_path / "runs" / "training_job.json").read_text())["training_job"]
    sm = boto3.client("sagemaker", region_name=REGION)
    artifact = sm.describe_training_job(TrainingJobName=job)["ModelArtifacts"]["S3ModelArtifacts"]

    run = run_launch("compare", "--live", str(models.live), "--data", str(dataset))
    # moto's job wrote no artifact: the launcher looked for the job's, and says so in one line.
    assert run.rc == 2
    assert run.err.strip() == (
        f"training.launch compare: error: {artifact}: no such object: the model artifact is missing"
    )


@pytest.fixture
def gated_deploy(monkeypatch):
    """A stage that does what deploy does before UpdateEndpoint: find the live model, gate."""

    def add_arguments(parser):
        parser.add_argument("--model-data", required=True)
        parser.add_argument("--live-model-data", help="default: the endpoint's")
        parser.add_argument("--endpoint-name", default=ENDPOINT)
        compare.add_gate_arguments(parser)

    def run(args, aws: Aws):
        live = args.live_model_data or compare.endpoint_model_data(aws, args.endpoint_name)
        compare.gate(args, aws, args.model_data, live)
        print("would update the endpoint")

    stage = types.SimpleNamespace(HELP="deploy, gated", add_arguments=add_arguments, run=run)
    monkeypatch.setitem(STAGES, "gated-deploy", stage)
    return "gated-deploy"


def test_the_gate_refuses_a_clearly_worse_candidate_unless_forced(
    run_launch, gated_deploy, models, dataset, expected, tmp_path
):
    want = expected_numbers(expected, expected["images"])
    drop = 100 * (want["live_accuracy"] - want["candidate_accuracy"])
    assert drop > 10
    # Local model dirs: the gate takes what compare takes (the endpoint's is S3, tested above).
    args = ("--model-data", str(models.candidate), "--live-model-data", str(models.live),
            "--compare-data", str(dataset))  # fmt: skip

    run = run_launch(gated_deploy, *args)
    assert run.rc == 2
    assert run.err.strip() == (
        f"training.launch {gated_deploy}: error: the candidate's test accuracy is {drop:.1f} "
        "points below the live model's (max 1); deploy --force to deploy anyway"
    )
    assert "test split" in run.out and "would update" not in run.out
    assert json.loads((tmp_path / "runs" / "compare.json").read_text())[
        "accuracy_drop_points"
    ] == pytest.approx(drop)

    forced = run_launch(gated_deploy, *args, "--force")
    assert forced.rc == 0, forced.err
    assert "deploying anyway (--force)" in forced.out
    assert forced.out.rstrip().endswith("would update the endpoint")

    lenient = run_launch(gated_deploy, *args, "--max-accuracy-drop", f"{drop + 0.1}")
    assert lenient.rc == 0, lenient.err

    # The live model against itself: nothing changes, nothing is refused.
    same = run_launch(
        gated_deploy, "--model-data", str(models.live), *args[2:], "--max-accuracy-drop", "0"
    )
    assert same.rc == 0, same.err
    report = json.loads((tmp_path / "runs" / "compare.json").read_text())
    assert report["accuracy_drop_points"] == 0
    assert report["sources"][0]["agreement"] == 1.0 and report["sources"][0]["changes"] == []


def test_deploy_of_a_job_s_model_is_gated_on_the_job_s_own_test_split(
    run_launch, tarballs, dataset, expected, tmp_path
):
    """The real deploy, on an endpoint that exists, with no compare flag: the candidate is the
    last train run's model, scored on the test split of the dataset that job trained on."""
    put_live_endpoint(tarballs)
    put_dataset(dataset)
    assert run_launch("train", "--role", ROLE, "--no-wait").rc == 0
    job = json.loads((tmp_path / "runs" / "training_job.json").read_text())["training_job"]
    sm = boto3.client("sagemaker", region_name=REGION)
    artifact = sm.describe_training_job(TrainingJobName=job)["ModelArtifacts"]["S3ModelArtifacts"]
    bucket, key = artifact.removeprefix("s3://").split("/", 1)
    boto3.client("s3", region_name=REGION).upload_file(str(tarballs.candidate), bucket, key)
    want = expected_numbers(expected, expected["images"])
    drop = 100 * (want["live_accuracy"] - want["candidate_accuracy"])

    run = run_launch("deploy", "--endpoint-name", ENDPOINT, "--role", ROLE)
    assert run.rc == 2
    assert f"compare: on the test split of {job}'s dataset, {DATA_URI}" in run.out
    assert run.err.strip() == (
        f"training.launch deploy: error: the candidate's test accuracy is {drop:.1f} points "
        "below the live model's (max 1); deploy --force to deploy anyway"
    )
    changes = [
        c["operation"] for c in run.log.calls if c["operation"].startswith(("Create", "Update"))
    ]
    assert changes == []  # refused before anything was made
    assert sm.describe_endpoint(EndpointName=ENDPOINT)["EndpointConfigName"] == "dogs-live-2024"
    # --force past the gate: test_the_gate_refuses_a_clearly_worse_candidate_unless_forced (the
    # gate alone, a third of this test's time).


def test_the_gate_says_in_one_line_when_it_has_nothing_to_score_on(run_launch, gated_deploy):
    run = run_launch(gated_deploy, "--model-data", "s3://b/m.tar.gz", "--live-model-data", "x")
    assert run.rc == 0, run.err
    assert run.out.splitlines() == [
        "compare: skipped: no --compare-data or --compare-table to score the models on",
        "would update the endpoint",
    ]


def test_compare_stage_exits_2_past_its_max_accuracy_drop(run_launch, models, dataset):
    args = ("compare", "--candidate", str(models.candidate), "--live", str(models.live),
            "--data", str(dataset))  # fmt: skip
    assert run_launch(*args).rc == 0
    run = run_launch(*args, "--max-accuracy-drop", "5")
    assert run.rc == 2
    assert "points below the live model's (max 5)" in run.err


def test_models_with_other_class_lists_are_compared_by_breed_name(
    run_launch, models, dataset, tmp_path
):
    # The candidate as if trained on another breed list: its last class is another breed.
    other = tmp_path / "other"
    shutil.copytree(models.candidate, other)
    classes = json.loads((other / "classes.json").read_text())
    (other / "classes.json").write_text(json.dumps([*classes[:3], "Basenji"]))

    run = run_launch(
        "compare", "--candidate", str(other), "--live", str(models.live), "--data", str(dataset)
    )
    assert run.rc == 0, run.err
    assert "note: the models' class lists differ" in run.out
    assert "only live: Akita; only candidate: Basenji" in run.out
    report = json.loads((tmp_path / "runs" / "compare.json").read_text())
    assert any("class lists differ" in note for note in report["notes"])
    assert report["candidate"]["runtime"] == "openvino"


def _tar(files: dict[str, bytes], path: Path) -> Path:
    path.write_bytes(model_tarball(files))
    return path


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("no candidate object", "s3://launch-test-bucket/none/model.tar.gz: no such object"),
        ("no model files", "holds no model files: model.pth, classes.json, config.json missing"),
        ("not a tarball", "is not a readable model.tar.gz"),
        ("no test folder", "has no test/ folder: expected the dogImages layout"),
        ("no endpoint", "endpoint dog-breeds does not exist: no live model to compare with"),
        ("nothing to score on", "compare needs --data (a test split) and/or --table"),
        ("no candidate", "compare needs --candidate"),
        ("no such table", "--table nope: no such DynamoDB table"),
    ],
)
def test_what_the_user_can_fix_is_one_line_and_exit_code_2(
    run_launch, models, dataset, tmp_path, case, message
):
    live, data = str(models.live), str(dataset)
    candidate = str(models.candidate)
    if case == "no candidate object":
        candidate = f"s3://{BUCKET}/none/model.tar.gz"
    elif case == "no model files":
        candidate = str(_tar({"code/endpoint_inference.py": b"x"}, tmp_path / "code.tar.gz"))
    elif case == "not a tarball":
        candidate = str(tmp_path / "model.tar.gz")
        (tmp_path / "model.tar.gz").write_text("not gzip")
    elif case == "no test folder":
        data = str(tmp_path / "empty")
        (tmp_path / "empty" / "train").mkdir(parents=True)
    argv = ["compare", "--candidate", candidate, "--live", live, "--data", data]
    if case == "no endpoint":
        argv = ["compare", "--candidate", candidate, "--data", data]
    elif case == "nothing to score on":
        argv = ["compare", "--candidate", candidate, "--live", live]
    elif case == "no candidate":
        argv = ["compare", "--live", live, "--data", data]
    elif case == "no such table":
        argv = ["compare", "--candidate", candidate, "--live", live, "--table", "nope"]
    run = run_launch(*argv)
    assert run.rc == 2, run.out
    assert run.err.count("\n") == 1 and "Traceback" not in run.err
    assert message in run.err


def test_both_models_are_served_by_this_repository_s_entry_point():
    handlers = compare.load_handlers()
    source = Path(compare.__file__).resolve().parents[1] / "container" / "endpoint_inference.py"
    assert Path(handlers.__file__) == source
    assert all(callable(getattr(handlers, name)) for name in compare.HANDLERS)
