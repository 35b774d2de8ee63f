"""The layout's rules, read from the source: each package imports only what runs where it runs,
no module edits ``sys.path``, and no import cycle exists between our modules."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# Top-level package -> the folder it lives in (as pyproject.toml maps them).
PACKAGES = {
    "classify_upload": REPO / "lambdas" / "classify_upload" / "classify_upload",
    "classify_ops": REPO / "ops" / "classify_ops",
    "dog_breeds": REPO / "training" / "container" / "dog_breeds",
    "training": REPO / "training",
    "local": REPO / "local",
}
ENTRY_SCRIPTS = [
    REPO / "training" / "container" / "train.py",
    REPO / "training" / "container" / "endpoint_inference.py",
]
# training/container is no package: its entry scripts run by bare name, the rest is dog_breeds.
# What each place may import of ours: the containers and Lambda ship alone.
ALLOWED = {
    "classify_upload": {"classify_upload"},
    # The operator commands run on the operator's machine; they read the table's names.
    "classify_ops": {"classify_ops", "classify_upload"},
    "dog_breeds": {"dog_breeds"},
    "training": {"training", "dog_breeds"},
    "train": {"dog_breeds"},
    "endpoint_inference": {"dog_breeds"},
    "local": {"local", "dog_breeds", "classify_upload", "training"},
}
# Inside local/, one sub-package per concern -> what of local/ it may import. Emulated AWS knows
# nothing of what runs on it; the function and the endpoint know nothing of each other, of the
# stack that starts them or of the demo; only the stack, the ``up`` command, the demo and parity
# orchestrate. A module follows its concern's rule (the longest key it starts with).
LOCAL_ALLOWED = {
    "local": set(),
    "local.__main__": {"local.up", "local.demo"},
    "local.signals": set(),
    "local.aws": {"local.aws"},
    "local.function": {"local.function", "local.aws"},
    "local.endpoint": {"local.endpoint"},
    "local.stack": {"local.aws", "local.function", "local.endpoint", "local.demo.default_model"},
    "local.up": {"local.stack", "local.endpoint", "local.signals", "local.demo.default_model"},
    "local.demo": {"local.demo", "local.stack", "local.up", "local.signals"},
    "local.parity": {"local.parity", "local.stack", "local.function", "local.demo.default_model"},
}
# Run as scripts by path, each in a process of its own that must not see this repository.
WORKER_SCRIPTS = [
    PACKAGES["local"] / "function" / "worker.py",
    PACKAGES["local"] / "endpoint" / "worker.py",
]


CONTAINER = REPO / "training" / "container"


def module_name(path: Path) -> str:
    if path.is_relative_to(CONTAINER) and not path.is_relative_to(PACKAGES["dog_breeds"]):
        return path.stem  # an entry script: SageMaker imports it by its bare name
    folder = next(f for f in PACKAGES.values() if path.is_relative_to(f))
    parts = path.relative_to(folder.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def source_files() -> list[Path]:
    files = {p for folder in PACKAGES.values() for p in folder.rglob("*.py")}
    return sorted(files)


def imports_of(path: Path) -> set[str]:
    """Every module of ours that ``path`` imports, at the top or inside functions."""
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    known = {module_name(p) for p in source_files()}
    return {n for n in names if n in known}


def test_no_module_edits_sys_path():
    edits = ("sys.path." + "insert", "sys.path." + "append", "sys.path" + " = ")
    offenders = [
        str(p.relative_to(REPO))
        for p in [*source_files(), *(REPO / "tests").rglob("*.py")]
        if any(edit in p.read_text() for edit in edits)
    ]
    assert not offenders


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_each_package_imports_only_what_ships_beside_it(package):
    outside = {
        f"{module_name(p)} imports {name}"
        for p in source_files()
        if module_name(p).split(".")[0] == package
        for name in imports_of(p)
        if name.split(".")[0] not in ALLOWED[package]
    }
    assert not outside


def local_rule(module: str) -> str:
    return max((k for k in LOCAL_ALLOWED if module == k or module.startswith(f"{k}.")), key=len)


def local_allows(rule: str, name: str) -> bool:
    """``name`` is allowed, or is a package on the way to an allowed module (its ``__init__``)."""
    return any(
        name == a or name.startswith(f"{a}.") or a.startswith(f"{name}.")
        for a in LOCAL_ALLOWED[rule] | {rule}
    )


def local_modules() -> list[Path]:
    return [p for p in source_files() if module_name(p).split(".")[0] == "local"]


def test_every_local_concern_has_a_rule():
    concerns = {".".join(module_name(p).split(".")[:2]) for p in local_modules()}
    assert concerns == set(LOCAL_ALLOWED)


@pytest.mark.parametrize("rule", sorted(LOCAL_ALLOWED))
def test_each_local_concern_imports_only_the_layers_below_it(rule):
    outside = {
        f"{module_name(p)} imports {name}"
        for p in local_modules()
        if local_rule(module_name(p)) == rule
        for name in imports_of(p)
        if name.split(".")[0] == "local" and not local_allows(rule, name)
    }
    assert not outside


def test_the_worker_scripts_import_nothing_of_ours():
    for script in WORKER_SCRIPTS:
        assert script.is_file()
        assert imports_of(script) == set()


def test_the_entry_scripts_import_only_the_model_package():
    for script in ENTRY_SCRIPTS:
        assert {n.split(".")[0] for n in imports_of(script)} == {"dog_breeds"}


def test_there_is_no_import_cycle():
    graph = {module_name(p): imports_of(p) - {module_name(p)} for p in source_files()}
    # A package's __init__ is imported on the way to its modules, not a dependency of theirs.
    graph = {m: {n for n in deps if not m.startswith(f"{n}.")} for m, deps in graph.items()}
    done: set[str] = set()
    path: list[str] = []

    def visit(module: str) -> None:
        if module in path:
            pytest.fail("import cycle: " + " -> ".join([*path[path.index(module) :], module]))
        if module in done:
            return
        path.append(module)
        for dependency in sorted(graph.get(module, ())):
            visit(dependency)
        path.pop()
        done.add(module)

    for module in sorted(graph):
        visit(module)
