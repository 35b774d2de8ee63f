"""The Debugger hook as a training job gets it: the configuration SageMaker writes from the
launcher's own CreateTrainingJob request (rules' collections included), not a hand-written one.
``make parity`` runs the same in the training image's Python 3.12 runtime."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from dog_breeds.data.synthetic import make_dataset
from dog_breeds.training import trainer
from local.parity import dry_run
from training.launch import jobs


@pytest.fixture(scope="module")
def hook_config(tmp_path_factory) -> dict:
    workdir = tmp_path_factory.mktemp("request")
    request = dry_run.training_job({"epochs": "3"}, workdir).one("CreateTrainingJob")
    return request["DebugHookConfig"]


def test_the_launchers_hook_config_names_the_losses_at_the_launchers_intervals(hook_config):
    losses = [c for c in hook_config["CollectionConfigurations"] if c["CollectionName"] == "losses"]
    assert losses == [
        {
            "CollectionName": "losses",
            "CollectionParameters": {
                "train.save_interval": str(jobs.TRAIN_SAVE_INTERVAL),
                "eval.save_interval": str(jobs.EVAL_SAVE_INTERVAL),
            },
        }
    ]


def test_training_under_the_launchers_hook_config_records_train_and_eval_losses(
    hook_config, monkeypatch, tmp_path
):
    from smdebug import modes
    from smdebug.trials import create_trial

    # Where SageMaker puts the file and the tensors; only the folder moves.
    config = {**hook_config, "LocalPath": str(tmp_path / "tensors")}
    config_path = tmp_path / "debughookconfig.json"
    config_path.write_text(json.dumps(config))
    monkeypatch.setenv(trainer.SMDEBUG_CONFIG_ENV, str(config_path))
    data = make_dataset(tmp_path / "data", 2, (4, 2, 2), 32, seed=1)
    args = [
        "--data-dir", str(data), "--model-dir", str(tmp_path / "model"), "--epochs", "3",
        "--pretrained", "false", "--batch_size", "2", "--image_size", "32", "--num_workers", "0",
        "--hidden_size", "16", "--patience", "0", "--cpu_form", "false",
    ]  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()):
        summary = trainer.main(args)

    assert summary["smdebug"] == str(tmp_path / "tensors")
    trial = create_trial(str(tmp_path / "tensors"))
    loss = trial.tensor("CrossEntropyLoss_output_0")
    # 3 epochs x (8 images / batch 2) = steps 0..11, saved every TRAIN_SAVE_INTERVAL;
    # 3 epochs x (4 validation images / batch 2), every one saved.
    assert loss.steps(mode=modes.TRAIN) == list(range(0, 12, jobs.TRAIN_SAVE_INTERVAL))
    assert loss.steps(mode=modes.EVAL) == list(range(6))
    assert Path(tmp_path / "model" / "model.pth").is_file()
