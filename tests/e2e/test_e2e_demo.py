"""`make demo`'s program (``python -m local demo``), as a user runs it, on the session's trained
model (training itself is covered by tests/integration/training; here it is skipped with
``--model`` to keep the suite fast)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from local.function.build import find_runtime_python

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_demo_accounts_for_every_upload_and_ends_with_its_json_line(
    served_model, tiny_dataset, tiny_training, tmp_path
):
    test_images = sorted((tiny_dataset / "test").glob("*/*.jpg"))
    command = [
        sys.executable,
        "-m",
        "local",
        "demo",
        "--model",
        str(served_model),
        "--data-dir",
        str(tiny_dataset),
        "--workdir",
        str(tmp_path / "demo"),
    ]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    done = subprocess.run(
        command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=240
    )
    output = done.stdout.strip().splitlines()
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]

    result = json.loads(output[-1])
    assert result["uploaded"] == len(test_images) + 4  # + zero bytes, text, truncated, odd key
    assert result["items"] == result["uploaded"]
    assert result["lost"] == 0 and result["unexpected_status"] == []
    assert result["failed"] == 3 and result["predicted"] == len(test_images) + 1
    # make demo's figure (docs/offline-stack.md): every test image right through the whole
    # stack, exactly what the model scored on them when it was trained (the stack changes no
    # prediction).
    assert result["accuracy"] == tiny_training.summary["test_accuracy"] == 1.0
    # The function ran as `sam build` packs it, on the runtime's python3.12, wherever one can be
    # had (the fallback, the source on this interpreter, only where it cannot).
    runtime_python = find_runtime_python()
    assert result["function"] == (
        {"built": True, "python": "3.12"}
        if runtime_python
        else {"built": False, "python": f"{sys.version_info.major}.{sys.version_info.minor}"}
    )
    assert {"dataset", "train", "package", "stack", "upload", "results", "total"} <= set(
        result["seconds"]
    )
    # What the user reads above the JSON line: the stages, the table and the summary.
    text = done.stdout
    assert "== 6/6 results" in text and "PREDICTED" in text and "FAILED" in text
    assert "uploads/mon chien café (1)+copie.jpg" in text
    # Everything it started is gone: the workdir's sandboxes logged and exited.
    assert (tmp_path / "demo" / "model.tar.gz").is_file()
    assert list((tmp_path / "demo" / "logs").glob("sandbox-*.log"))
    # The endpoint ran as on an ml.t2.medium: two model server workers, each loaded OpenVINO.
    endpoint_log = (tmp_path / "demo" / "logs" / "endpoint.log").read_text()
    loaded = re.findall(r"^worker (\d+): serving runtime: openvino-", endpoint_log, re.MULTILINE)
    assert len(loaded) == len(set(loaded)) == 2, endpoint_log[-2000:]
