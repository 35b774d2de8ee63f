"""A model update while uploads keep coming, through the whole offline stack: the endpoint is
updated as the launcher updates it (a new model and endpoint config, ``UpdateEndpoint``), the
stack switches its runtime to the new model with no request refused, and then:

- every upload, before, during and after the update, ends as exactly one item, none in the
  dead-letter queue, and the endpoint answered no 5xx;
- items classified before the switch carry the old model's version, those classified once the
  old model had drained the new one's (in between, either);
- the ``make reprocess`` line deploy printed, run as printed, brings every item to the new model
  and says so;
- a rollback (``UpdateEndpoint`` back to the first config) is just another update: new uploads
  get the old model's version again;
- with stand-in models: an update whose model does not load leaves the old one serving and the
  endpoint InService on its config, with the reason.

Run with -s to see the figures: uploads during the update, items, lost, 5xx, time to switch,
drain time."""

from __future__ import annotations

import io
import json
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest

from local.demo.uploads import read_items, synthetic_images, wait_for_items
from local.endpoint.runtime import ContainerResponse
from local.stack import (
    LOCAL_ROLE_ARN,
    STACK_LOG,
    LocalStack,
    inference_image,
    model_tarball,
    offline_environ,
)

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]

UPLOADS_PER_S = 1.0  # enough to catch the switch; each upload is also reprocessed
UPDATED_VERSION = "feedc0ffee12"  # 12 hex digits, as training names a version
# An item written this long after the old model drained cannot have come from it (the function
# writes its item right after the endpoint answers).
SETTLE_S = 2.0


@pytest.fixture(scope="module")
def updated_model(served_model, tmp_path_factory):
    """The served model under another model version, as a retrained model would carry it."""
    updated = tmp_path_factory.mktemp("updated") / "model"
    shutil.copytree(served_model, updated)
    config = json.loads((updated / "config.json").read_text())
    config["model_version"] = UPDATED_VERSION
    (updated / "config.json").write_text(json.dumps(config))
    return updated


def launch(stack: LocalStack, stage: str, *args: str) -> subprocess.CompletedProcess:
    """``python -m training.launch STAGE`` as ``make local`` prints it: the launcher's own requests
    against the stack's moto, with only the offline stack's dummy credentials. ``--no-wait``: the
    test polls DescribeEndpoint itself (the SDK's wait sleeps 30 s between polls)."""
    env = offline_environ(AWS_ENDPOINT_URL=stack.moto_url, AWS_REGION=stack.region)
    command = [sys.executable, "-m", "training.launch", stage]
    command += ["--endpoint-name", stack.endpoint_name, "--bucket", stack.model_bucket, *args]
    done = subprocess.run(
        command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def update_endpoint(
    stack: LocalStack, model_data_url: str, *args: str
) -> tuple[str, subprocess.CompletedProcess]:
    """``deploy`` to the endpoint that exists: the launcher creates a model and an endpoint
    config under new names and sends UpdateEndpoint; returns the new config's name and the run."""
    done = launch(
        stack,
        "deploy",
        "--model-data",
        model_data_url,
        "--role",
        LOCAL_ROLE_ARN,
        "--no-wait",
        *args,
    )
    described = stack.client("sagemaker").describe_endpoint(EndpointName=stack.endpoint_name)
    pending = described.get("PendingDeploymentSummary", {}).get("EndpointConfigName")
    return pending or described["EndpointConfigName"], done


def make_as_printed(line: str, more_args: str) -> subprocess.CompletedProcess:
    """A ``make TARGET NAME=VALUE ...`` line the launcher printed, run in the repository with only
    the offline stack's dummy credentials; ``more_args`` ends its ARGS."""
    words = shlex.split(line)
    assert words[0] == "make" and words[-1].startswith("ARGS="), line
    words[-1] += f" {more_args}"
    return subprocess.run(
        ["make", "--no-print-directory", *words[1:]],
        cwd=REPO_ROOT, env=offline_environ(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def roll_back(stack: LocalStack) -> subprocess.CompletedProcess:
    """``rollback``: UpdateEndpoint back to the previous endpoint config."""
    return launch(stack, "rollback", "--no-wait")


def api_update(stack: LocalStack, model_data_url: str, name: str) -> str:
    """The same three requests sent directly, for stand-in models the launcher would not deploy
    (no weights, no model version): CreateModel, CreateEndpointConfig, UpdateEndpoint."""
    sagemaker = stack.client("sagemaker")
    sagemaker.create_model(
        ModelName=name,
        ExecutionRoleArn=LOCAL_ROLE_ARN,
        PrimaryContainer={"Image": inference_image(stack.region), "ModelDataUrl": model_data_url},
    )
    sagemaker.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": name,
                "InitialInstanceCount": 1,
                "InstanceType": "ml.t2.medium",
            }
        ],
    )
    return roll_to(stack, name)


def roll_to(stack: LocalStack, config_name: str) -> str:
    """``UpdateEndpoint`` to a config that exists."""
    stack.client("sagemaker").update_endpoint(
        EndpointName=stack.endpoint_name, EndpointConfigName=config_name
    )
    return config_name


def wait_in_service(stack: LocalStack, timeout_s: float = 300) -> dict:
    """DescribeEndpoint until the endpoint is no longer Updating."""
    sagemaker = stack.client("sagemaker")
    deadline = time.monotonic() + timeout_s
    while True:
        described = sagemaker.describe_endpoint(EndpointName=stack.endpoint_name)
        if described["EndpointStatus"] != "Updating" or time.monotonic() > deadline:
            return described
        time.sleep(0.2)


class Uploader:
    """Uploads an image every ``1 / UPLOADS_PER_S`` seconds from a thread of its own, and
    remembers when it uploaded what."""

    def __init__(self, stack: LocalStack, prefix: str) -> None:
        self.s3 = stack.client("s3")
        self.bucket = stack.facts.bucket
        self.prefix = prefix
        self.images = synthetic_images(20, size=64, seed=11)
        self.uploaded: list[tuple[str, datetime]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        n = 0
        while not self.stop.is_set():
            key = f"{self.prefix}{n:04d}.jpg"
            self.s3.put_object(Bucket=self.bucket, Key=key, Body=self.images[n % len(self.images)])
            self.uploaded.append((key, datetime.now(UTC)))
            n += 1
            self.stop.wait(1 / UPLOADS_PER_S)

    def __enter__(self) -> Uploader:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=30)

    @property
    def keys(self) -> list[str]:
        return [key for key, _ in self.uploaded]


