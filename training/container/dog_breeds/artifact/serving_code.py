"""The serving container's ``code/`` directory and the ``model.tar.gz`` that carries it.

``code/``: ``endpoint_inference.py``, every module of the source folder it imports (following
dotted and relative imports, with their packages' ``__init__.py``), and
``requirements-serving.txt`` as ``requirements.txt``. ``package_model`` writes a model dir and
``code/`` into a ``model.tar.gz`` as SageMaker stores it.

Kept free of torch so that the launchers can stage it without loading the model code.
"""

from __future__ import annotations

import ast
import shutil
import tarfile
from pathlib import Path

SOURCE_DIR = Path(__file__).resolve().parents[2]  # training/container: the estimator's source_dir
ENTRY_POINT = "endpoint_inference.py"
REQUIREMENTS = "requirements-serving.txt"


def _module_file(source_dir: Path, dotted: str) -> Path | None:
    """The file of ``dotted`` in ``source_dir`` (a module or a package), if it is one of ours."""
    base = source_dir.joinpath(*dotted.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _package_of(source_dir: Path, path: Path) -> list[str]:
    """The package a file belongs to (``a/b/c.py`` and ``a/b/__init__.py``: ``a.b``)."""
    return list(path.relative_to(source_dir).parts[:-1])


def _imported_names(source_dir: Path, path: Path) -> set[str]:
    """Every dotted name ``path`` may import (also inside functions), relative ones resolved."""
    names: set[str] = set()
    package = _package_of(source_dir, path)
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            if module:
                names.add(module)
                names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def serving_modules(source_dir: Path = SOURCE_DIR) -> list[Path]:
    """The entry point and every module of ``source_dir`` it imports, transitively, with the
    ``__init__.py`` of each package on the way, so ``code/`` holds what ``endpoint_inference.py``
    needs and nothing of the training code."""
    source_dir = Path(source_dir).resolve()
    seen: set[Path] = set()
    pending = [source_dir / ENTRY_POINT]
    while pending:
        path = pending.pop()
        if path in seen:
            continue
        seen.add(path)
        for dotted in _imported_names(source_dir, path):
            parts = dotted.split(".")
            for depth in range(1, len(parts) + 1):  # a.b.c needs a/__init__ and a/b/__init__
                found = _module_file(source_dir, ".".join(parts[:depth]))
                if found is not None and found not in seen:
                    pending.append(found)
    return sorted(seen)


def code_files(source_dir: Path = SOURCE_DIR) -> dict[str, Path]:
    """``code/``'s contents: path inside ``code/`` -> the file to copy there."""
    source_dir = Path(source_dir).resolve()
    files = {path.relative_to(source_dir).as_posix(): path for path in serving_modules(source_dir)}
    requirements = source_dir / REQUIREMENTS
    if requirements.is_file():
        files["requirements.txt"] = requirements
    return files


def write_code_dir(target: Path, source_dir: Path = SOURCE_DIR) -> Path:
    """``code/`` written to ``target``."""
    target = Path(target)
    for name, path in code_files(source_dir).items():
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target / name)
    return target


def package_model(model_dir: Path, tar_path: Path, with_code: bool = True) -> Path:
    """``model.tar.gz`` as SageMaker stores it, plus (``with_code``) ``code/`` holding the serving
    modules and ``requirements-serving.txt`` as ``code/requirements.txt``, so the PyTorch serving
    container runs it with ``SAGEMAKER_PROGRAM=endpoint_inference.py`` and no repacking."""
    model_dir, tar_path = Path(model_dir), Path(tar_path)
    tar_path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tar_path, "w:gz") as tar:
        for path in sorted(model_dir.iterdir()):
            if path.name != "code":
                tar.add(path, arcname=path.name)
        if with_code:
            for name, path in code_files().items():
                tar.add(path, arcname=f"code/{name}")
    return tar_path
