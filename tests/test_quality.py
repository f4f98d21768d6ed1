"""Lint, types and the layout rules of DESIGN.md, checked as part of the suite."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PACKAGES = ("graph", "nodes", "ml", "exchange", "store", "prompts", "alerts", "api", "app")


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_ruff_finds_nothing() -> None:
    result = _run(str(BIN / "ruff"), "check", ".")

    assert result.returncode == 0, result.stdout + result.stderr


def test_code_is_ruff_formatted() -> None:
    result = _run(str(BIN / "ruff"), "format", "--check", ".")

    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_is_clean_on_package_code() -> None:
    result = _run(str(BIN / "mypy"))

    assert result.returncode == 0, result.stdout + result.stderr


def test_import_contracts_hold() -> None:
    result = _run(str(BIN / "lint-imports"))

    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize("package", [p for p in PACKAGES if p != "app"])
def test_only_app_reads_environment_variables(package: str) -> None:
    pattern = re.compile(r"os\.environ|os\.getenv|getenv\(")
    offenders = [
        str(path.relative_to(ROOT))
        for path in (ROOT / package).rglob("*.py")
        if pattern.search(path.read_text(encoding="utf-8"))
    ]

    assert offenders == []


@pytest.mark.parametrize("package", PACKAGES)
def test_package_init_has_no_side_effects(package: str) -> None:
    tree = ast.parse((ROOT / package / "__init__.py").read_text(encoding="utf-8"))
    statements = [
        node
        for node in tree.body
        if not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant))
        and not (isinstance(node, ast.ImportFrom) and node.module == "__future__")
    ]

    assert statements == []
