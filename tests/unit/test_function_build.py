"""How the offline stack gets the function as `sam build` packs it (local.function.build)."""

from __future__ import annotations

from pathlib import Path

import yaml

from local.function import build

REPO = Path(__file__).resolve().parents[2]


def _template() -> dict:
    class Loader(yaml.SafeLoader):
        pass

    # CloudFormation's short forms (!Ref, !Sub, ...) as plain values: only Globals is read here.
    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    return yaml.load((REPO / "template.yaml").read_text(), Loader=Loader)


def test_the_runtime_python_is_the_templates():
    runtime = _template()["Globals"]["Function"]["Runtime"]
    assert runtime == f"python{build.RUNTIME_PYTHON}"


def test_without_the_runtimes_python_the_fallback_says_so_in_one_line(monkeypatch):
    monkeypatch.setattr(build, "find_runtime_python", lambda: None)
    built = build.build_function()
    assert not built.built and built.code_dir == build.FUNCTION_DIR
    assert "\n" not in built.note and "no python3.12 found" in built.note


def test_without_the_sam_cli_the_fallback_says_so_in_one_line(monkeypatch, tmp_path):
    monkeypatch.setattr(build, "find_runtime_python", lambda: "/usr/bin/python3.12")
    built = build.build_function(tmp_path / "build", sam=REPO / "no" / "sam")
    assert not built.built and "no SAM CLI" in built.note and "\n" not in built.note


def test_the_build_is_rebuilt_when_the_function_changes(monkeypatch, tmp_path):
    """The cache key covers every file of the function's folder and the interpreter."""
    function_dir = tmp_path / "classify_upload"
    (function_dir / "pkg").mkdir(parents=True)
    (function_dir / "pkg" / "a.py").write_text("A = 1\n")
    monkeypatch.setattr(build, "FUNCTION_DIR", function_dir)
    first = build._fingerprint("/py3.12")
    assert build._fingerprint("/py3.12") == first
    (function_dir / "pkg" / "a.py").write_text("A = 2\n")
    assert build._fingerprint("/py3.12") != first
    assert build._fingerprint("/other-py3.12") != build._fingerprint("/py3.12")
