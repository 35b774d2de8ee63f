"""The endpoint serves the OpenVINO form when it can, PyTorch when it must, and says which."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from small_artifact import IMAGE_SIZE, NUM_CLASSES, loader_for, small_model

from dog_breeds.artifact import cpu_form
from dog_breeds.serving import runtimes
from dog_breeds.training import cpu_export


def batch(n: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 3, IMAGE_SIZE, IMAGE_SIZE), np.float32)


def torch_logits(model_dir, x: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return loader_for(model_dir)()(torch.from_numpy(x)).numpy()


def test_export_writes_an_fp32_ir_that_records_the_artifact(exported_artifact):
    ir_dir = exported_artifact / "openvino"
    assert (ir_dir / "model.xml").is_file() and (ir_dir / "model.bin").is_file()
    meta = json.loads((ir_dir / "export.json").read_text())
    config = json.loads((exported_artifact / "config.json").read_text())
    assert meta["model_version"] == config["model_version"]
    assert meta["image_size"] == IMAGE_SIZE and meta["precision"] == "f32"
    assert meta["input_shape"] == [-1, 3, IMAGE_SIZE, IMAGE_SIZE]
    # save_model's default would halve the weights to fp16: the IR must keep fp32 constants
    # (a little under 4 bytes per parameter: BatchNorm is folded into the convolutions).
    xml = (ir_dir / "model.xml").read_text()
    assert 'element_type="f16"' not in xml
    n_params = sum(p.numel() for p in small_model().parameters())
    assert (ir_dir / "model.bin").stat().st_size >= 0.95 * 4 * n_params
    assert not (exported_artifact / ".openvino.tmp").exists()


def test_openvino_serves_when_its_ir_matches_and_agrees_with_pytorch(exported_artifact, caplog):
    build = loader_for(exported_artifact)
    with caplog.at_level(logging.INFO, logger="dog_breeds.serving.runtimes"):
        runtime = runtimes.select_runtime(exported_artifact, build)
    assert runtime.name == "openvino"
    assert build.calls == 0, "the OpenVINO path must not load a second copy of the weights"
    assert "serving runtime: openvino" in caplog.text

    x = batch(1)
    got, expected = runtime(x), torch_logits(exported_artifact, x)
    assert got.dtype == np.float32 and got.shape == (1, NUM_CLASSES)
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-4)
    assert got.argmax(1).tolist() == expected.argmax(1).tolist()


def test_openvino_takes_any_batch_size(exported_artifact):
    runtime = runtimes.select_runtime(exported_artifact, loader_for(exported_artifact))
    for n in (3, 1, 5):
        x = batch(n, seed=n)
        np.testing.assert_allclose(
            runtime(x), torch_logits(exported_artifact, x), atol=1e-4, rtol=1e-4
        )


def test_one_worker_runs_openvino_in_fp32_on_every_available_core_unpinned(
    exported_artifact, monkeypatch
):
    monkeypatch.setenv(runtimes.MODEL_SERVER_WORKERS_ENV, "1")
    runtime = runtimes.select_runtime(exported_artifact, loader_for(exported_artifact))
    import openvino as ov

    compiled = runtime._compiled
    # bf16 is the CPU plugin's default where AVX512_BF16/AMX exist; it would break agreement.
    assert compiled.get_property("INFERENCE_PRECISION_HINT") == ov.Type.f32
    assert compiled.get_property("INFERENCE_NUM_THREADS") == runtimes.available_cpus()
    assert str(compiled.get_property("PERFORMANCE_HINT")).endswith("LATENCY")
    # Pinned, every worker process would put its threads on the same first cores.
    assert compiled.get_property("ENABLE_CPU_PINNING") is False


def test_falls_back_to_pytorch_when_openvino_does_not_import(artifact_copy, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "openvino", None)  # makes `import openvino` raise ImportError
    build = loader_for(artifact_copy)
    with caplog.at_level(logging.INFO, logger="dog_breeds.serving.runtimes"):
        runtime = runtimes.select_runtime(artifact_copy, build)
    assert runtime.name == "pytorch" and build.calls == 1
    assert "openvino does not import" in runtime.reason
    assert re.search(r"serving runtime: pytorch \(fallback: openvino does not import", caplog.text)
    x = batch(2)
    np.testing.assert_allclose(runtime(x), torch_logits(artifact_copy, x), rtol=1e-6, atol=1e-6)


def test_falls_back_to_pytorch_when_the_ir_is_missing(artifact_copy, caplog):
    shutil.rmtree(artifact_copy / "openvino")
    with caplog.at_level(logging.INFO, logger="dog_breeds.serving.runtimes"):
        runtime = runtimes.select_runtime(artifact_copy, loader_for(artifact_copy))
    assert runtime.name == "pytorch"
    assert "no OpenVINO IR" in runtime.reason
    assert "serving runtime: pytorch (fallback: no OpenVINO IR" in caplog.text


def retrain(model_dir, other_weights) -> None:
    """New weights saved over the artifact, and its config's model_version updated to match."""
    shutil.copyfile(other_weights, model_dir / "model.pth")
    config = json.loads((model_dir / "config.json").read_text())
    config["model_version"] = hashlib.sha256(other_weights.read_bytes()).hexdigest()[:12]
    (model_dir / "config.json").write_text(json.dumps(config))


