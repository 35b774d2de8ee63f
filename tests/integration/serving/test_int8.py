"""int8 at export, behind an accuracy guard, and the endpoint's choice of int8, fp32 or PyTorch.

Built on the session's tiny trained model: its fp32 IR quantized by NNCF (real, once per module),
or by stand-in quantizers that lose accuracy on purpose, fail, or change nothing.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from dog_breeds.artifact import serving_code, store
from dog_breeds.data import folders
from dog_breeds.serving import inference as ei
from dog_breeds.serving import runtimes
from dog_breeds.training import quantize

REPO = Path(__file__).resolve().parents[3]
FP32_KEYS = {
    "model_version", "weights_sha256_12", "image_size", "num_classes", "format", "precision",
    "input_shape", "openvino_version", "torch_version", "export_max_abs_logit_diff",
}  # fmt: skip


def export_meta(model_dir: Path) -> dict:
    return json.loads((model_dir / "openvino" / "export.json").read_text())


def int8_files(model_dir: Path) -> list[str]:
    return sorted(p.name for p in (model_dir / "openvino").glob("model-int8.*"))


def fp32_only_copy(trained_artifact: Path, dest: Path) -> Path:
    """The artifact as export_cpu_form left it: fp32 IR, no int8 files nor record."""
    model_dir = Path(shutil.copytree(trained_artifact, dest))
    for path in (model_dir / "openvino").glob("model-int8.*"):
        path.unlink()
    meta = export_meta(model_dir)
    meta.pop("int8", None)
    (model_dir / "openvino" / "export.json").write_text(json.dumps(meta))
    return model_dir


@pytest.fixture(scope="module")
def tiny_splits(tiny_dataset, trained_artifact) -> folders.DataSplits:
    return folders.load_splits(tiny_dataset, store.load_config(trained_artifact)["image_size"])


@pytest.fixture
def fp32_copy(trained_artifact, tmp_path) -> Path:
    return fp32_only_copy(trained_artifact, tmp_path / "model")


@pytest.fixture(scope="module")
def int8_artifact(trained_artifact, tiny_splits, tmp_path_factory) -> tuple[Path, object]:
    """The tiny model quantized by NNCF with a guard that accepts any drop: int8 always ships."""
    model_dir = fp32_only_copy(trained_artifact, tmp_path_factory.mktemp("int8") / "model")
    record = quantize.export_int8_form(model_dir, tiny_splits, max_drop_points=100.0)
    return model_dir, record


@pytest.fixture
def int8_copy(int8_artifact, tmp_path) -> Path:
    return Path(shutil.copytree(int8_artifact[0], tmp_path / "model"))


def negated_logits(fp32_model, calibration):
    """A "quantization" that ruins the model: every logit negated, so top-1 becomes the worst."""
    import openvino as ov
    import openvino.opset13 as ops

    logits = fp32_model.get_results()[0].input_value(0)
    return ov.Model([ops.negative(logits)], fp32_model.get_parameters(), "broken")


def unchanged(fp32_model, calibration):
    """A "quantization" that loses nothing: the fp32 model itself."""
    return fp32_model


def select(model_dir: Path):
    return runtimes.select_runtime(model_dir, lambda: store.build_from_artifact(model_dir))


# ---------------------------------------------------------------------------- the guard at export
def test_training_records_the_int8_verdict_beside_the_fp32_form(trained_artifact, tiny_training):
    meta = export_meta(trained_artifact)
    assert set(meta) >= FP32_KEYS, "the fp32 form's keys are kept"
    int8 = meta["int8"]
    assert int8["max_drop_points"] == quantize.DEFAULT_MAX_DROP_POINTS
    assert int8["calibration_images"] == min(300, tiny_training.summary["images"]["train"])
    assert int8["valid_images"] == tiny_training.summary["images"]["valid"]
    assert 0 <= int8["int8_valid_accuracy"] <= 1 and 0 <= int8["fp32_valid_accuracy"] <= 1
    assert int8["drop_points"] == pytest.approx(
        100 * (int8["fp32_valid_accuracy"] - int8["int8_valid_accuracy"])
    )
    assert int8["shipped"] == (int8["drop_points"] <= int8["max_drop_points"])
    assert int8["seconds"] >= int8["quantize_seconds"] > 0
    assert int8["model_version"] == meta["model_version"] and int8["nncf_version"] == "3.4.0"
    expected = ["model-int8.bin", "model-int8.xml"] if int8["shipped"] else []
    assert int8_files(trained_artifact) == expected


def test_the_guard_refuses_a_quantization_that_loses_accuracy_and_ships_fp32_alone(
    fp32_copy, tiny_splits
):
    record = quantize.export_int8_form(fp32_copy, tiny_splits, quantize=negated_logits)
    meta = export_meta(fp32_copy)
    assert not record.shipped and not meta["int8"]["shipped"]
    assert meta["int8"]["drop_points"] > 50
    assert "> 0.5 allowed" in meta["int8"]["reason"]
    assert meta["int8"]["fp32_valid_accuracy"] > meta["int8"]["int8_valid_accuracy"]
    assert set(meta) >= FP32_KEYS
    assert int8_files(fp32_copy) == [], "a refused int8 IR is not left in the artifact"

    runtime = select(fp32_copy)
    assert runtime.name == "openvino"
    assert "int8 not shipped at export: validation top-1" in runtime.reason


def test_a_max_drop_of_minus_one_point_refuses_even_a_lossless_int8(fp32_copy, tiny_splits):
    record = quantize.export_int8_form(
        fp32_copy, tiny_splits, max_drop_points=-1.0, quantize=unchanged
    )
    assert not record.shipped and record.drop_points == 0
    assert export_meta(fp32_copy)["int8"]["reason"].endswith("drop 0 points > -1 allowed")
    assert select(fp32_copy).name == "openvino"


def test_a_failing_quantizer_costs_only_the_int8_form(fp32_copy, tiny_splits):
    def explodes(fp32_model, calibration):
        raise RuntimeError("no statistics for you")

    record = quantize.export_int8_form(fp32_copy, tiny_splits, quantize=explodes)
    assert not record.shipped
    assert export_meta(fp32_copy)["int8"]["reason"] == (
        "quantization failed (RuntimeError: no statistics for you)"
    )
    assert int8_files(fp32_copy) == []
    assert select(fp32_copy).name == "openvino"


def test_a_passing_guard_ships_int8_and_records_both_accuracies(int8_artifact, tiny_splits):
    model_dir, record = int8_artifact
    meta = export_meta(model_dir)["int8"]
    assert record.shipped and meta["shipped"] and meta["file"] == "model-int8.xml"
    assert int8_files(model_dir) == ["model-int8.bin", "model-int8.xml"]
    assert meta["calibration_images"] == len(tiny_splits.train) == 96
    assert meta["valid_images"] == len(tiny_splits.valid)
    assert {"fp32_valid_accuracy", "int8_valid_accuracy", "drop_points"} <= set(meta)
    # The int8 IR is a quarter of the fp32 one: its weights are stored as int8.
    ir = model_dir / "openvino"
    assert (ir / "model-int8.bin").stat().st_size < 0.35 * (ir / "model.bin").stat().st_size


# ---------------------------------------------------------------------------- the endpoint's choice
def test_the_endpoint_serves_int8_and_says_so(int8_artifact, tiny_dataset, caplog):
    model_dir, _ = int8_artifact
    with caplog.at_level(logging.INFO, logger="dog_breeds.serving.runtimes"):
        served = ei.model_fn(str(model_dir))
    assert served.runtime.name == "openvino-int8"
    assert "serving runtime: openvino-int8 (int8 IR matches the artifact" in caplog.text
    image = sorted((tiny_dataset / "test").glob("*/*.jpg"))[0]
    result = ei.predict_fn(ei.input_fn(image.read_bytes(), "image/jpeg"), served)
    assert result["model"]["runtime"] == "openvino-int8"
    assert result["predictions"][0]["breed"] == image.parent.name.split(".", 1)[1]


def test_int8_and_fp32_agree_on_the_test_images(int8_copy, tiny_dataset, monkeypatch):
    config = store.load_config(int8_copy)
    size, mean, std = config["image_size"], config["mean"], config["std"]
    images = sorted((tiny_dataset / "test").glob("*/*.jpg"))
    batch = np.stack([quantize.served_input(p, size, mean, std) for p in images])
    int8 = select(int8_copy)
    monkeypatch.setenv(runtimes.FORCE_FP32_ENV, "1")
    fp32 = select(int8_copy)
    assert (int8.name, fp32.name) == ("openvino-int8", "openvino")
    agreement = (int8(batch).argmax(1) == fp32(batch).argmax(1)).mean()
    assert agreement >= 0.9


def test_the_environment_variable_forces_fp32(int8_copy, monkeypatch, caplog):
    monkeypatch.setenv("DOG_BREEDS_FORCE_FP32", "1")
    with caplog.at_level(logging.INFO, logger="dog_breeds.serving.runtimes"):
        runtime = select(int8_copy)
    assert runtime.name == "openvino"
    assert "DOG_BREEDS_FORCE_FP32 is set" in runtime.reason
    assert "serving runtime: not int8 (DOG_BREEDS_FORCE_FP32 is set)" in caplog.text


def test_falls_back_to_fp32_when_the_int8_ir_is_missing(int8_copy):
    (int8_copy / "openvino" / "model-int8.bin").unlink()
    runtime = select(int8_copy)
    assert runtime.name == "openvino" and "no int8 IR at" in runtime.reason


def test_falls_back_to_fp32_when_the_int8_ir_was_made_from_other_weights(int8_copy):
    meta = export_meta(int8_copy)
    meta["int8"]["weights_sha256_12"] = "0123456789ab"
    (int8_copy / "openvino" / "export.json").write_text(json.dumps(meta))
    runtime = select(int8_copy)
    assert runtime.name == "openvino"
    assert "int8 IR is stale: weights_sha256_12 '0123456789ab'" in runtime.reason


def test_falls_back_to_fp32_when_the_int8_ir_does_not_compile(int8_copy):
    (int8_copy / "openvino" / "model-int8.xml").write_text("<net>not an IR</net>")
    runtime = select(int8_copy)
    assert runtime.name == "openvino"
    assert "could not compile the int8 IR" in runtime.reason


def test_pytorch_serves_last_when_neither_ir_matches_the_artifact(int8_copy):
    config = json.loads((int8_copy / "config.json").read_text())
    config["model_version"] = "retrained000"
    (int8_copy / "config.json").write_text(json.dumps(config))
    runtime = select(int8_copy)
    assert runtime.name == "pytorch" and "stale: model_version" in runtime.reason


# ---------------------------------------------------------------------------- what ships where
def test_the_serving_code_carries_no_export_and_no_nncf():
    files = serving_code.code_files()
    assert "dog_breeds/training/quantize.py" not in files
    assert "dog_breeds/training/cpu_export.py" not in files
    assert {"dog_breeds/serving/runtimes.py", "dog_breeds/artifact/cpu_form.py"} <= set(files)
    sources = [p.read_text() for name, p in files.items() if name.endswith(".py")]
    assert not [s for s in sources if "import nncf" in s or "from nncf" in s]
    # Exporting (tracing, converting, saving an IR) is training's: the endpoint only reads one.
    assert not [s for s in sources if "convert_model" in s or "save_model" in s]
    serving = (REPO / "training/container/requirements-serving.txt").read_text()
    training = (REPO / "training/container/requirements.txt").read_text()
    assert "nncf" not in serving.lower()
    assert "\nnncf==3.4.0\n" in training
