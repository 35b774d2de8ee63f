"""Training a model as a user does: ``trainer.main`` with SageMaker-style flags."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import re
import sys
from pathlib import Path

import pytest

from dog_breeds.data.synthetic import make_dataset
from dog_breeds.training import metrics, trainer


def run_train(args: list[str]) -> tuple[dict, str]:
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        summary = trainer.main(args)
    return summary, stdout.getvalue()


@pytest.fixture(scope="module")
def micro_dataset(tmp_path_factory) -> Path:
    """2 classes, 4/2/2 images of 32 px: enough to exercise the machinery in a second or two."""
    return make_dataset(tmp_path_factory.mktemp("micro") / "data", 2, (4, 2, 2), 32, seed=1)


def micro_args(data: Path, model_dir: Path, *extra: str) -> list[str]:
    return [
        "--data-dir", str(data), "--model-dir", str(model_dir), "--pretrained", "false",
        "--batch_size", "4", "--image_size", "32", "--num_workers", "0", "--hidden_size", "16",
        "--cpu_form", "false", *extra,
    ]  # fmt: skip


def test_tiny_run_from_random_init_learns_the_classes(tiny_training):
    summary = tiny_training.summary
    assert summary["test_accuracy"] >= 0.9, summary  # chance is 0.25
    assert summary["epochs"] >= 1
    assert summary["images"] == {"train": 96, "valid": 24, "test": 24}
    assert summary["seconds"] > 0 and summary["device"] == "cpu"
    print(
        f"tiny run: test_accuracy={summary['test_accuracy']} seconds={summary['seconds']} "
        f"train_seconds={summary['train_seconds']} epochs={summary['epochs']}"
    )


def test_last_stdout_line_is_the_json_summary(tiny_training):
    last = tiny_training.stdout.strip().splitlines()[-1]
    assert json.loads(last) == json.loads(json.dumps(tiny_training.summary))
    assert {"test_accuracy", "test_loss", "epochs", "seconds"} <= set(json.loads(last))


def test_metric_lines_are_read_by_the_launchers_regexes(tiny_training):
    """What SageMaker's metric definitions (and so the tuner's objective) extract from the log."""
    found = {
        d["Name"]: [float(v) for v in re.findall(d["Regex"], tiny_training.stdout)]
        for d in metrics.METRIC_DEFINITIONS
    }
    epochs = tiny_training.summary["epochs"]
    for name in ("train:loss", "train:accuracy", "valid:loss", "valid:accuracy"):
        assert len(found[name]) == epochs, name
    assert found["test:loss"] == [pytest.approx(tiny_training.summary["test_loss"], abs=1e-6)]
    assert found["test:accuracy"] == [pytest.approx(tiny_training.summary["test_accuracy"])]
    assert metrics.OBJECTIVE_METRIC in found
    assert min(found["valid:loss"]) == pytest.approx(
        tiny_training.summary["best_valid_loss"], abs=1e-6
    )


def test_artifact_holds_weights_classes_and_config(trained_artifact):
    files = {p.name for p in trained_artifact.iterdir()}
    assert {"model.pth", "classes.json", "config.json"} <= files
    classes = json.loads((trained_artifact / "classes.json").read_text())
    assert classes == ["Affenpinscher", "Afghan_hound", "Airedale_terrier", "Akita"]
    config = json.loads((trained_artifact / "config.json").read_text())
    assert config["architecture"] == "resnet50" and config["num_classes"] == 4
    assert config["image_size"] == 64 and config["hidden_size"] == 256
    assert len(config["mean"]) == len(config["std"]) == 3
    digest = hashlib.sha256((trained_artifact / "model.pth").read_bytes()).hexdigest()
    assert config["model_version"] == digest[:12]


def test_sagemaker_environment_supplies_the_data_and_model_dirs(monkeypatch, tmp_path):
    monkeypatch.setenv("SM_CHANNEL_TRAINING", str(tmp_path / "data"))
    monkeypatch.setenv("SM_MODEL_DIR", str(tmp_path / "model"))
    args = trainer.parse_args(
        ["--lr", "3e-4", "--eps", "1e-9", "--weight_decay", "0.05", "--batch_size", "64",
         "--epochs", "2", "--hidden_size", "128", "--dropout", "0.2", "--pretrained", "True",
         "--unfreeze_stages", "1", "--sagemaker_program", "train.py"]
    )  # fmt: skip
    assert args.data_dir == tmp_path / "data" and args.model_dir == tmp_path / "model"
    assert (args.lr, args.eps, args.weight_decay, args.batch_size) == (3e-4, 1e-9, 0.05, 64)
    assert (args.epochs, args.hidden_size, args.dropout) == (2, 128, 0.2)
    assert args.pretrained is True and args.unfreeze_stages == 1


@pytest.mark.parametrize(
    ("text", "value"), [("true", True), ("True", True), ("1", True), ("false", False),
                        ("False", False), ("0", False)]
)  # fmt: skip
def test_boolean_hyperparameters_accept_sagemaker_spellings(text, value):
    assert trainer.str2bool(text) is value


def test_missing_data_dir_outside_sagemaker_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("SM_CHANNEL_TRAINING", raising=False)
    monkeypatch.delenv("SM_MODEL_DIR", raising=False)
    with pytest.raises(SystemExit, match="--data-dir"):
        trainer.parse_args([])


def test_checkpoints_resume_where_training_stopped(micro_dataset, tmp_path):
    """Spot training: a job restarted with the same checkpoint dir continues, not restarts."""
    checkpoints = tmp_path / "checkpoints"
    first, _ = run_train(
        micro_args(micro_dataset, tmp_path / "m1", "--epochs", "1", "--checkpoint-dir",
                   str(checkpoints), "--class_weights", "true")
    )  # fmt: skip
    assert first["resumed_from_epoch"] is None and first["epochs"] == 1
    assert (checkpoints / "last.pt").is_file() and (checkpoints / "best.pt").is_file()

    second, stdout = run_train(
        micro_args(micro_dataset, tmp_path / "m2", "--epochs", "2", "--checkpoint-dir",
                   str(checkpoints), "--class_weights", "true")
    )  # fmt: skip
    assert second["resumed_from_epoch"] == 1
    assert second["epochs"] == 2  # history carries epoch 1 over
    assert "epoch 1/2" not in stdout and "epoch 2/2" in stdout


def test_checkpoint_of_another_model_is_not_resumed(micro_dataset, tmp_path):
    checkpoints = tmp_path / "checkpoints"
    run_train(micro_args(micro_dataset, tmp_path / "m1", "--epochs", "1",
                         "--checkpoint-dir", str(checkpoints)))  # fmt: skip
    other, _ = run_train(
        micro_args(micro_dataset, tmp_path / "m2", "--epochs", "1", "--checkpoint-dir",
                   str(checkpoints), "--hidden_size", "8")
    )  # fmt: skip
    assert other["resumed_from_epoch"] is None


def test_smdebug_hook_records_the_loss_in_train_eval_and_predict(micro_dataset, tmp_path):
    from smdebug import modes
    from smdebug.trials import create_trial

    out = tmp_path / "smdebug"
    summary, stdout = run_train(
        micro_args(micro_dataset, tmp_path / "model", "--epochs", "2", "--smdebug-dir", str(out))
    )
    assert summary["smdebug"] == str(out)
    assert json.loads(stdout.strip().splitlines()[-1]) == json.loads(json.dumps(summary))

    trial = create_trial(str(out))
    losses = trial.tensor_names(collection="losses")
    assert losses == ["CrossEntropyLoss_output_0"]
    loss = trial.tensor(losses[0])
    train_steps, eval_steps = trial.steps(mode=modes.TRAIN), trial.steps(mode=modes.EVAL)
    assert len(train_steps) == 2 * 2  # 2 epochs x (8 images / batch 4)
    assert len(eval_steps) == 2  # 2 epochs x 1 valid batch
    assert len(trial.steps(mode=modes.PREDICT)) == 1  # the test batch
    values = [float(loss.value(s, mode=modes.EVAL)) for s in eval_steps]
    assert all(v > 0 for v in values)


def test_smdebug_hook_comes_from_sagemakers_hook_config(monkeypatch, tmp_path):
    """On SageMaker, the Debugger hook configuration file turns the hook on by itself."""
    config = tmp_path / "debughookconfig.json"
    config.write_text(json.dumps({
        "LocalPath": str(tmp_path / "tensors"),
        "CollectionConfigurations": [
            {"CollectionName": "losses", "CollectionParameters": {"save_interval": "1"}}
        ],
    }))  # fmt: skip
    monkeypatch.setenv(trainer.SMDEBUG_CONFIG_ENV, str(config))
    hook = trainer.create_debug_hook(None)
    assert hook is not None and hook.out_dir == str(tmp_path / "tensors")


def test_without_hook_config_or_smdebug_training_says_the_hook_is_off(
    monkeypatch, tmp_path, caplog
):
    monkeypatch.setenv(trainer.SMDEBUG_CONFIG_ENV, str(tmp_path / "absent.json"))
    with caplog.at_level(logging.INFO, logger="train"):
        assert trainer.create_debug_hook(None) is None
    assert "smdebug hook off" in caplog.text

    caplog.clear()
    monkeypatch.setitem(sys.modules, "smdebug.pytorch", None)  # as if not installed
    with caplog.at_level(logging.INFO, logger="train"):
        assert trainer.create_debug_hook(tmp_path / "out") is None
    assert "not importable" in caplog.text


REPO = Path(__file__).resolve().parents[3]


def run_script(args: list[str], env: dict[str, str] | None = None):
    import os
    import subprocess

    return subprocess.run(
        [sys.executable, "training/container/train.py", *args],
        cwd=REPO, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_pretrained_without_network_ends_in_one_line_not_a_traceback(micro_dataset, tmp_path):
    """torchvision's real download, refused (a proxy nobody listens on), into an empty cache."""
    offline = {
        "TORCH_HOME": str(tmp_path / "torch"),
        "https_proxy": "http://127.0.0.1:9",
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "no_proxy": "",
        "NO_PROXY": "",
    }
    done = run_script(
        micro_args(micro_dataset, tmp_path / "model", "--epochs", "1", "--pretrained", "true"),
        env=offline,
    )
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("train.py: error: cannot download the ImageNet weights")
    assert "--pretrained false" in last
    assert not (tmp_path / "model").exists()


