"""The project's modules import each other without cycles, and the pure packages never reach
up into the node process.

Read from the source (the AST), not by importing: only imports run when a module is loaded
count, so imports inside functions (the CLI's lazy command groups) and under
`if TYPE_CHECKING:` do not.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("consensus", "scheduler", "netoverlay", "node")
PURE = ("consensus", "scheduler", "netoverlay")


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules(root: Path = ROOT, packages: tuple[str, ...] = PACKAGES) -> dict[str, Path]:
    return {module_name(p, root): p for pkg in packages for p in (root / pkg).rglob("*.py")}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _load_time_imports(body: list[ast.stmt]):
    """The import statements run when the module is loaded: module level, and inside
    module-level if/try/with blocks, except `if TYPE_CHECKING:`."""
    for stmt in body:
        if isinstance(stmt, (ast.Import, ast.ImportFrom)):
            yield stmt
        elif isinstance(stmt, ast.If):
            if not _is_type_checking(stmt.test):
                yield from _load_time_imports(stmt.body)
            yield from _load_time_imports(stmt.orelse)
        elif isinstance(stmt, ast.Try):
            for block in (stmt.body, stmt.orelse, stmt.finalbody, *(h.body for h in stmt.handlers)):
                yield from _load_time_imports(block)
        elif isinstance(stmt, ast.With):
            yield from _load_time_imports(stmt.body)


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for stmt in _load_time_imports(ast.parse(path.read_text(), str(path)).body):
        if isinstance(stmt, ast.Import):
            targets = [alias.name for alias in stmt.names]
        else:
            base = stmt.module or ""
            if stmt.level:
                anchor = package.split(".")[: len(package.split(".")) - stmt.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            # `from pkg import sub` loads the submodule; `from mod import name` loads mod.
            targets = [
                f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in stmt.names
            ]
        found.update(t for t in targets if t in modules and t != name)
    return found


def import_graph(root: Path = ROOT, packages: tuple[str, ...] = PACKAGES) -> dict[str, set[str]]:
    modules = project_modules(root, packages)
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path that starts and ends at the same module, if any."""
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_the_project_has_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_pure_packages_never_import_node():
    reach_up = sorted(
        f"{m} imports {t}"
        for m, targets in import_graph().items()
        if m.split(".")[0] in PURE
        for t in targets
        if t.split(".")[0] == "node"
    )
    assert reach_up == []


def test_the_pure_packages_do_not_import_node_even_lazily():
    """Imports inside functions do not make cycles, but they would still tie a pure package
    to the node process."""
    offenders = []
    for name, path in project_modules().items():
        if name.split(".")[0] not in PURE:
            continue
        for stmt in ast.walk(ast.parse(path.read_text())):
            if isinstance(stmt, ast.Import):
                targets = [a.name for a in stmt.names]
            elif isinstance(stmt, ast.ImportFrom) and not stmt.level:
                targets = [stmt.module or ""]
            else:
                continue
            offenders += [f"{name} imports {t}" for t in targets if t.split(".")[0] == "node"]
    assert offenders == []


def test_the_checker_finds_a_cycle_and_ignores_what_loads_later(tmp_path):
    """The checker itself: a two-module cycle is reported; the same imports inside a function
    or under TYPE_CHECKING are not edges."""
    pkg = tmp_path / "node"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from node import b\n")
    (pkg / "b.py").write_text("from node.a import thing\n")
    (pkg / "c.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from node.d import x\n"
    )
    (pkg / "d.py").write_text("def f():\n    from node.c import y\n")
    graph = import_graph(tmp_path, ("node",))
    assert graph["node.c"] == set() and graph["node.d"] == set()
    assert find_cycle(graph) == ["node.a", "node.b", "node.a"]


def test_runtime_drivers_import_nothing_of_the_node_above_them():
    reach_up = sorted(
        f"{m} imports {t}"
        for m, targets in import_graph().items()
        if m.startswith("node.runtime")
        for t in targets
        if t.startswith("node.") and not t.startswith("node.runtime")
    )
    assert reach_up == []


def test_api_handlers_do_not_name_the_node_process():
    """Handlers see the node through node.api.context.NodeContext, even for type checks."""
    named = sorted(
        str(p.relative_to(ROOT))
        for p in (ROOT / "node" / "api").glob("*.py")
        if "node.server" in p.read_text()
    )
    assert named == []
