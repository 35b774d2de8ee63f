"""The parity environments: Python 3.12 venvs holding what the SageMaker images carry.

Every version comes from the launchers' constants (``training.launch.jobs`` and
``training.launch.endpoint``), next to the framework version the estimator and model ask for, so
a bump there rebuilds the environment here. Each venv lives in ``.venv/parity/NAME-KEY``: the key
hashes the spec and the requirements files it installs, and a stamp file marks a finished build,
so later runs reuse it. Nothing here touches the development venv.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from training.launch import endpoint, jobs

REPO_ROOT = Path(__file__).resolve().parents[2]
PARITY_DIR = REPO_ROOT / ".venv" / "parity"
CONTAINER_DIR = REPO_ROOT / "training" / "container"
TRAINING_REQUIREMENTS = CONTAINER_DIR / "requirements.txt"
READY_STAMP = ".parity-ready"

# The images carry these and our code (through smdebug) needs them, but neither it nor smdebug
# declares them: smdebug imports distutils (setuptools' shim on 3.12), requests, pandas, psutil.
# The 2.8 training image's pandas is 2.x; pandas 3 does not run on the numpy<2 that smdebug needs.
TRAINING_IMAGE_EXTRAS = ("setuptools", "requests", "pandas<3", "psutil")
# The inference toolkit imports pkg_resources (gone from setuptools 81) and TorchServe imports
# yaml without declaring it; the image carries both.
SERVING_IMAGE_EXTRAS = ("setuptools<81", "pyyaml", "psutil")


@dataclass(frozen=True)
class EnvSpec:
    """One venv: an interpreter version, then pip installs in order (each a list of arguments)."""

    name: str
    python: str
    installs: tuple[tuple[str, ...], ...]
    # Files whose contents the installs read: part of the cache key.
    inputs: tuple[Path, ...] = field(default=())

    def key(self) -> str:
        digest = hashlib.sha256(
            json.dumps({**asdict(self), "inputs": [str(p) for p in self.inputs]}).encode()
        )
        for path in self.inputs:
            digest.update(path.read_bytes())
        return digest.hexdigest()[:12]

    def directory(self) -> Path:
        return PARITY_DIR / f"{self.name}-py{self.python}-{self.key()}"


def training_spec() -> EnvSpec:
    """The PyTorch training image: torch and torchvision at its versions, what it carries for
    smdebug, then ``requirements.txt`` over them as SageMaker installs it before ``train.py``."""
    return EnvSpec(
        name="training",
        python=jobs.TRAINING_PYTHON,
        installs=(
            (
                f"torch=={jobs.TRAINING_FRAMEWORK_VERSION}",
                f"torchvision=={jobs.TRAINING_TORCHVISION_VERSION}",
                *TRAINING_IMAGE_EXTRAS,
            ),
            ("-r", str(TRAINING_REQUIREMENTS)),
        ),
        inputs=(TRAINING_REQUIREMENTS,),
    )


def serving_spec() -> EnvSpec:
    """The PyTorch inference image: torch, torchvision, the SageMaker PyTorch inference toolkit
    and TorchServe at its versions. The artifact's ``code/requirements.txt`` is not installed here:
    the toolkit installs it itself when the model server starts, as in the container."""
    return EnvSpec(
        name="serving",
        python=endpoint.INFERENCE_PYTHON,
        installs=(
            (
                f"torch=={endpoint.INFERENCE_FRAMEWORK_VERSION}",
                f"torchvision=={endpoint.INFERENCE_TORCHVISION_VERSION}",
                f"sagemaker-pytorch-inference=={endpoint.INFERENCE_TOOLKIT_VERSION}",
                f"torchserve=={endpoint.INFERENCE_TORCHSERVE_VERSION}",
                f"torch-model-archiver=={endpoint.INFERENCE_TORCHSERVE_VERSION}",
                *SERVING_IMAGE_EXTRAS,
            ),
        ),
    )


class EnvError(RuntimeError):
    """An environment could not be built (no interpreter, pip failed)."""


def find_python(version: str) -> Path:
    """pyenv's ``~/.pyenv/versions/X.Y.*``, else ``pythonX.Y`` on PATH; one that really runs
    (a pyenv shim on PATH fails when that version is not selected)."""
    candidates = sorted(
        glob.glob(os.path.expanduser(f"~/.pyenv/versions/{version}.*/bin/python{version}")),
        reverse=True,
    )
    candidates.append(shutil.which(f"python{version}"))
    for candidate in filter(None, candidates):
        probe = subprocess.run(
            [candidate, "-c", "import sys; print(sys.executable)"], capture_output=True, text=True
        )
        if probe.returncode == 0:
            return Path(probe.stdout.strip())
    raise EnvError(f"no python{version} in ~/.pyenv/versions or on PATH: install it first")


def clean_environ(**extra: str) -> dict[str, str]:
    """The environment for a parity process: nothing of the development venv leaks in."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")
    }
    venv_bin = str(REPO_ROOT / ".venv" / "bin")
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p != venv_bin)
    env.update(extra)
    return env


def ensure(spec: EnvSpec) -> Path:
    """The spec's venv, built on first use; returns its python."""
    venv = spec.directory()
    python = venv / "bin" / "python"
    if (venv / READY_STAMP).is_file():
        print(f"  {spec.name}: cached {venv.relative_to(REPO_ROOT)}", flush=True)
        return python
    if venv.exists():
        shutil.rmtree(venv)  # a build that did not finish
    venv.parent.mkdir(parents=True, exist_ok=True)
    base = find_python(spec.python)
    print(f"  {spec.name}: building {venv.relative_to(REPO_ROOT)} from {base}", flush=True)
    log_path = venv.parent / f"{venv.name}.log"
    with open(log_path, "w") as log:
        run_logged([str(base), "-m", "venv", str(venv)], log)
        run_logged([str(python), "-m", "pip", "install", "--upgrade", "pip"], log)
        for args in spec.installs:
            started = time.perf_counter()
            run_logged([str(python), "-m", "pip", "install", *args], log)
            print(f"    pip install {' '.join(args)}: {time.perf_counter() - started:.0f} s")
    (venv / READY_STAMP).write_text(json.dumps(asdict(spec), default=str) + "\n")
    return python


def run_logged(command: list[str], log) -> None:
    log.write("$ " + " ".join(command) + "\n")
    log.flush()
    done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=clean_environ())
    if done.returncode != 0:
        raise EnvError(f"{' '.join(command[-3:])} failed ({done.returncode}); see {log.name}")


def pip_check(python: Path) -> str | None:
    """``pip check``'s complaints, None when it is content (reported, not fatal: the images
    themselves are not always consistent)."""
    done = subprocess.run(
        [str(python), "-m", "pip", "check"], capture_output=True, text=True, env=clean_environ()
    )
    return None if done.returncode == 0 else (done.stdout + done.stderr).strip()


def versions(python: Path, distributions: list[str]) -> dict[str, str | None]:
    """The interpreter's version and each distribution's installed version (None if absent)."""
    code = (
        "import importlib.metadata as m, json, platform, sys\n"
        "def v(d):\n"
        "    try:\n"
        "        return m.version(d)\n"
        "    except m.PackageNotFoundError:\n"
        "        return None\n"
        "print(json.dumps({'python': platform.python_version(),"
        " **{d: v(d) for d in sys.argv[1:]}}))\n"
    )
    out = subprocess.run(
        [str(python), "-c", code, *distributions],
        capture_output=True,
        text=True,
        check=True,
        env=clean_environ(),
    )
    return json.loads(out.stdout)