def test_falls_back_to_pytorch_when_the_ir_is_from_other_weights(artifact_copy, other_weights):
    # Retrained weights saved over the artifact without a new export: the IR is stale.
    retrain(artifact_copy, other_weights)
    runtime = runtimes.select_runtime(artifact_copy, loader_for(artifact_copy))
    assert runtime.name == "pytorch"
    assert "stale: model_version" in runtime.reason
    x = batch(1)
    np.testing.assert_allclose(runtime(x), torch_logits(artifact_copy, x), rtol=1e-6, atol=1e-6)


def test_falls_back_when_weights_change_behind_the_configs_back(artifact_copy, other_weights):
    shutil.copyfile(other_weights, artifact_copy / "model.pth")  # config.json left as it was
    runtime = runtimes.select_runtime(artifact_copy, loader_for(artifact_copy))
    assert runtime.name == "pytorch"
    assert "stale: weights_sha256_12" in runtime.reason


def test_falls_back_when_the_image_size_changed(artifact_copy):
    config = json.loads((artifact_copy / "config.json").read_text())
    config["image_size"] = 96
    (artifact_copy / "config.json").write_text(json.dumps(config))
    runtime = runtimes.select_runtime(artifact_copy, loader_for(artifact_copy))
    assert runtime.name == "pytorch" and "stale: image_size" in runtime.reason


def test_falls_back_when_the_ir_does_not_compile(artifact_copy):
    (artifact_copy / "openvino" / "model.xml").write_text("<net>not an IR</net>")
    runtime = runtimes.select_runtime(artifact_copy, loader_for(artifact_copy))
    assert runtime.name == "pytorch"
    assert "could not compile" in runtime.reason


def config_only_artifact(model_dir):
    model_dir.mkdir()
    (model_dir / "config.json").write_text(json.dumps({"image_size": IMAGE_SIZE}))
    return model_dir


def test_export_without_openvino_returns_none_and_writes_nothing(tmp_path, monkeypatch):
    model_dir = config_only_artifact(tmp_path / "model")
    monkeypatch.setitem(sys.modules, "openvino", None)
    assert cpu_export.export_cpu_form(torch.nn.Conv2d(3, 4, 3), model_dir) is None
    assert not (model_dir / "openvino").exists()


def test_export_leaves_the_model_as_it_found_it(exported_session):
    _, seen = exported_session
    assert seen.training_after_export, "training mode restored"
    assert seen.hook_calls_during_export == 0, "hooks (smdebug's) saw the export"
    assert seen.state_unchanged
    assert seen.hook_calls_after_forward == 1, "hooks re-attached"


def test_export_failure_never_raises_and_leaves_nothing_behind(tmp_path):
    model_dir = config_only_artifact(tmp_path / "model")

    class Untraceable(torch.nn.Module):
        def forward(self, x):
            raise RuntimeError("cannot trace me")

    assert cpu_export.export_cpu_form(Untraceable(), model_dir) is None
    assert not (model_dir / "openvino").exists()
    assert not (model_dir / ".openvino.tmp").exists()


@pytest.mark.parametrize("quota, expected", [("max 100000", 2), ("100000 100000", 1)])
def test_available_cpus_honours_a_cgroup_quota(monkeypatch, quota, expected):
    monkeypatch.setattr(runtimes.os, "sched_getaffinity", lambda _pid: {0, 1})
    monkeypatch.setattr(runtimes.Path, "read_text", lambda self: quota)
    assert runtimes.available_cpus() == expected


# Unset (or unreadable): TorchServe's own default, one worker per CPU.
@pytest.mark.parametrize("workers, expected", [(None, 1), ("1", 4), ("2", 2), ("8", 1), ("x", 1)])
def test_threads_are_shared_among_model_server_workers(monkeypatch, workers, expected):
    monkeypatch.setattr(runtimes, "available_cpus", lambda: 4)
    if workers is None:
        monkeypatch.delenv(runtimes.MODEL_SERVER_WORKERS_ENV, raising=False)
    else:
        monkeypatch.setenv(runtimes.MODEL_SERVER_WORKERS_ENV, workers)
    assert runtimes.threads_per_worker() == expected


# Run in a child process: before the fix, the signal killed the interpreter with SIGSEGV.
SIGNAL_AFTER_TWO_RUNTIMES = """
import signal, subprocess, sys
from pathlib import Path
from dog_breeds.serving import runtimes

xml = Path(sys.argv[1])
first = runtimes.OpenVINORuntime(xml, int(sys.argv[2]), 1)
second = runtimes.OpenVINORuntime(xml, int(sys.argv[2]), 1)
del first, second  # destroyed in the order they were made, as a function's locals are
received = []
signal.signal(signal.SIGCHLD, lambda *_: received.append(1))  # as torch's DataLoader does
subprocess.run(["true"], check=True)
print("signals handled:", len(received))
"""


def test_a_handled_signal_after_two_runtimes_does_not_kill_the_process(exported_artifact):
    """train.py's int8 guard compiles an fp32 and an int8 runtime; each OpenVINO Core's CPU plugin
    swaps the thread's alternate signal stack. The runtimes share one Core, so the stack a
    signal handler runs on is still mapped when DataLoader workers exit (exit code was 139)."""
    xml = exported_artifact / cpu_form.OPENVINO_DIR / cpu_form.IR_XML
    done = subprocess.run(
        [sys.executable, "-c", SIGNAL_AFTER_TWO_RUNTIMES, str(xml), str(IMAGE_SIZE)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "signals handled: 1" in done.stdout
