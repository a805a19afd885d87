"""The layers import only what the architecture allows."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"

# What each pure layer may import besides the standard library.
ALLOWED = {
    "domain": ("conveyor.domain",),
    "application": ("conveyor.domain", "conveyor.application"),
}


def imports_of(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    modules = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.append(node.module)
    return modules


def is_stdlib(module: str) -> bool:
    return module.split(".")[0] in sys.stdlib_module_names or module == "__future__"


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_pure_layer_imports_only_stdlib(layer: str) -> None:
    files = sorted((SRC / layer).rglob("*.py"))
    assert files

    outside = [
        f"{path.relative_to(ROOT)}: {module}"
        for path in files
        for module in imports_of(path)
        if not is_stdlib(module) and not module.startswith(ALLOWED[layer])
    ]

    assert outside == []


def test_pure_layers_use_absolute_imports() -> None:
    # The allow-list above reads absolute imports only.
    relative = [
        str(path.relative_to(ROOT))
        for layer in ALLOWED
        for path in (SRC / layer).rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ImportFrom) and node.level > 0
    ]

    assert relative == []


def test_import_linter_contracts_hold() -> None:
    lint_imports = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert lint_imports is not None, "lint-imports is missing; install the test extra"

    result = subprocess.run(
        [lint_imports, "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout
