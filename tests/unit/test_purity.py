"""The domain and application layers read no clock, no randomness and do no I/O."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
PURE_FILES = sorted((SRC / "domain").glob("*.py")) + sorted(
    (SRC / "application").glob("*.py")
)

ALLOWED_PROJECT_PREFIXES = ("conveyor.domain", "conveyor.application")
FORBIDDEN_MODULES = {
    "random",
    "secrets",
    "time",
    "os",
    "socket",
    "asyncio",
    "threading",
}
FORBIDDEN_CALLS = {
    "now",
    "utcnow",
    "today",
    "time",
    "monotonic",
    "uuid1",
    "uuid4",
    "urandom",
}


def imported_modules(tree: ast.AST) -> set[str]:
    modules = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
    return modules


def called_names(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Attribute):
                names.add(func.attr)
            elif isinstance(func, ast.Name):
                names.add(func.id)
    return names


def test_pure_files_found() -> None:
    assert len(PURE_FILES) >= 8


@pytest.mark.parametrize("path", PURE_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_imports_stdlib_or_inner_layers(path: Path) -> None:
    tree = ast.parse(path.read_text())

    for module in imported_modules(tree):
        top = module.split(".")[0]
        if top == "conveyor":
            assert module.startswith(ALLOWED_PROJECT_PREFIXES), (
                f"{path.name} imports {module}"
            )
            if path.parent.name == "domain":
                assert module.startswith("conveyor.domain"), (
                    f"{path.name} imports {module}"
                )
        else:
            assert top in sys.stdlib_module_names, f"{path.name} imports {module}"
            assert top not in FORBIDDEN_MODULES, f"{path.name} imports {module}"


@pytest.mark.parametrize("path", PURE_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_no_clock_or_random_calls(path: Path) -> None:
    tree = ast.parse(path.read_text())

    found = called_names(tree) & FORBIDDEN_CALLS

    assert found == set(), f"{path.name} calls {sorted(found)}"
