"""Every module opens with a docstring whose first line is a short summary.

PEP 257's shape: one summary line, then a blank line before any prose, so that a reader (and
``help()``, and an editor's hover) gets what the module is for in one line.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ROOTS = ("training", "lambdas", "ops", "local", "benchmarks")
SUMMARY_MAX = 100


def modules() -> list[Path]:
    return sorted(path for root in ROOTS for path in (REPO / root).rglob("*.py"))


def problem(path: Path) -> str | None:
    doc = ast.get_docstring(ast.parse(path.read_text(), filename=str(path)), clean=False)
    if not doc or not doc.strip():
        return "no module docstring"
    lines = doc.strip("\n").split("\n")
    if not lines[0].strip():
        return "the docstring opens with a blank line"
    if len(lines[0]) > SUMMARY_MAX:
        return f"summary line of {len(lines[0])} characters (at most {SUMMARY_MAX})"
    if len(lines) > 1 and lines[1].strip():
        return f"the summary runs on to a second line: {lines[0]!r}"
    return None


def test_there_are_modules_to_check():
    assert len(modules()) > 50


@pytest.mark.parametrize("path", modules(), ids=lambda p: p.relative_to(REPO).as_posix())
def test_the_module_docstring_opens_with_one_summary_line(path: Path):
    assert problem(path) is None, problem(path)
