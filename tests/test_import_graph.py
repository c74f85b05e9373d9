"""The folders are the architecture: the engine never reaches into the interface, and no import cycle
ties two modules together (a cycle makes import order matter and hides a missing seam).

Read from the source with ``ast``, so the test sees every import without importing anything:
module-level ones, the lazy ones inside functions and the ``if TYPE_CHECKING:`` ones. A lazy
import does not make a cycle harmless, it only hides it, so all of them count.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# The CLI is the one place the engine's side may open the interface (`hpotui` with no verb).
ENGINE_MAY_IMPORT_TUI = {"engine.cli"}


def _modules(root: Path = REPO) -> dict[str, Path]:
    found = {}
    for top in ("engine", "tui"):
        for path in (root / top).rglob("*.py"):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _targets(module: str, node: ast.ImportFrom, is_package: bool, known: set[str]) -> set[str]:
    """The project modules an ``from ... import ...`` names (relative, or absolute through ``hpotui.``)."""
    package = module.split(".") if is_package else module.split(".")[:-1]
    if node.level:
        base = package[:len(package) - (node.level - 1)]
        target = base + (node.module.split(".") if node.module else [])
    elif node.module and node.module.startswith("hpotui."):
        target = node.module.split(".")[1:]
    else:
        return set()
    names = {".".join(target)} | {".".join([*target, alias.name]) for alias in node.names}
    return {name for name in names if name in known and name != module}


def _graph(*, module_level_only: bool, root: Path = REPO) -> dict[str, set[str]]:
    modules = _modules(root)
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        tree = ast.parse(path.read_text())
        nodes = tree.body if module_level_only else list(ast.walk(tree))
        graph[module] = set()
        for node in nodes:
            if isinstance(node, ast.ImportFrom):
                graph[module] |= _targets(module, node, path.name == "__init__.py", set(modules))
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                top = stack.pop()
                group.append(top)
                if top == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in graph:
        if node not in index:
            visit(node)
    return groups


def test_the_engine_imports_the_interface_only_from_the_cli_entry() -> None:
    graph = _graph(module_level_only=False)
    reaching = {module: sorted(t for t in targets if t.startswith("tui"))
                for module, targets in graph.items() if module.startswith("engine")}
    offenders = {m: t for m, t in reaching.items() if t and m not in ENGINE_MAY_IMPORT_TUI}
    assert offenders == {}


def test_no_module_level_import_cycles() -> None:
    assert _cycles(_graph(module_level_only=True)) == []


def test_no_import_cycles_through_lazy_or_type_checking_imports() -> None:
    assert _cycles(_graph(module_level_only=False)) == []


def test_the_cycle_finder_sees_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": set()}) == [["a", "b"]]


def test_a_cycle_closed_by_an_import_inside_a_function_is_found(tmp_path: Path) -> None:
    """The case the lazy imports used to hide: ``store`` imports ``liveness`` in a method, ``liveness`` imports ``store``."""
    (tmp_path / "engine").mkdir()
    (tmp_path / "engine" / "__init__.py").write_text("")
    (tmp_path / "engine" / "store.py").write_text("def lock():\n    from .liveness import alive\n    return alive\n")
    (tmp_path / "engine" / "liveness.py").write_text("from .store import HOST\n\ndef alive():\n    return HOST\n")
    (tmp_path / "engine" / "typed.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                                 "    from .other import Thing\n")
    (tmp_path / "engine" / "other.py").write_text("from .typed import helper\n")
    assert _cycles(_graph(module_level_only=True, root=tmp_path)) == []
    assert sorted(_cycles(_graph(module_level_only=False, root=tmp_path))) == [["engine.liveness", "engine.store"],
                                                                              ["engine.other", "engine.typed"]]