def test_script_stdout_is_metric_lines_then_the_summary_even_with_smdebug(micro_dataset, tmp_path):
    """What SageMaker's log shows and its metric regexes read: no smdebug chatter in between."""
    done = run_script(
        micro_args(micro_dataset, tmp_path / "model", "--epochs", "1", "--smdebug-dir",
                   str(tmp_path / "debug"))
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 3, done.stdout
    assert lines[0].startswith("epoch 1/1 train_loss=") and lines[1].startswith("test_loss=")
    assert json.loads(lines[2])["smdebug"] == str(tmp_path / "debug")
    assert "smdebug hook on" in done.stderr


def test_a_dataset_in_another_layout_is_one_line(tmp_path):
    (tmp_path / "photos").mkdir()
    done = run_script(["--data-dir", str(tmp_path / "photos"), "--model-dir", str(tmp_path / "m")])
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("train.py: error: ")
    assert "expected train/ valid/ test/" in done.stderr


def test_unfreeze_stages_beyond_resnet50s_four_is_refused(monkeypatch, tmp_path, capsys):
    with pytest.raises(SystemExit):
        trainer.parse_args(["--data-dir", "d", "--model-dir", "m", "--unfreeze_stages", "5"])
    assert "--unfreeze_stages: invalid choice: 5" in capsys.readouterr().err


def test_unfreeze_stages_without_pretrained_says_it_does_nothing(caplog):
    with caplog.at_level(logging.WARNING, logger="train"):
        trainer.parse_args(["--data-dir", "d", "--model-dir", "m", "--pretrained", "false",
                          "--unfreeze_stages", "2"])  # fmt: skip
    assert "no effect with --pretrained false" in caplog.text


def test_early_stopping_ships_the_epoch_with_the_lowest_valid_loss(
    micro_dataset, tmp_path, monkeypatch
):
    """Valid loss rises after epoch 1: with patience 1 training stops after epoch 2 and the
    artifact holds epoch 1's weights, not the last epoch's."""
    import torch

    real_evaluate = trainer.evaluate
    rising = iter([1.0, 2.0, 3.0])

    def evaluate(model, loader, loss_fn, device, use_amp, desc):
        result = real_evaluate(model, loader, loss_fn, device, use_amp, desc)
        return trainer.EpochResult(next(rising), result.accuracy) if "valid" in desc else result

    monkeypatch.setattr(trainer, "evaluate", evaluate)
    checkpoints = tmp_path / "checkpoints"
    summary, stdout = run_train(
        micro_args(micro_dataset, tmp_path / "model", "--epochs", "10", "--patience", "1",
                   "--checkpoint-dir", str(checkpoints))
    )  # fmt: skip
    assert summary["epochs"] == 2 and summary["stopped_early"] is True
    assert summary["best_epoch"] == 1 and summary["best_valid_loss"] == 1.0
    assert "epoch 3/10" not in stdout
    shipped = torch.load(tmp_path / "model" / "model.pth", weights_only=True)
    best = torch.load(checkpoints / "best.pt", weights_only=True)
    last = torch.load(checkpoints / "last.pt", weights_only=False)["model"]
    assert all(torch.equal(shipped[k], best[k]) for k in best)
    assert not all(torch.equal(shipped[k], last[k].cpu()) for k in best if "weight" in k)


def test_training_requirements_keep_smdebug_alive_and_match_the_serving_openvino():
    """SageMaker installs training/container/requirements.txt into the training container:
    smdebug needs numpy<2 (it calls ndarray.tostring) and protobuf<=3.20.3; the CPU form written
    there must be read by the same OpenVINO that requirements-serving.txt puts into the serving
    container."""
    training = (REPO / "training" / "container" / "requirements.txt").read_text().split()
    serving = (REPO / "training" / "container" / "requirements-serving.txt").read_text().split()
    assert {"smdebug==1.0.34", "numpy<2", "protobuf<=3.20.3"} <= set(training)
    openvino = [r for r in serving if r.startswith("openvino==")]
    assert openvino and set(openvino) <= set(training)
