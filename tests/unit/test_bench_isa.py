"""`make bench ARGS="--isa avx2"`: oneDNN is capped in the serving children's environment only;
the benchmark's own process (and so its eager PyTorch side) keeps the machine's native ISA."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_serving.py"


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
