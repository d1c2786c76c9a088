"""The rules between the modules (docs/design.md), read from the source's imports: the core never
imports the HTTP package, the CLI or the composition root; nothing imports the composition root;
and no two modules import each other, directly or around a circle (imports under TYPE_CHECKING
are for the type checker only and are left out)."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.support.paths import REPO

PACKAGES = ("app", "telemetry")
CORE_OUTSIDE = ("app.http", "app.cli", "app.main", "app.replay")  # what the core may not import


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def runtime_imports(path: Path, known: set[str]) -> set[str]:
    """The project modules `path` imports when it runs (not under `if TYPE_CHECKING:`)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    type_only: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            type_only.update(id(child) for child in ast.walk(node))
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found.update(name for name in names if name in known)
    return found


def graph() -> dict[str, set[str]]:
    paths = {module_name(p): p for package in PACKAGES for p in (REPO / package).rglob("*.py")}
    known = set(paths)
    return {name: runtime_imports(path, known) - {name} for name, path in paths.items()}


def is_core(name: str) -> bool:
    return name.startswith("app") and not name.startswith(CORE_OUTSIDE)


def test_the_core_imports_no_http_cli_or_composition_root() -> None:
    wrong = {name: sorted(i for i in imports if i.startswith(CORE_OUTSIDE))
             for name, imports in graph().items() if is_core(name)}
    assert {name: imports for name, imports in wrong.items() if imports} == {}


def test_nothing_imports_the_composition_root() -> None:
    assert [name for name, imports in graph().items() if "app.main" in imports] == []


def test_no_import_cycles() -> None:
    edges = graph()
    # A package's __init__ re-exporting its modules is not a cycle with them.
    edges = {name: {i for i in imports if not name.startswith(i + ".")} for name, imports in edges.items()}
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for target in sorted(edges.get(name, ())):
            if state.get(target) == 1:
                cycles.append(path[path.index(target):] + [target])
            elif target not in state:
                visit(target, path + [target])
        state[name] = 2

    for name in sorted(edges):
        if name not in state:
            visit(name, [name])
    assert cycles == []
