"""Who may import whom: the control plane and the agent share only the `bulkhead` package, the
CLI is a client of both and imports neither, and no package's modules import each other in a
circle (TYPE_CHECKING and function-level imports count too). Read from the sources' syntax."""

from __future__ import annotations

import ast
from collections.abc import Collection, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"bulkhead": ROOT / "proto" / "bulkhead", "cli": ROOT / "cli",
            "controlplane": ROOT / "controlplane", "nodeagent": ROOT / "nodeagent",
            "integration": ROOT / "integration"}
MAY_IMPORT = {
    "bulkhead": set(),
    "cli": {"bulkhead"},
    "controlplane": {"bulkhead"},
    "nodeagent": {"bulkhead"},
}


def modules() -> dict[str, Path]:
    found = {}
    for package, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = [package, *path.relative_to(folder).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def imported(name: str, path: Path, known: Collection[str]) -> Iterator[str]:
    """The modules the import statements in ``path`` name: for `from package import x`, the
    submodule package.x when it is one of ``known``, else the package."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")[: None if is_package else -1]
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join([*base, *([node.module] if node.module else [])])
            else:
                prefix = node.module or ""
            for alias in node.names:
                submodule = f"{prefix}.{alias.name}"
                yield submodule if submodule in known else prefix


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: {target for target in imported(name, path, mods)
                   if target in mods and target != name}
            for name, path in mods.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in edges:
        if v not in index:
            visit(v)
    return found


def test_no_import_circles() -> None:
    assert cycles(graph()) == []


@pytest.mark.parametrize("package", sorted(MAY_IMPORT))
def test_packages_import_only_what_they_may(package: str) -> None:
    others = set(PACKAGES) - MAY_IMPORT[package] - {package}
    wrong = sorted(f"{name} imports {target}"
                   for name, path in modules().items() if name.split(".")[0] == package
                   for target in imported(name, path, ()) if target.split(".")[0] in others)
    assert wrong == []
