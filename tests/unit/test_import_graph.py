"""The layout's import rules, checked on the source so that they hold without anyone remembering them.

- no import circle between the runtime's modules;
- a command module (``commands/*``) imports no other command module;
- nothing outside ``commands/`` imports a command (the dispatcher loads
  commands by name from ``cli/registry.py``, so it needs no import).

Every ``import``/``from ... import`` counts, including those inside functions.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List, Set

import doow_track_agent

PACKAGE = "doow_track_agent"
ROOT = Path(doow_track_agent.__file__).parent


def _module_name(path: Path) -> str:
    parts = [PACKAGE, *path.relative_to(ROOT).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> Dict[str, Path]:
    return {_module_name(path): path for path in ROOT.rglob("*.py")}


def _imports(path: Path, known: Set[str]) -> Set[str]:
    """The package's modules that ``path`` imports (``from pkg import module`` names the module)."""
    found: Set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in known)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            submodules = {f"{node.module}.{alias.name}" for alias in node.names} & known
            found.update(submodules or ({node.module} & known))
    return found


def _graph() -> Dict[str, Set[str]]:
    modules = _modules()
    return {name: _imports(path, set(modules)) - {name} for name, path in modules.items()}


def _is_command(module: str) -> bool:
    return module.startswith(f"{PACKAGE}.commands.")


def _cycle(graph: Dict[str, Set[str]]) -> List[str]:
    """One import circle as a path of module names, or [] when there is none."""
    state: Dict[str, int] = {}
    stack: List[str] = []

    def visit(module: str) -> List[str]:
        state[module] = 1
        stack.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                return stack[stack.index(target):] + [target]
            if target not in state:
                found = visit(target)
                if found:
                    return found
        stack.pop()
        state[module] = 2
        return []

    for module in sorted(graph):
        if module not in state:
            found = visit(module)
            if found:
                return found
    return []


def test_the_graph_sees_the_imports_it_checks():
    graph = _graph()
    assert f"{PACKAGE}.modes.pipe.run" in graph[f"{PACKAGE}.commands.check"] | graph[f"{PACKAGE}.modes.pipe.check"]
    assert f"{PACKAGE}.intake.wire" in graph[f"{PACKAGE}.delivery.pump"]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_no_import_circle():
    assert _cycle(_graph()) == []


def test_no_command_imports_another_command():
    graph = _graph()
    offenders = {module: sorted(filter(_is_command, targets))
                 for module, targets in graph.items() if _is_command(module) and any(map(_is_command, targets))}
    assert offenders == {}


def test_nothing_outside_commands_imports_a_command():
    graph = _graph()
    offenders = {module: sorted(filter(_is_command, targets))
                 for module, targets in graph.items() if not _is_command(module) and any(map(_is_command, targets))}
    assert offenders == {}
