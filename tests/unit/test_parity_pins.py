"""``make parity`` rebuilds the cloud runtimes from the versions the launchers ask SageMaker for:
one place to bump, and the reproduction follows."""

from __future__ import annotations

from local.parity import envs, training
from training.launch import endpoint, jobs


def installed(spec: envs.EnvSpec) -> list[str]:
    return [arg for install in spec.installs for arg in install]


def test_the_training_environment_is_the_training_images_python_torch_and_torchvision():
    spec = envs.training_spec()
    assert spec.python == jobs.TRAINING_PYTHON
    assert f"torch=={jobs.TRAINING_FRAMEWORK_VERSION}" in installed(spec)
    assert f"torchvision=={jobs.TRAINING_TORCHVISION_VERSION}" in installed(spec)


def test_the_training_requirements_go_over_the_image_packages_as_sagemaker_installs_them():
    spec = envs.training_spec()
    assert spec.installs[-1] == ("-r", str(envs.TRAINING_REQUIREMENTS))
    assert envs.TRAINING_REQUIREMENTS in spec.inputs


def test_the_serving_environment_is_the_inference_images_python_torch_toolkit_and_torchserve():
    spec = envs.serving_spec()
    assert spec.python == endpoint.INFERENCE_PYTHON
    assert {
        f"torch=={endpoint.INFERENCE_FRAMEWORK_VERSION}",
        f"torchvision=={endpoint.INFERENCE_TORCHVISION_VERSION}",
        f"sagemaker-pytorch-inference=={endpoint.INFERENCE_TOOLKIT_VERSION}",
        f"torchserve=={endpoint.INFERENCE_TORCHSERVE_VERSION}",
        f"torch-model-archiver=={endpoint.INFERENCE_TORCHSERVE_VERSION}",
    } <= set(installed(spec))


def test_no_other_torch_pin_sneaks_in():
    for spec in (envs.training_spec(), envs.serving_spec()):
        torch_pins = [a for a in installed(spec) if a.split("==")[0] in ("torch", "torchvision")]
        assert len(torch_pins) == 2


def test_the_python_pins_agree_with_the_image_tags_the_sdk_is_asked_for():
    def tag(python: str) -> str:
        return "py" + python.replace(".", "")

    assert tag(jobs.TRAINING_PYTHON) == jobs.TRAINING_PY_VERSION
    assert tag(endpoint.INFERENCE_PYTHON) == endpoint.INFERENCE_PY_VERSION


def test_a_version_bump_makes_a_new_environment_not_a_stale_cached_one():
    spec = envs.training_spec()
    bumped = envs.EnvSpec(
        spec.name,
        spec.python,
        (("torch==9.9.9", *spec.installs[0][1:]), *spec.installs[1:]),
        spec.inputs,
    )
    assert bumped.directory() != spec.directory()
    assert spec.directory().parent == envs.PARITY_DIR


def test_hyperparameters_reach_train_py_as_the_training_toolkit_passes_them():
    raw = {"lr": "0.001", "pretrained": '"false"', "epochs": "8", "sagemaker_program": '"train.py"'}
    hps = training.user_hyperparameters(training.decode_hyperparameters(raw))
    assert training.to_cmd_args(hps) == ["--epochs", "8", "--lr", "0.001", "--pretrained", "false"]
    env = training.sm_environment(envs.REPO_ROOT / "opt-ml", hps, "job", "ml.g4dn.xlarge")
    assert env["SM_HP_PRETRAINED"] == "false"
    assert env["SM_HP_EPOCHS"] == "8"
    # The instance's resources, not this machine's: train.py's default --num_workers reads them.
    assert (env["SM_NUM_CPUS"], env["SM_NUM_GPUS"]) == ("4", "1")


def test_a_tuning_trial_takes_the_middle_of_each_range_as_sagemaker_encodes_values():
    ranges = {
        "ContinuousParameterRanges": [
            {"Name": "lr", "MinValue": "1e-05", "MaxValue": "0.01", "ScalingType": "Logarithmic"},
            {"Name": "eps", "MinValue": "1e-09", "MaxValue": "1e-08", "ScalingType": "Linear"},
        ],
        "IntegerParameterRanges": [{"Name": "hidden_size", "MinValue": "64", "MaxValue": "255"}],
        "CategoricalParameterRanges": [{"Name": "batch_size", "Values": ['"64"', '"128"']}],
    }
    point = training.trial_point(ranges)
    assert point == {
        "lr": "0.000316228",
        "eps": "5.5e-09",
        "hidden_size": "160",
        "batch_size": '"64"',
    }
    hps = training.user_hyperparameters(training.decode_hyperparameters(point))
    assert training.to_cmd_args(hps)[-2:] == ["--lr", "0.000316228"]
    assert hps["batch_size"] == "64"
