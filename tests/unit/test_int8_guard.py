"""The int8 decisions as pure functions: the accuracy guard at export, the calibration subset, and
whether the endpoint may serve the int8 IR."""

from __future__ import annotations

from dataclasses import asdict

import pytest

from dog_breeds.artifact import cpu_form
from dog_breeds.serving import runtimes
from dog_breeds.training import quantize, trainer

IDENTITY = {"model_version": "abc", "weights_sha256_12": "abc", "image_size": 64, "num_classes": 4}


@pytest.mark.parametrize(
    "fp32, int8, max_drop, ships",
    [
        (0.90, 0.90, 0.5, True),  # lossless
        (0.900, 0.896, 0.5, True),  # 0.4 points
        (0.900, 0.895, 0.5, True),  # exactly the allowed drop
        (0.900, 0.894, 0.5, False),  # 0.6 points
        (0.80, 0.85, 0.5, True),  # int8 better
        (0.90, 0.90, -1.0, False),  # a negative allowance refuses even lossless
        (0.90, 0.10, 100.0, True),  # an allowance of 100 points accepts anything
    ],
)
def test_the_guard_ships_int8_only_within_the_allowed_drop(fp32, int8, max_drop, ships):
    shipped, drop, reason = quantize.guard_verdict(fp32, int8, max_drop)
    assert shipped is ships
    assert drop == pytest.approx((fp32 - int8) * 100)
    assert ("<=" if ships else ">") + f" {max_drop:g} allowed" in reason


def test_the_guard_says_what_it_compared():
    _, _, reason = quantize.guard_verdict(0.95, 0.9, 0.5)
    assert reason == "validation top-1 int8 90.00% vs fp32 95.00%: drop 5 points > 0.5 allowed"


@pytest.mark.parametrize("size, limit, count", [(96, 300, 96), (6680, 300, 300), (0, 300, 0)])
def test_calibration_takes_at_most_the_limit(size, limit, count):
    indices = quantize.calibration_indices(size, limit)
    assert len(indices) == count == len(set(indices))
    assert all(0 <= i < size for i in indices)


def test_calibration_spreads_over_every_class_of_a_sorted_split():
    labels = [c for c in range(133) for _ in range(50)]  # samples sorted by class, as loaded
    picked = {labels[i] for i in quantize.calibration_indices(len(labels), 300)}
    assert picked == set(range(133))


def record(**overrides) -> cpu_form.Int8Record:
    values = {
        "shipped": True,
        "reason": "ok",
        "file": cpu_form.INT8_IR_XML,
        "model_version": "abc",
        "weights_sha256_12": "abc",
    }
    return cpu_form.Int8Record(**{**values, **overrides})


@pytest.fixture
def ir_dir(tmp_path):
    for name in ("model-int8.xml", "model-int8.bin"):
        (tmp_path / name).write_text("x")
    return tmp_path


def test_int8_serves_when_shipped_for_this_artifact_and_present(ir_dir):
    assert runtimes.int8_unusable_reason(record(), IDENTITY, ir_dir, forced_fp32=False) is None


@pytest.mark.parametrize(
    "the_record, forced, why",
    [
        (record(), True, "DOG_BREEDS_FORCE_FP32 is set"),
        (None, False, "export.json has no int8 record"),
        (record(shipped=False, reason="drop 4"), False, "int8 not shipped at export: drop 4"),
        (record(model_version="old"), False, "int8 IR is stale: model_version 'old'"),
        (record(weights_sha256_12="old"), False, "int8 IR is stale: weights_sha256_12"),
        (record(file="gone.xml"), False, "no int8 IR at"),
    ],
)
def test_int8_is_passed_over_and_says_why(ir_dir, the_record, forced, why):
    reason = runtimes.int8_unusable_reason(the_record, IDENTITY, ir_dir, forced_fp32=forced)
    assert reason is not None and reason.startswith(why)


@pytest.mark.parametrize(
    "value, forced", [("1", True), ("true", True), ("YES", True), ("0", False), ("", False)]
)
def test_the_force_fp32_switch(value, forced):
    assert runtimes.force_fp32({runtimes.FORCE_FP32_ENV: value}) is forced
    assert runtimes.force_fp32({}) is False


def test_the_int8_record_round_trips_through_export_json_and_ignores_strangers():
    meta = {"int8": {**asdict(record(drop_points=0.0)), "added_later": 1}}
    assert cpu_form.Int8Record.from_meta(meta) == record(drop_points=0.0)
    assert cpu_form.Int8Record.from_meta({}) is None
    assert cpu_form.Int8Record.from_meta({"int8": {"file": "x"}}) is None


def test_train_py_takes_the_int8_hyperparameters():
    base = ["--data-dir", "d", "--model-dir", "m"]
    args = trainer.parse_args(base)
    assert args.int8 is True and args.int8_max_drop == 0.5
    args = trainer.parse_args([*base, "--int8", "false", "--int8_max_drop", "1.5"])
    assert args.int8 is False and args.int8_max_drop == 1.5
    assert trainer.parse_args([*base, "--int8-max-drop", "2"]).int8_max_drop == 2.0
