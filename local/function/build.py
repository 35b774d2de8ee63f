"""The function as ``sam build`` packs it, run on the runtime's Python, for the offline stack.

On Lambda the function is what ``sam build`` put in ``.aws-sam/build/ClassifyUploadFunction``:
``classify_upload/`` beside the dependencies ``requirements.txt`` pins, installed for python3.12,
run by python3.12. ``build_function()`` makes exactly that here (the SAM CLI from
``.venv/tools/sam``, pyenv's or the system's python3.12 on its ``PATH``), cached under
``.venv/sam-build`` until the template, the function's folder or the interpreter change. Where no
python3.12 or no SAM CLI can be had, it says so in one line and the offline stack falls back to the
source folder on the development interpreter.
"""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from local.aws.package import zip_code

REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = REPO_ROOT / "template.yaml"
FUNCTION_DIR = REPO_ROOT / "lambdas" / "classify_upload"
FUNCTION_LOGICAL_ID = "ClassifyUploadFunction"
SAM_CLI = REPO_ROOT / ".venv" / "tools" / "sam" / "bin" / "sam"
BUILD_ROOT = REPO_ROOT / ".venv" / "sam-build"
RUNTIME_PYTHON = "3.12"  # template.yaml's Globals.Function.Runtime (a test keeps them equal)


@dataclass(frozen=True)
class BuiltFunction:
    """Where the function's code is and which interpreter runs it; ``note`` says how, in a line."""

    code_dir: Path
    python: str
    built: bool  # False: the fallback (source folder, development interpreter)
    note: str
    package: Path | None = None  # code_dir zipped as `sam deploy` uploads it (built only)


def find_runtime_python(version: str = RUNTIME_PYTHON) -> str | None:
    """python3.12 on PATH, else pyenv's, as ``make build`` looks for it."""
    candidates = [shutil.which(f"python{version}")]
    candidates += sorted(
        glob.glob(os.path.expanduser(f"~/.pyenv/versions/{version}.*/bin/python{version}"))
    )
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            probe = subprocess.run(
                [candidate, "-c", "import sys; print(sys.executable)"],
                capture_output=True,
                text=True,
                check=False,
            )
            if probe.returncode == 0:
                return probe.stdout.strip()
    return None


def _fingerprint(python: str) -> str:
    """What the build depends on: the template, every file of the function's folder, the Python."""
    digest = hashlib.sha256(TEMPLATE.read_bytes())
    for path in sorted(FUNCTION_DIR.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(FUNCTION_DIR)).encode())
            digest.update(path.read_bytes())
    digest.update(python.encode())
    return digest.hexdigest()


def fallback(reason: str) -> BuiltFunction:
    return BuiltFunction(
        code_dir=FUNCTION_DIR,
        python=sys.executable,
        built=False,
        note=f"{reason}: the function runs from {FUNCTION_DIR.relative_to(REPO_ROOT)} on "
        f"Python {sys.version_info.major}.{sys.version_info.minor} instead of sam build's output",
    )


def build_function(build_root: Path = BUILD_ROOT, sam: Path = SAM_CLI) -> BuiltFunction:
    """``sam build`` of the function (cached), or the fallback with its one-line reason."""
    python = find_runtime_python()
    if python is None:
        return fallback(f"no python{RUNTIME_PYTHON} found (PATH, ~/.pyenv)")
    if not sam.is_file():
        return fallback(f"no SAM CLI at {sam.relative_to(REPO_ROOT)} (make install puts it there)")
    code_dir = build_root / FUNCTION_LOGICAL_ID
    stamp = build_root / ".fingerprint"
    package = build_root / f"{FUNCTION_LOGICAL_ID}.zip"
    fingerprint = _fingerprint(python)
    if not (stamp.is_file() and stamp.read_text() == fingerprint and package.is_file()):
        shutil.rmtree(build_root, ignore_errors=True)
        env = {
            **os.environ,
            "PATH": f"{Path(python).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "SAM_CLI_TELEMETRY": "0",
        }
        run = subprocess.run(
            [str(sam), "build", FUNCTION_LOGICAL_ID, "--template-file", str(TEMPLATE),
             "--build-dir", str(build_root), "--cache-dir", str(build_root.parent / "sam-cache")],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )  # fmt: skip
        if run.returncode != 0:
            last = (run.stderr or run.stdout).strip().splitlines()[-1:] or ["no output"]
            return fallback(f"sam build failed ({last[0]})")
        package.write_bytes(zip_code(code_dir))
        stamp.write_text(fingerprint)
    return BuiltFunction(
        code_dir=code_dir,
        python=python,
        built=True,
        package=package,
        note=f"the function runs sam build's output ({code_dir.relative_to(REPO_ROOT)}) "
        f"on {python}",
    )