def iso(moment: datetime) -> str:
    """The form of the item's ``predicted_at``, so that text order is time order."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def version_of(item: dict) -> str:
    return item["model"]["version"]


def test_uploads_keep_flowing_through_a_model_update_and_a_rollback(
    served_model, updated_model, tmp_path
):
    original = json.loads((served_model / "config.json").read_text())["model_version"]
    assert original != UPDATED_VERSION
    # One model server worker per model: on a small machine both fleets load faster, and the
    # switch catches requests waiting for the worker (blue/green with two each is the runtime's
    # own test, tests/integration/local/test_endpoint_switch.py).
    with LocalStack(
        served_model, log_dir=tmp_path / "logs", visibility_timeout_s=30, endpoint_workers=1
    ) as stack:
        table, bucket = stack.table(), stack.facts.bucket
        s3 = stack.client("s3")
        tar_path = model_tarball(updated_model, tmp_path / "model.tar.gz")
        key = "dog-breeds/models/updated/model.tar.gz"
        s3.upload_file(str(tar_path), stack.model_bucket, key)
        first_config = stack.endpoint_config_name

        # Uploads before, during and after the update.
        with Uploader(stack, "uploads/update/") as uploader:
            while len(uploader.uploaded) < 5:
                time.sleep(0.1)
            # The compare below scores the newest classified uploads: five there first.
            wait_for_items(table, bucket, uploader.keys[:5], timeout_s=120)
            new_config, deployed = update_endpoint(
                stack,
                f"s3://{stack.model_bucket}/{key}",
                # compare first, on the uploads classified so far (no labels: agreement only)
                *("--compare-table", stack.facts.table, "--compare-sample", "5"),
            )
            described = wait_in_service(stack)
            time.sleep(4)
        assert (described["EndpointStatus"], described["EndpointConfigName"]) == (
            "InService",
            new_config,
        )
        assert "FailureReason" not in described
        keys = uploader.keys
        items = wait_for_items(table, bucket, keys, timeout_s=180)
        assert stack.wait_idle(60)
        (update,) = stack.updates
        assert (update.ok, update.config_name, update.previous_config_name) == (
            True,
            new_config,
            first_config,
        )
        during = [k for k, at in uploader.uploaded if update.changed_at <= at <= update.switched_at]

        # Every item to the new model, by the line deploy printed: make reprocess with the
        # stack's name and the moto server's URL, run as printed (polling every second, not 10).
        printed = [line.strip() for line in deployed.stdout.splitlines() if "make " in line]
        assert printed == [
            f'make reprocess STACK={stack.stack_name} ARGS="--all --wait '
            f'--endpoint-url {stack.moto_url}"'
        ]
        reprocess = make_as_printed(printed[0], "--poll-interval 1")
        assert reprocess.returncode == 0, reprocess.stdout + reprocess.stderr
        assert stack.wait_idle(60)
        reprocessed = read_items(table, bucket)

        # Rolled back: new uploads get the first model again.
        rolled = roll_back(stack)
        rolled_back = wait_in_service(stack)
        with Uploader(stack, "uploads/rollback/") as after_rollback:
            time.sleep(2)
        late = wait_for_items(table, bucket, after_rollback.keys, timeout_s=120)
        assert stack.wait_idle(60)
        dead_letters = stack.dead_letters()
        invocations = list(stack.endpoint.invocations)
        rollback = stack.updates[-1]

    # None lost, none twice (the table is keyed by object: one item per upload), none dead.
    lost = sorted(set(keys) - items.keys())
    errors = [(i.status, i.error_code) for i in invocations if i.status >= 500]
    print(
        f"\nmodel update under load: {len(keys)} uploads ({len(during)} during the update), "
        f"{len(items)} items, {len(lost)} lost, {len(errors)} 5xx from the endpoint; "
        f"switched {update.time_to_switch_s:.1f} s after UpdateEndpoint, old model drained of "
        f"{update.in_flight_at_switch} request(s) in flight in {update.drain_s:.2f} s; rollback "
        f"switched in {rollback.time_to_switch_s:.1f} s, drained of "
        f"{rollback.in_flight_at_switch} in {rollback.drain_s:.2f} s"
    )
    print(reprocess.stdout.strip().splitlines()[-4:])
    assert lost == []
    assert sorted(items) == sorted(keys)
    assert dead_letters == []
    assert errors == []
    assert {i.status for i in invocations} == {200}
    assert {item["status"] for item in items.values()} == {"PREDICTED"}

    # Before the switch: the old model; once the old one drained: the new; in between, either.
    switched = iso(update.switched_at)
    drained = iso(update.switched_at + timedelta(seconds=update.drain_s + SETTLE_S))
    before = [i for i in items.values() if i["predicted_at"] < switched]
    after = [i for i in items.values() if i["predicted_at"] > drained]
    assert before and after, (switched, sorted(i["predicted_at"] for i in items.values()))
    assert {version_of(i) for i in before} == {original}
    assert {version_of(i) for i in after} == {UPDATED_VERSION}
    assert {version_of(i) for i in items.values()} <= {original, UPDATED_VERSION}

    # The reprocess brought every item to the new model, and said what changed.
    assert {version_of(i) for i in reprocessed.values()} == {UPDATED_VERSION}
    assert sorted(reprocessed) == sorted(keys)
    old_count = sum(version_of(i) == original for i in items.values())
    lines = reprocess.stdout.strip().splitlines()
    models_line = next(line for line in lines if line.startswith("models: "))
    assert models_line.endswith(f"→ {UPDATED_VERSION}: {len(keys)}")
    assert f"{original}: {old_count}" in models_line
    # Same weights, another version: no breed changes.
    assert f"breeds: 0 of {len(keys)} changed, {len(keys)} kept" in lines

    # What the launcher said: the compare (same weights: every sampled upload agrees), the
    # versions before and after, and the same for the rollback.
    print(deployed.stdout, rolled.stdout, sep="\n")
    assert re.search(r"^table sample\s+5\s+0\s+-\s+-\s+100\.0%\s+0$", deployed.stdout, re.M)
    assert f"model version:   {original} -> {UPDATED_VERSION}" in deployed.stdout
    assert f"model version:   {UPDATED_VERSION} -> {original}" in rolled.stdout

    # The rollback: InService on the first config, new uploads by the first model.
    assert (rolled_back["EndpointStatus"], rolled_back["EndpointConfigName"]) == (
        "InService",
        first_config,
    )
    assert (rollback.ok, rollback.config_name, rollback.previous_config_name) == (
        True,
        first_config,
        new_config,
    )
    assert sorted(k for k in late if k.startswith("uploads/rollback/")) == sorted(
        after_rollback.keys
    )
    assert {version_of(late[k]) for k in after_rollback.keys} == {original}


class StandIn:
    """A stand-in model that answers its name (read from the model.tar.gz it came from)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.closed = False

    def ping(self) -> bool:
        return not self.closed

    def invoke(self, body, content_type, accept="application/json", custom_attributes=None):
        if self.closed:
            return ContainerResponse(503, b"closed", "text/plain")
        return ContainerResponse(200, json.dumps({"model": self.name}).encode())

    def close(self) -> None:
        self.closed = True


def stand_in_tarball(name: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("name.txt")
        info.size = len(name)
        tar.addfile(info, io.BytesIO(name.encode()))
    return buffer.getvalue()


def test_an_update_whose_model_does_not_load_leaves_the_old_model_serving(tmp_path):
    made: list[StandIn] = []

    def load(model_dir: Path) -> StandIn:
        name = (model_dir / "name.txt").read_text()
        if name == "broken":
            raise RuntimeError("model_fn failed:\nno model.pth in /opt/ml/model")
        made.append(StandIn(name))
        return made[-1]

    first = StandIn("first")
    logs = tmp_path / "logs"
    with LocalStack(None, container=first, container_factory=load, log_dir=logs) as stack:
        s3 = stack.client("s3")
        url = {}
        for name in ("second", "broken", "third"):
            key = f"stand-ins/{name}/model.tar.gz"
            s3.put_object(Bucket=stack.model_bucket, Key=key, Body=stand_in_tarball(name))
            url[name] = f"s3://{stack.model_bucket}/{key}"
        runtime = boto3.client(
            "sagemaker-runtime",
            endpoint_url=stack.endpoint_url,
            region_name=stack.region,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

        def serving() -> str:
            answer = runtime.invoke_endpoint(EndpointName=stack.endpoint_name, Body=b"dog")
            return json.loads(answer["Body"].read())["model"]

        assert serving() == "first"
        second = api_update(stack, url["second"], "stand-in-second")
        assert wait_in_service(stack)["EndpointConfigName"] == second
        assert serving() == "second"
        assert not first.closed  # the caller's container: the caller closes it

        api_update(stack, url["broken"], "stand-in-broken")
        broken = wait_in_service(stack)
        assert (broken["EndpointStatus"], broken["EndpointConfigName"]) == ("InService", second)
        assert broken["FailureReason"] == (
            f"the model {url['broken']} did not load: model_fn failed: no model.pth in "
            "/opt/ml/model"
        )
        assert serving() == "second"

        missing = f"s3://{stack.model_bucket}/stand-ins/nothing-here/model.tar.gz"
        api_update(stack, missing, "stand-in-missing")
        gone = wait_in_service(stack)
        assert gone["EndpointConfigName"] == second
        assert gone["FailureReason"].startswith(f"the model {missing} did not load: ")
        assert serving() == "second"

        third = api_update(stack, url["third"], "stand-in-third")
        assert wait_in_service(stack)["EndpointConfigName"] == third
        assert serving() == "third"
        roll_to(stack, second)  # the rollback: the previous config's model, loaded again
        rolled_back = wait_in_service(stack)
        assert (rolled_back["EndpointConfigName"], "FailureReason" in rolled_back) == (
            second,
            False,
        )
        assert serving() == "second"
        updates = list(stack.updates)
        # The stack closes what it made once switched away from it, the rest when it stops.
        assert [m.closed for m in made] == [True, True, False]

    assert [m.closed for m in made] == [True, True, True]
    assert [(u.config_name, u.ok) for u in updates] == [
        (second, True),
        ("stand-in-broken", False),
        ("stand-in-missing", False),
        (third, True),
        (second, True),
    ]
    log = (logs / STACK_LOG).read_text().splitlines()
    assert len(log) == 5
    assert "stand-in-broken failed: the model" in log[1]
    assert "switched" in log[4] and "drained of its 0 request(s) in flight" in log[4]
