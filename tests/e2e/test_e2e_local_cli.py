"""`make local` (``python -m local up``), as a user runs it: the stack starts, prints copy-paste
AWS CLI and operator lines, and those lines (run unchanged through a shell, with the venv's AWS
CLI and Python) upload an image, read its prediction back, look into the dead-letter queue,
redrive it and reprocess the table. Ctrl-C stops everything and frees the ports."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
READY = "Running. Ctrl-C to stop."

pytestmark = pytest.mark.slow


def _start(served_model: Path, workdir: Path) -> tuple[subprocess.Popen, list[str]]:
    command = [sys.executable, "-m", "local", "up", "--model", str(served_model)]
    command += ["--workdir", str(workdir)]
    proc = subprocess.Popen(
        command,
        cwd=REPO_ROOT,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if line.strip() == READY:
            return proc, lines
    proc.kill()
    raise AssertionError("the stack never said it was running:\n" + "\n".join(lines))


def _command_after(lines: list[str], comment: str) -> str:
    """The command printed on the line after ``# <comment>``."""
    index = lines.index(f"# {comment}")
    return lines[index + 1]


def _shell(command: str, cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(
        command, shell=True, cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _port_open(url: str) -> bool:
    host, port = re.match(r"https?://([^:/]+):(\d+)", url).groups()
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((host, int(port))) == 0


def test_make_local_prints_cli_lines_that_work_as_written(served_model, tiny_dataset, tmp_path):
    classes = json.loads((served_model / "classes.json").read_text())
    # An image of the breed the printed query asks for (the first class), named as the lines say.
    first_class_dir = sorted((tiny_dataset / "test").iterdir())[0]
    shutil.copy(sorted(first_class_dir.glob("*.jpg"))[0], tmp_path / "my_dog.jpg")

    proc, lines = _start(served_model, tmp_path / "local")
    try:
        exports = [line for line in lines if line.startswith("export ")]
        env = dict(os.environ)
        for line in exports:
            name, value = line.removeprefix("export ").split("=", 1)
            env[name] = value
        # Nothing of the test's own AWS configuration may leak into what the user runs.
        for name in [n for n in env if n.startswith("AWS_ENDPOINT_URL")]:
            del env[name]
        upload = _command_after(lines, "upload an image: the function classifies it")
        assert shlex.split(upload)[0].endswith("aws")
        _shell(upload, tmp_path, env)

        get_item = _command_after(lines, "its prediction")
        item = {}
        deadline = time.monotonic() + 60
        while not item and time.monotonic() < deadline:
            item = json.loads(_shell(get_item, tmp_path, env) or "{}").get("Item", {})
            time.sleep(0.5)
        assert item["status"]["S"] == "PREDICTED", item
        # my_dog.jpg is a test image of the first class, and the model gets every test image right.
        breed = item["breed"]["S"]
        assert breed == classes[0]

        query = _command_after(
            lines, "every upload predicted as one breed, newest first (GSI, no scan)"
        )
        assert json.dumps({":b": {"S": classes[0]}}) in query
        found = json.loads(_shell(query, tmp_path, env))["Items"]
        assert {i["key"]["S"] for i in found} == {"uploads/my_dog.jpg"}

        low = _command_after(
            lines, "predictions below the confidence threshold, newest first (GSI, no scan)"
        )
        found = json.loads(_shell(low, tmp_path, env))["Items"]
        # The uploaded test image is one the model is sure of (test accuracy 1.0, well above the
        # 0.5 threshold): it is not listed, and its item says so.
        assert float(item["probability"]["N"]) >= float(item["confidence_threshold"]["N"])
        assert "confidence" not in item
        assert {i["key"]["S"] for i in found} == set()

        dead_letters = _command_after(
            lines, "uploads that failed every delivery (dead-letter queue; looking hides nothing)"
        )
        assert not json.loads(_shell(dead_letters, tmp_path, env) or "{}").get("Messages")
        redrive = _command_after(
            lines, "once the cause is fixed: move them back to the upload queue"
        )
        assert shlex.split(redrive)[:3] == [sys.executable, "-m", "classify_ops"]
        _shell(redrive, tmp_path, env)  # nothing to move: it says so and succeeds

        reprocess = _command_after(
            lines, "classify every stored upload again (after a model update) and wait for it"
        )
        _shell(reprocess, tmp_path, env)
        again = json.loads(_shell(get_item, tmp_path, env))["Item"]
        assert again["reprocess_id"]["S"] and again["breed"]["S"] == breed

        scan = _command_after(lines, "everything in the table")
        assert [i["key"]["S"] for i in json.loads(_shell(scan, tmp_path, env))["Items"]] == [
            "uploads/my_dog.jpg"
        ]

        invoke = _command_after(lines, "the endpoint directly (SageMaker runtime API)")
        answer = _shell(invoke, tmp_path, env)
        assert f'"breed": "{breed}"' in answer or f'"breed":"{breed}"' in answer, answer
        urls = re.findall(r"--endpoint-url (\S+)", "\n".join(lines))
        assert urls and all(_port_open(url) for url in urls)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            rest, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()  # leave no stack behind; the assertion below reports it
            rest = proc.communicate()[0] + "\n(did not stop within 60 s of Ctrl-C)"
    assert proc.returncode == 0, rest
    assert "stopped" in rest
    assert not any(_port_open(url) for url in set(urls))
