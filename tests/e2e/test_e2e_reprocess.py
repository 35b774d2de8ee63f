"""A model update, then `classify_ops reprocess`, through the whole offline stack: every upload
is classified again by the endpoint as it is now, each item's model changes, and the newest-wins
rule still holds (the items keep their uploads' sequencers, a late duplicate changes nothing)."""

from __future__ import annotations

import json
import shutil

import pytest

from local.demo.uploads import Upload, read_items, synthetic_images, upload_all, wait_for_items
from local.stack import LocalStack

pytestmark = pytest.mark.slow

UPLOADS = 12


@pytest.fixture(scope="module")
def models(served_model, tmp_path_factory):
    """The served model and an "update" of it: the same artifact under another model version,
    as a retrained model would carry (its config.json names its version)."""
    updated = tmp_path_factory.mktemp("updated") / "model"
    shutil.copytree(served_model, updated)
    config = json.loads((updated / "config.json").read_text())
    config["model_version"] = "updated-model"
    (updated / "config.json").write_text(json.dumps(config))
    original = json.loads((served_model / "config.json").read_text())["model_version"]
    assert original != "updated-model"
    return served_model, updated, original


def test_a_reprocess_after_a_model_update_changes_every_items_model(models, classify_ops, tmp_path):
    from local.endpoint.container import ToolkitContainer

    served, updated, original_version = models
    uploads = [
        Upload(f"uploads/reprocess/{i:02d}.jpg", body)
        for i, body in enumerate(synthetic_images(UPLOADS, size=64, seed=7))
    ]
    with (
        ToolkitContainer(updated) as new_model,
        ToolkitContainer(served) as old_model,
        LocalStack(None, container=old_model, log_dir=tmp_path / "logs") as stack,
    ):
        upload_all(stack.client("s3"), stack.facts.bucket, uploads)
        keys = [u.key for u in uploads]
        before = wait_for_items(stack.table(), stack.facts.bucket, keys, timeout_s=300)
        assert {i["model"]["version"] for i in before.values()} == {original_version}

        # The endpoint is updated to the new model (UpdateEndpoint), then the table reprocessed.
        stack.endpoint.endpoints[stack.endpoint_name] = new_model
        done = classify_ops(stack, "reprocess", "--all", "--run-id", "rp-e2e", "--wait")
        assert done.returncode == 0, done.stdout + done.stderr
        assert stack.wait_idle(120)
        after = read_items(stack.table(), stack.facts.bucket)
        dead_letters = stack.dead_letters()

    assert sorted(after) == sorted(keys)
    assert dead_letters == []
    for key, item in after.items():
        assert item["model"]["version"] == "updated-model", key
        assert item["reprocess_id"] == "rp-e2e"
        # Same upload, same identity: a late duplicate of its event stays a no-op.
        for same in ("sequencer", "version_id", "etag", "event_time"):
            assert item[same] == before[key][same]
        assert item["predicted_at"] > before[key]["predicted_at"]
