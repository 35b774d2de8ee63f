"""The Lambda function as `sam build` packs it, on python3.12, through the offline stack.

``local.function.build`` builds the package with the SAM CLI for the runtime's Python; the offline
stack deploys that zip into moto and runs it in its sandboxes with python3.12. Here a trained
artifact is served and a good image, a non-image and an empty object are uploaded: each must end
as its item, and the sandbox's log must name Python 3.12.
"""

from __future__ import annotations

import io
import re
import subprocess
import time
from pathlib import Path
from typing import Any

from PIL import Image

from local.demo import default_model
from local.function.build import RUNTIME_PYTHON, build_function
from local.stack import LocalStack

PACKAGES = ("boto3", "botocore", "aws_lambda_powertools", "pillow")


def _versions(code_dir: Path) -> dict[str, str]:
    """Versions of what the package holds, from its ``*.dist-info`` folders."""
    found = {}
    for info in code_dir.glob("*.dist-info"):
        name, _, version = info.name.removesuffix(".dist-info").partition("-")
        if name.lower() in PACKAGES:
            found[name.lower()] = version
    return found


def _jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (96, 80), (180, 120, 60)).save(out, format="JPEG")
    return out.getvalue()


def reproduce(workdir: Path, model_tar: Path | None) -> dict[str, Any]:
    built = build_function()
    report: dict[str, Any] = {"ok": False, "runtime": f"python{RUNTIME_PYTHON}", "note": built.note}
    if not built.built:
        report["problems"] = [built.note]
        return report
    version = subprocess.run(
        [built.python, "--version"], capture_output=True, text=True, check=True
    ).stdout.strip()
    report.update(python=version.split()[-1], **_versions(built.code_dir))
    if model_tar is None:
        report["problems"] = ["no trained artifact to serve"]
        return report
    model_dir = default_model.extract(model_tar, workdir / "model")
    log_dir = workdir / "logs"
    uploads = {"dog.jpg": _jpeg(), "notes.jpg": b"not an image", "empty.jpg": b""}
    with LocalStack(model_dir, function=built, log_dir=log_dir) as stack:
        assert stack.facts is not None
        s3, prefix = stack.client("s3"), stack.facts.parameters.get("UploadPrefix", "uploads/")
        started = time.perf_counter()
        for name, body in uploads.items():
            s3.put_object(Bucket=stack.facts.bucket, Key=f"{prefix}{name}", Body=body)
        idle = stack.wait_idle(timeout=120)
        items = {i["key"].removeprefix(prefix): i for i in stack.table().scan()["Items"]}
        report["seconds_to_items"] = round(time.perf_counter() - started, 1)
    outcome = {name: (item["status"], item.get("error_type")) for name, item in items.items()}
    report["items"] = {name: "/".join(filter(None, o)) for name, o in outcome.items()}
    logs = "".join(p.read_text() for p in sorted(log_dir.glob("sandbox-*.log")))
    runtimes = set(re.findall(r"INIT_START Runtime Version: (python:\d+\.\d+)", logs))
    report["sandbox_runtimes"] = sorted(runtimes)
    problems = []
    if not idle:
        problems.append("the stack did not go idle within 120 s")
    if outcome.get("dog.jpg", ("",))[0] != "PREDICTED":
        problems.append(f"dog.jpg: {outcome.get('dog.jpg')}")
    for name in ("notes.jpg", "empty.jpg"):
        if outcome.get(name, ("",))[0] != "FAILED":
            problems.append(f"{name}: {outcome.get(name)}")
    if runtimes != {f"python:{RUNTIME_PYTHON}"}:
        problems.append(f"sandboxes ran {sorted(runtimes)}, not python:{RUNTIME_PYTHON}")
    report["problems"] = problems
    report["ok"] = not problems
    return report
