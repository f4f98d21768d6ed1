"""Lint, types and the layout rules of DESIGN.md, checked as part of the suite."""

from __future__ import annotations

import ast
import functools
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PACKAGES = (
    "graph",
    "nodes",
    "llm",
    "ml",
    "exchange",
    "store",
    "prompts",
    "policy",
    "evaluation",
    "alerts",
    "news",
    "api",
    "app",
)


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


# Import loops ---------------------------------------------------------------------------------
# graph/builder.py wires the nodes into the graph, so it sits above nodes/ while the rest of
# graph/ sits below it; it counts as its own unit here, and is the only such exception.
COMPOSERS = ("graph.builder",)


@functools.cache
def _module_imports() -> dict[str, set[str]]:
    """Every project module and the project modules it imports (directly, anywhere in it)."""
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"][
        "importlinter"
    ]["root_packages"]
    graph = grimp.build_graph(*packages)
    return {
        module: set(graph.find_modules_directly_imported_by(module)) for module in graph.modules
    }


def _loops(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    loops: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(edges.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                loops.append(sorted(group))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return loops


def _unit(module: str) -> str:
    for composer in COMPOSERS:
        if module == composer or module.startswith(composer + "."):
            return composer
    return module.split(".")[0]


def test_top_level_packages_import_each_other_without_a_loop() -> None:
    package_edges: dict[str, set[str]] = {}
    for module, imported in _module_imports().items():
        for target in imported:
            if _unit(module) != _unit(target):
                package_edges.setdefault(_unit(module), set()).add(_unit(target))

    assert _loops(package_edges) == []


def test_no_module_imports_itself_through_a_loop() -> None:
    assert _loops(_module_imports()) == []


def test_the_loop_check_finds_a_loop_between_packages() -> None:
    edges = {"graph": {"nodes"}, "nodes": {"graph", "policy"}, "policy": set()}

    assert _loops(edges) == [["graph", "nodes"]]
