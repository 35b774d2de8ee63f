"""The small default model: a generated dataset, the recipe that learns it, and its artifact.

Defined once here for everything that needs a model without the real dogImages set:
- ``python -m local demo`` (without ``--data-dir``) generates the dataset and runs
  ``training/container/train.py`` with the recipe in a subprocess, as a user would (``train``);
- ``python -m local up`` does the same when its workdir holds no model yet (``ensure_model``);
- the tests' session fixtures (``tests/conftest.py``) generate the same dataset and pass the same
  argument list (``train_args``) to ``dog_breeds.training.trainer.main`` in the test process.
``package`` and ``extract`` are what SageMaker does between training and serving: the model dir
becomes ``model.tar.gz`` and is untarred again where the endpoint loads it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dog_breeds.data import synthetic

REPO_ROOT = Path(__file__).resolve().parents[2]
TRAIN_SCRIPT = REPO_ROOT / "training" / "container" / "train.py"

# 4 classes, 24/6/6 train/valid/test images of 64 px: from random init about 1-2 s an epoch on
# 2 idle cores, test accuracy 1.0 in every seed tried (chance: 0.25).
CLASSES = 4
PER_CLASS = (24, 6, 6)
IMAGE_SIZE = 64
EPOCHS = 8
# From random init the whole network must train (a frozen random backbone stays at chance).
# --lr and --seed are train.py's defaults, written out so that the runs here keep them if those
# defaults change.
RECIPE = (
    "--pretrained", "false",
    "--image_size", str(IMAGE_SIZE),
    "--batch_size", "16",
    "--num_workers", "0",
    "--patience", "3",
    "--lr", "1e-3",
    "--seed", "0",
)  # fmt: skip


def make_dataset(root: Path, seed: int = 0) -> Path:
    """The dogImages layout (``train/ valid/ test/`` of ``NNN.Breed/*.jpg``) at ``root``, anew."""
    if root.exists():
        shutil.rmtree(root)
    return synthetic.make_dataset(root, CLASSES, PER_CLASS, IMAGE_SIZE, seed)


def train_args(
    data_dir: Path, model_dir: Path, epochs: int = EPOCHS, extra: Sequence[str] = RECIPE
) -> list[str]:
    """train.py's command line; ``extra`` (default: the recipe) follows the paths and epochs."""
    return [
        "--data-dir", str(data_dir),
        "--model-dir", str(model_dir),
        "--epochs", str(epochs),
        *extra,
    ]  # fmt: skip


def train(
    data_dir: Path, model_dir: Path, epochs: int = EPOCHS, extra: Sequence[str] = RECIPE
) -> dict[str, Any]:
    """Run ``training/container/train.py`` as a user would, streaming its progress; returns its
    summary (its last line)."""
    if model_dir.exists():
        shutil.rmtree(model_dir)
    command = [sys.executable, str(TRAIN_SCRIPT), *train_args(data_dir, model_dir, epochs, extra)]
    env = dict(os.environ, PYTHONUNBUFFERED="1", SAGEMAKER_SUPPRESS_V2_WARNING="1")
    print("  $ " + " ".join(command[1:]), flush=True)
    last = ""
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip("\n")
            if line.strip():
                last = line
                print("  | " + line, flush=True)
    if proc.returncode != 0:
        raise RuntimeError(f"train.py exited with {proc.returncode}")
    try:
        return json.loads(last)
    except json.JSONDecodeError as exc:
        raise RuntimeError(f"train.py's last line is not its JSON summary: {last!r}") from exc


def package(model_dir: Path, tar_path: Path) -> Path:
    """``model.tar.gz`` exactly as the SageMaker PyTorch serving container gets it."""
    # Imported here: it imports torch (seconds), which nothing else in this module needs.
    from dog_breeds.artifact.serving_code import package_model

    return package_model(model_dir, tar_path)


def extract(tar_path: Path, dest: Path) -> Path:
    """What SageMaker does before serving: untar into ``/opt/ml/model``."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    with tarfile.open(tar_path) as tar:
        tar.extractall(dest, filter="data")
    return dest


def ensure_model(workdir: Path, model: Path | None = None, epochs: int | None = None) -> Path:
    """A servable model dir for ``make local``: ``model`` (dir or tar), WORKDIR's, or train one."""
    serving = workdir / "serving" / "model"
    if model is not None:
        return extract(model, serving) if model.is_file() else model
    tar_path = workdir / "model.tar.gz"
    if not tar_path.exists():
        print(f"no model in {workdir}: training the small default first", flush=True)
        data_dir = make_dataset(workdir / "data")
        train(data_dir, workdir / "model", epochs or EPOCHS)
        package(workdir / "model", tar_path)
    return extract(tar_path, serving)
