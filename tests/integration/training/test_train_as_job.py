"""train.py run as a SageMaker training job runs it: a subprocess of its own, the toolkit's
``SM_*`` environment for the launcher's instance, and no flag of a test's recipe.

The data is a reduced generated set (2 classes, 8/4/4 images), for time; everything else is
train.py's defaults (224 px, 10 epochs, ImageNet weights, ``--num_workers`` from SM_NUM_CPUS,
the OpenVINO and int8 export) or the launcher's own hyperparameters. The ImageNet weights are a
stand-in (torchvision's resnet50 at random init) in TORCH_HOME, where torchvision looks first:
nothing downloads here. A job whose script exits non-zero is Failed on SageMaker, whatever it
wrote, so the exit code is the first assertion.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torchvision import models

from dog_breeds.artifact import cpu_form
from dog_breeds.artifact.serving_code import SOURCE_DIR
from dog_breeds.data.synthetic import make_dataset
from dog_breeds.model import network
from local.parity import envs, training
from training.launch import jobs

# The launcher's default training instance (``training.launch.stages.flags.job_options``).
INSTANCE = jobs.GPU_TRAINING_INSTANCE
CPUS, GPUS = jobs.INSTANCE_RESOURCES[INSTANCE]


@pytest.fixture(scope="module")
def torch_home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("torch-home")
    # torchvision's cache: $TORCH_HOME/hub/checkpoints/<the weights' file name>
    weights = home / "hub" / "checkpoints" / network.cached_weights_path().name
    weights.parent.mkdir(parents=True)
    torch.save(models.resnet50().state_dict(), weights)
    return home


@pytest.fixture(scope="module")
def job_dataset(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("job") / "data", 2, (8, 4, 4), 64, seed=3)


def run_as_job(
    workdir: Path, data: Path, torch_home: Path, hyperparameters: dict
) -> tuple[subprocess.CompletedProcess, Path]:
    """``python train.py --name value ...`` from the source dir, as the training toolkit runs it."""
    opt_ml = workdir / "opt" / "ml"
    (opt_ml / "model").mkdir(parents=True)
    (opt_ml / "input" / "data").mkdir(parents=True)
    (opt_ml / "input" / "data" / training.CHANNEL).symlink_to(data)
    env = envs.clean_environ(
        PYTHONUNBUFFERED="1",
        TORCH_HOME=str(torch_home),
        **training.sm_environment(opt_ml, hyperparameters, "job", INSTANCE),
    )
    command = [sys.executable, "train.py", *training.to_cmd_args(hyperparameters)]
    done = subprocess.run(
        command, cwd=SOURCE_DIR, env=env, capture_output=True, text=True, timeout=900
    )
    return done, opt_ml / "model"


def assert_completed_with_its_artifact(done: subprocess.CompletedProcess, model_dir: Path) -> dict:
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["model_dir"] == str(model_dir)
    assert summary["images"] == {"train": 16, "valid": 8, "test": 8}
    # The default workers ran: min(4, the instance's vCPUs), and none outlived training.
    assert summary["num_workers"] == min(4, CPUS) > 0
    assert "loader workers still running" not in done.stderr
    assert {"model.pth", "config.json", "classes.json"} <= {p.name for p in model_dir.iterdir()}
    ir_dir = model_dir / cpu_form.OPENVINO_DIR
    assert (ir_dir / cpu_form.IR_XML).is_file() and (ir_dir / "model.bin").is_file()
    meta = json.loads((ir_dir / cpu_form.EXPORT_META).read_text())
    config = json.loads((model_dir / "config.json").read_text())
    assert config["image_size"] == meta["image_size"] == 224  # train.py's default size
    int8 = meta["int8"]
    # Quantized and judged on the validation split; the int8 IR ships exactly when the guard says.
    assert int8["calibration_images"] == 16 and int8["valid_images"] == 8, int8
    assert (ir_dir / cpu_form.INT8_IR_XML).is_file() == int8["shipped"]
    return summary


def test_train_py_with_its_own_defaults_exits_0_with_the_artifact_and_its_openvino_forms(
    tmp_path, job_dataset, torch_home
):
    """No hyperparameter at all: the data and model paths come from SM_CHANNEL_TRAINING and
    SM_MODEL_DIR, as in a job. This exited 139 after its summary (DataLoader workers + int8)."""
    done, model_dir = run_as_job(tmp_path, job_dataset, torch_home, {})
    summary = assert_completed_with_its_artifact(done, model_dir)
    assert summary["epochs"] >= 1 and summary["device"] == "cpu"


def test_a_tuning_trial_with_the_launchers_hyperparameters_exits_0(
    tmp_path, job_dataset, torch_home
):
    """``python -m training.launch tune``'s static hyperparameters and one point of its ranges,
    taken from the launcher's own dry-run request; only the epochs are fewer (as in make parity)."""
    trial = training.tuning_trial_job(tmp_path / "request")
    assert trial.hyperparameters["epochs"] == str(jobs.DEFAULT_HYPERPARAMETERS["epochs"])
    hyperparameters = training.user_hyperparameters(
        training.decode_hyperparameters({**trial.hyperparameters, "epochs": str(training.EPOCHS)})
    )
    assert hyperparameters["pretrained"] == "true" and hyperparameters["unfreeze_stages"] == 1
    assert {"lr", "eps", "weight_decay", "batch_size"} <= set(hyperparameters)
    done, model_dir = run_as_job(tmp_path / "job", job_dataset, torch_home, hyperparameters)
    assert_completed_with_its_artifact(done, model_dir)
    assert "ignoring unknown arguments: --_tuning_objective_metric" in done.stderr
