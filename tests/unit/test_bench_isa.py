"""`make bench ARGS="--isa avx2"`: oneDNN is capped in the serving children's environment only;
the benchmark's own process (and so its eager PyTorch side) keeps the machine's native ISA."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_serving.py"


@pytest.fixture(scope="module")
def bench():
    # A script, not a package: loaded from its file (nothing edits sys.path).
    spec = importlib.util.spec_from_file_location("bench_serving", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _seen_by_child(env: dict[str, str]) -> str:
    probe = "import os; print(os.environ.get('ONEDNN_MAX_CPU_ISA', 'unset'))"
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True)
    return done.stdout.strip()


@pytest.mark.parametrize("isa, cap", [("avx2", "AVX2"), ("avx", "AVX")])
def test_the_isa_cap_reaches_the_child_and_not_this_process(bench, monkeypatch, isa, cap):
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    before = dict(os.environ)

    env = bench.child_env(bench.parse_args(["--isa", isa]).isa)

    assert _seen_by_child(env) == cap
    assert "ONEDNN_MAX_CPU_ISA" not in os.environ
    assert dict(os.environ) == before


def test_native_is_the_default_and_unsets_an_inherited_cap(bench, monkeypatch):
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX")
    args = bench.parse_args([])
    assert args.isa == "native"
    assert _seen_by_child(bench.child_env(args.isa)) == "unset"
    assert os.environ["ONEDNN_MAX_CPU_ISA"] == "AVX"


def test_the_container_environment_is_mirrored_without_touching_this_process(bench, monkeypatch):
    monkeypatch.setenv("SAGEMAKER_MODEL_SERVER_WORKERS", "3")
    env = bench.child_env("avx2", SAGEMAKER_MODEL_SERVER_WORKERS=None)
    assert "SAGEMAKER_MODEL_SERVER_WORKERS" not in env
    assert (
        bench.child_env("native", SAGEMAKER_MODEL_SERVER_WORKERS="2")[
            "SAGEMAKER_MODEL_SERVER_WORKERS"
        ]
        == "2"
    )
    assert os.environ["SAGEMAKER_MODEL_SERVER_WORKERS"] == "3"


def test_an_unknown_isa_is_refused(bench, capsys):
    with pytest.raises(SystemExit):
        bench.parse_args(["--isa", "sse4"])
    assert "invalid choice" in capsys.readouterr().err


def test_t2_medium_baseline_is_1440_cpu_seconds_an_hour(bench):
    # 2 vCPUs at 20 % for 3600 s: 1440 CPU-seconds; 100 ms an image is 14,400 images.
    assert bench.t2_medium_baseline_images_per_hour(100.0) == 14_400
    assert bench.t2_medium_baseline_images_per_hour(45.0) == 32_000


def test_concurrency_runs_the_deployed_workers_and_forces_fp32_only_where_named(bench, monkeypatch):
    monkeypatch.setenv("SAGEMAKER_MODEL_SERVER_WORKERS", "3")
    monkeypatch.setenv("DOG_BREEDS_FORCE_FP32", "1")
    configs = bench.concurrency_configs("avx2")
    assert set(configs) == {
        "deployed, int8", "deployed, fp32", "2 threads a worker, int8", "2 threads a worker, fp32"
    }  # fmt: skip
    for name, env in configs.items():
        assert env["ONEDNN_MAX_CPU_ISA"] == "AVX2"
        # Deployed: no worker count, so each worker takes TorchServe's default share.
        assert env.get("SAGEMAKER_MODEL_SERVER_WORKERS") == (None if "deployed" in name else "1")
        assert env.get("DOG_BREEDS_FORCE_FP32") == ("1" if name.endswith("fp32") else None)
