"""Imports among strabench's modules form no circle, function-local imports included.

The graph is read from the source (``ast``), not from ``sys.modules``: an import inside a
function counts as much as one at the top, because it runs the moment the function does.
Imports under ``if TYPE_CHECKING:`` count too: a module that needs another's types for its
signatures sits above it as much as one that calls it.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "strabench"

# None today: any circle among strabench's modules fails the test.
KNOWN_CIRCLES: list[frozenset[str]] = []


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)



def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement, at any depth, those under ``if TYPE_CHECKING:`` included: a module
    that needs another's types for its signatures sits above it as much as one that calls it."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def import_graph() -> dict[str, set[str]]:
    """``module -> the strabench modules it imports`` (a name imported from a package that is a
    submodule counts as that submodule)."""
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        is_package = path.name == "__init__.py"
        for node in _imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    anchor = name.split(".") if is_package else name.split(".")[:-1]
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in files else base for alias in node.names]
            for target in targets:
                while target and target not in files and "." in target:  # `import a.b.c` of a name inside a module
                    target = target.rpartition(".")[0]
                if target in files and target != name:
                    graph[name].add(target)
    return graph


def circles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(frozenset(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return found


def _describe(component: frozenset[str], graph: dict[str, set[str]]) -> str:
    edges = sorted(f"{a} -> {b}" for a in component for b in graph[a] if b in component)
    return "{" + ", ".join(sorted(component)) + "} via " + "; ".join(edges)


def test_no_new_import_circles():
    graph = import_graph()
    found = circles(graph)
    new = [c for c in found if c not in KNOWN_CIRCLES]
    assert not new, "import circles among strabench modules:\n" + "\n".join(_describe(c, graph) for c in new)
    gone = [sorted(c) for c in KNOWN_CIRCLES if c not in found]
    assert not gone, f"these known circles are gone: delete them from KNOWN_CIRCLES: {gone}"


def test_the_registry_and_the_models_import_one_way():
    graph = import_graph()
    below_registry = {m for m in graph if m.startswith("strabench.models.")}
    assert not [m for m in below_registry if "strabench.registry" in graph[m]]
    assert {"strabench.models.zoo", "strabench.models.sources", "strabench.models.replace"} <= _reachable(graph, "strabench.registry")


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for nxt in graph[todo.pop()] - seen:
            seen.add(nxt)
            todo.append(nxt)
    return seen


def test_the_graph_sees_function_local_and_relative_imports(tmp_path, monkeypatch):
    """The reader itself, on a made-up package: a circle closed only by a function-local import
    is found, a TYPE_CHECKING import is an edge, relative imports resolve."""
    root = tmp_path / "strabench"
    (root / "sub").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "sub" / "__init__.py").write_text("from . import b\n")
    (root / "a.py").write_text("from strabench.sub.b import x\n")
    (root / "sub" / "b.py").write_text("def f():\n    import strabench.a\nx = 1\n")
    (root / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from strabench import a\n")
    (root / "sub" / "d.py").write_text("from ..c import y\nfrom .b import x\n")
    monkeypatch.setitem(globals(), "PACKAGE", root)
    graph = import_graph()
    assert graph["strabench.a"] == {"strabench.sub.b"} and graph["strabench.sub.b"] == {"strabench.a"}
    assert graph["strabench.c"] == {"strabench.a"}
    assert graph["strabench.sub.d"] == {"strabench.c", "strabench.sub.b"}
    assert graph["strabench.sub"] == {"strabench.sub.b"}
    assert circles(graph) == [frozenset({"strabench.a", "strabench.sub.b"})]


def test_long_modules_say_why_they_are_long():
    """A module over 600 lines opens with a comment saying why it is one file; otherwise it is split."""
    unexplained = []
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        if text.count("\n") > 600 and not text.startswith("# Over 600 lines on purpose: "):
            unexplained.append(f"{path.relative_to(PACKAGE.parent)} ({text.count(chr(10))} lines)")
    assert not unexplained, f"split these, or say at their top why they are one file: {unexplained}"


def test_every_public_name_resolves():
    """Each name a module's ``__all__`` lists is there, the lazily loaded ones of the packages
    (``strabench.train.evaluate_checkpoint`` and the like) included."""
    import importlib

    missing = []
    for path in sorted(PACKAGE.rglob("*.py")):
        name = module_name(path)
        if name.endswith(("__main__", "build_kernels")):  # scripts: importing one runs it
            continue
        module = importlib.import_module(name)
        for public in getattr(module, "__all__", ()):
            try:
                getattr(module, public)
            except AttributeError as exc:
                missing.append(f"{name}.{public}: {exc}")
    assert not missing, missing
