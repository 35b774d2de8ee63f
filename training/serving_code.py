"""The serving container's ``code/`` directory: ``endpoint_inference.py``, every module of this
folder it imports, and ``requirements-serving.txt`` as ``requirements.txt``.

Kept free of torch so that the launchers can stage it without loading the model code.
"""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

TRAINING_DIR = Path(__file__).resolve().parent
ENTRY_POINT = "endpoint_inference.py"
REQUIREMENTS = "requirements-serving.txt"


def serving_modules(source_dir: Path = TRAINING_DIR) -> list[Path]:
    """The entry point and every module of ``source_dir`` it imports, transitively.

    Walks every import statement (also those inside functions), so ``code/`` holds what
    ``endpoint_inference.py`` needs and nothing of the training or launcher code.
    """
    available = {p.stem: p for p in Path(source_dir).glob("*.py")}
    seen: dict[str, Path] = {}
    pending = [Path(source_dir) / ENTRY_POINT]
    while pending:
        path = pending.pop()
        if path.stem in seen:
            continue
        seen[path.stem] = path
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module.split(".")[0]]
            else:
                continue
            pending.extend(available[n] for n in names if n in available and n not in seen)
    return sorted(seen.values())


def code_files(source_dir: Path = TRAINING_DIR) -> dict[str, Path]:
    """``code/``'s contents: name inside ``code/`` -> the file to copy there."""
    files = {path.name: path for path in serving_modules(source_dir)}
    requirements = Path(source_dir) / REQUIREMENTS
    if requirements.is_file():
        files["requirements.txt"] = requirements
    return files


def write_code_dir(target: Path, source_dir: Path = TRAINING_DIR) -> Path:
    """``code/`` written to ``target``."""
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    for name, path in code_files(source_dir).items():
        shutil.copy2(path, target / name)
    return target
