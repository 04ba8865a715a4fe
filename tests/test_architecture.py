"""The package map of docs/architecture.md holds: stages import only lower layers, never each other,
and no module imports another that (directly or through others) imports it back.

The layer order is read from docs/architecture.md (the fenced block after ``<!-- layers -->``), so
the picture and this test cannot drift apart.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "simcit_dist"


def declared_layers() -> list[list[str]]:
    text = (REPO / "docs" / "architecture.md").read_text()
    match = re.search(r"<!-- layers -->\s*```[a-z]*\n(.*?)```", text, re.S)
    assert match, "docs/architecture.md has no ```-fenced layer list after <!-- layers -->"
    return [[p.strip() for p in line.split(",") if p.strip()] for line in match.group(1).splitlines() if line.strip()]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, known: set[str]) -> list[tuple[str, int, bool]]:
    """(module, line, at_module_level) for every import of a simcit_dist module in ``path``,
    including the ones under ``if TYPE_CHECKING`` and inside functions: a cycle hidden there is
    still a cycle in the design."""
    tree = ast.parse(path.read_text())
    top_level = {id(node) for node in tree.body}
    top_level |= {id(n) for node in tree.body if isinstance(node, ast.If) for n in ast.walk(node)}
    found: list[tuple[str, int, bool]] = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in known else node.module
                     for a in node.names]
        for name in names:
            if name.startswith("simcit_dist"):
                found.append((name, node.lineno, id(node) in top_level))
    return found


def import_graph() -> dict[str, list[tuple[str, int, bool]]]:
    files = sorted(PACKAGE.rglob("*.py"))
    known = {module_name(f) for f in files}
    return {module_name(f): imported_modules(f, known) for f in files}


def package_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def test_every_package_is_in_exactly_one_layer() -> None:
    layers = declared_layers()
    flat = [p for layer in layers for p in layer]
    assert len(flat) == len(set(flat)), f"a package is listed twice: {flat}"
    packages = {package_of(m) for m in import_graph() if m != "simcit_dist"}
    assert packages == set(flat), (f"packages missing from docs/architecture.md: {sorted(packages - set(flat))}; "
                                   f"listed but absent: {sorted(set(flat) - packages)}")


def test_no_upward_or_sideways_imports() -> None:
    rank = {p: i for i, layer in enumerate(declared_layers()) for p in layer}
    bad = []
    for module, imports in import_graph().items():
        if module == "simcit_dist":
            continue
        src = package_of(module)
        for target, line, _ in imports:
            dst = package_of(target)
            if dst != src and rank[dst] >= rank[src]:
                bad.append(f"{module}:{line} imports {target} ({dst} is not below {src})")
    assert not bad, "imports against the layer order:\n" + "\n".join(bad)


def test_no_import_cycles_between_modules() -> None:
    graph = {m: {t for t, _, _ in imps if t in import_graph_keys()} for m, imps in import_graph().items()}
    cycles = strongly_connected(graph)
    assert not cycles, f"import cycles (each set imports itself through the others): {cycles}"


def import_graph_keys() -> set[str]:
    return {module_name(f) for f in PACKAGE.rglob("*.py")}


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm; returns the components with more than one module (or a self-import)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in graph.get(v, ()):
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_function_local_imports_of_our_modules_say_why() -> None:
    """A function-local import of our own code is either a deliberately deferred heavy dependency
    (the line says why in a comment) or a hidden cycle."""
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        lines = path.read_text().splitlines()
        for target, line, top in imported_modules(path, import_graph_keys()):
            if not top and "#" not in lines[line - 1] and "#" not in lines[line - 2]:
                bad.append(f"{module_name(path)}:{line} imports {target} inside a function without a reason")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("graph, expected", [({"a": {"b"}, "b": {"a"}, "c": set()}, [["a", "b"]]),
                                             ({"a": {"b"}, "b": {"c"}, "c": set()}, [])])
def test_cycle_finder(graph: dict[str, set[str]], expected: list[list[str]]) -> None:
    assert strongly_connected(graph) == expected
