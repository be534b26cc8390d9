"""The package's layout as a contract: no import cycles, and the router knows nothing of the middlewares.

Read from the source (every ``import`` statement, at module level or inside a function, except those
under ``if TYPE_CHECKING:``), so a lazy import inside a function cannot hide a cycle.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "asgi_aigw"
MIDDLEWARE_PACKAGES = ("tenant", "budget", "redact", "cache", "logs", "trace")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                yield from _imports(child)
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        yield from _imports(node)


def import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports (``from .x import y`` names ``x.y`` when y is a module)."""
    files = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in _imports(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                bases = [alias.name for alias in node.names]
            else:
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join(anchor + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                bases = [
                    f"{base}.{alias.name}" if f"{base}.{alias.name}" in files else base
                    for alias in node.names
                ]
            for base in bases:
                # the module itself, or the closest package of the package that holds it
                while base and base not in files:
                    base = base.rpartition(".")[0]
                if base.startswith("asgi_aigw") and base != name:
                    targets.add(base)
        graph[name] = targets
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
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
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_graph_is_read() -> None:
    graph = import_graph()
    # a known edge of each kind: relative, from a parent package, a submodule named in the import list
    assert "asgi_aigw.kernel.types" in graph["asgi_aigw.kernel.body"]
    assert "asgi_aigw.kernel.errors" in graph["asgi_aigw.router.app"]
    assert "asgi_aigw.budget.lua" in graph["asgi_aigw.budget.redis"]


def test_no_module_imports_a_module_that_imports_it() -> None:
    assert cycles(import_graph()) == []


def test_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize("part", ["router", "providers", "kernel", "stores"])
def test_the_lower_layers_import_no_middleware(part: str) -> None:
    graph = import_graph()
    prefix = f"asgi_aigw.{part}"
    offending = {
        module: sorted(t for t in targets if t.split(".")[1] in MIDDLEWARE_PACKAGES)
        for module, targets in graph.items()
        if module == prefix or module.startswith(prefix + ".")
    }
    assert {module: found for module, found in offending.items() if found} == {}


def test_the_kernel_imports_only_itself() -> None:
    graph = import_graph()
    outside = {
        module: sorted(t for t in targets if not t.startswith("asgi_aigw.kernel"))
        for module, targets in graph.items()
        if module.startswith("asgi_aigw.kernel")
    }
    assert {module: found for module, found in outside.items() if found} == {}
