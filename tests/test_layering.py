"""Layers of design.md: edge imports no torch, distill or export; distill never imports export;
no import cycle among the modules of edge, distill and export."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO

FORBIDDEN = {
    "edge": {"torch", "distill", "export", "tensorflow", "librosa"},
    "distill": {"export"},
}


def imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_only_layers_below(package: str) -> None:
    offenders = {
        str(path.relative_to(REPO)): sorted(imported_roots(path) & FORBIDDEN[package])
        for path in (REPO / package).rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def run_imports(tree: ast.Module) -> Iterator[ast.Import | ast.ImportFrom]:
    """The import statements of a module, at module level or inside a function, but not
    those under `if TYPE_CHECKING:` (annotations only, never run)."""
    todo: list[ast.AST] = [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If) and ast.unparse(node.test).endswith("TYPE_CHECKING"):
            todo.extend(node.orelse)
        else:
            todo.extend(ast.iter_child_nodes(node))


def module_imports(root: Path, packages: tuple[str, ...]) -> dict[str, set[str]]:
    """Per module of `packages` under `root`, the modules of `packages` it imports when it
    runs (run_imports; `from pkg import name` counts as pkg.name where that is a module, else
    as pkg)."""
    paths = {
        ".".join(p.relative_to(root).with_suffix("").parts).removesuffix(".__init__"): p
        for package in packages
        for p in (root / package).rglob("*.py")
    }
    graph = {}
    for name, path in paths.items():
        package = (name if path.name == "__init__.py" else name.rpartition(".")[0]).split(".")
        targets = set()
        for node in run_imports(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from the package, one level up per extra dot
                    parent = ".".join(package[: len(package) - node.level + 1])
                    base = f"{parent}.{base}".rstrip(".")
                targets |= {
                    f"{base}.{alias.name}" if f"{base}.{alias.name}" in paths else base
                    for alias in node.names
                }
        graph[name] = (targets & paths.keys()) - {name}
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[tuple[str, ...]]:
    """The groups of modules that import each other, directly or through others."""
    reach = {}
    for start in graph:
        seen, todo = set(), [start]
        while todo:
            for target in graph[todo.pop()] - seen:
                seen.add(target)
                todo.append(target)
        reach[start] = seen
    return sorted(
        {tuple(sorted(m for m in reach[s] if s in reach[m])) for s in graph if s in reach[s]}
    )


def test_no_import_cycle_among_the_modules() -> None:
    assert import_cycles(module_imports(REPO, ("edge", "distill", "export"))) == []


def test_cycles_count_function_level_imports_not_typing_only_ones(
    tmp_path: Path,
) -> None:
    (tmp_path / "pkg" / "sub").mkdir(parents=True)
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "sub" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "a.py").write_text("from pkg.sub import b\n")
    (tmp_path / "pkg" / "sub" / "b.py").write_text("def f():\n    from ..a import g\n")
    (tmp_path / "pkg" / "c.py").write_text("import pkg.a\n")
    typing_only = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import c\n"
    (tmp_path / "pkg" / "d.py").write_text(typing_only + "else:\n    import pkg.a\n")
    graph = module_imports(tmp_path, ("pkg",))
    assert graph["pkg.sub.b"] == graph["pkg.c"] == graph["pkg.d"] == {"pkg.a"}
    assert import_cycles(graph) == [("pkg.a", "pkg.sub.b")]


def test_importing_every_edge_module_loads_no_torch() -> None:
    modules = sorted(
        ".".join(p.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
        for p in (REPO / "edge").rglob("*.py")
        if p.name != "__main__.py"  # runs a command when imported
    )
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "bad = sorted(m for m in ('torch', 'distill', 'export') if m in sys.modules)\n"
        "print(bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_cli_help_needs_no_torch() -> None:
    code = (
        "import sys\nfrom edge.cli import build_parser, load_commands\n"
        "build_parser(load_commands()).format_help()\nprint('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
