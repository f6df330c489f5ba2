"""The shape of aq_core: no import circles between its modules, and no module over 450 lines.

Module-level imports count (``if TYPE_CHECKING:`` blocks included: a type checker follows them);
an import inside a function is lazy and does not.
"""

from __future__ import annotations

import ast
from pathlib import Path

import aq_core

PACKAGE = Path(aq_core.__file__).parent
MAX_LINES = 450


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(("aq_core", *parts))] = path
    return found


def _top_level(tree: ast.Module) -> list[ast.stmt]:
    """Statements run at import time, descending into if/try blocks but not into functions or classes."""
    out: list[ast.stmt] = []
    todo = list(tree.body)
    while todo:
        node = todo.pop(0)
        out.append(node)
        if isinstance(node, ast.If | ast.Try):
            todo.extend(node.body + node.orelse + getattr(node, "finalbody", []))
            for handler in getattr(node, "handlers", []):
                todo.extend(handler.body)
    return out


def import_graph() -> dict[str, set[str]]:
    known = modules()
    graph: dict[str, set[str]] = {name: set() for name in known}
    for name, path in known.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in _top_level(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(
                        package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                    )
                targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
            for target in targets:
                if target in known and target != name and target != "aq_core":
                    graph[name].add(target)
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
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                item = stack.pop()
                on_stack.discard(item)
                group.append(item)
                if item == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_graph_sees_module_level_imports_only() -> None:
    graph = import_graph()
    assert "aq_core.transitions" in graph["aq_core.runner"] or "aq_core.transitions" in graph["aq_core.inbox"]
    assert "aq_core.store" in graph["aq_core.transitions"]
    assert "aq_core.records" not in graph["aq_core.transitions"]  # imported inside a function: lazy
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_circles_in_aq_core() -> None:
    assert cycles(import_graph()) == []


def test_no_module_over_450_lines() -> None:
    long = {name: n for name, path in modules().items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_the_module_map_names_every_module_and_each_says_what_it_owns() -> None:
    page = (PACKAGE.parent / "docs" / "architecture.md").read_text()
    for name, path in modules().items():
        assert f"| `{path.name}` |" in page, f"docs/architecture.md: {path.name} is missing from the module map"
        assert ast.get_docstring(ast.parse(path.read_text())), f"{name} has no docstring saying what it owns"


def test_the_postgresql_stores_reads_ahead_have_one_home() -> None:
    # Per-thread answers read in an earlier round trip live in ``readahead.StoreAhead``; ``leases``
    # keeps the locks each thread holds. Any other module keeping its own would be a second home.
    keeping = {
        path.name
        for path in (PACKAGE / "store_pg").glob("*.py")
        if "threading.local()" in path.read_text() or "_local()" in path.read_text()
    }
    assert keeping == {"readahead.py", "leases.py"}
