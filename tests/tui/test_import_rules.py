"""The TUI's imports: screens never reach for the app, nothing reaches for the commands.

Read with `ast`, so that an import inside a function or under ``TYPE_CHECKING`` counts as
much as one at the top: either kind makes a cycle a reader has to untangle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

TUI = Path(__file__).resolve().parents[2] / "tui" / "kexproxy_tui"
MODULES = sorted(TUI.rglob("*.py"))
#: What the TUI must never import: the command line is its caller, the console sink's Rich
#: tables are not its presentation (kexproxy.present is).
FORBIDDEN = ("kexproxy.commands", "kexproxy.cli", "kexproxy.sinks.console")


def module_name(path: Path) -> str:
    parts = path.relative_to(TUI.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path) -> set[str]:
    """Every module `path` names in an import, ``from a import b`` counting as ``a`` and ``a.b``."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles of `graph`, each as a path that ends where it starts."""
    found: list[list[str]] = []
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        if name in path:
            found.append([*path[path.index(name) :], name])
            return
        if name in done:
            return
        for dep in sorted(graph.get(name, ())):
            visit(dep, [*path, name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])
    return found


def tui_graph() -> dict[str, set[str]]:
    names = {module_name(p): p for p in MODULES}
    return {
        name: {dep for dep in imported(path) if dep in names and dep != name}
        for name, path in names.items()
    }


def test_every_tui_module_is_found() -> None:
    names = {module_name(p) for p in MODULES}
    assert {"kexproxy_tui.app", "kexproxy_tui.screens.sessions"} <= names


@pytest.mark.parametrize("path", MODULES, ids=module_name)
def test_the_tui_never_imports_the_command_line(path: Path) -> None:
    bad = sorted(
        name
        for name in imported(path)
        if any(name == f or name.startswith(f + ".") for f in FORBIDDEN)
    )
    assert bad == [], f"{module_name(path)} imports {bad}"


@pytest.mark.parametrize("path", sorted((TUI / "screens").glob("*.py")), ids=module_name)
def test_a_screen_never_imports_the_app(path: Path) -> None:
    assert not {"kexproxy_tui.app", "kexproxy_tui.app.KexproxyApp"} & imported(path)


def test_no_import_cycle_in_the_tui() -> None:
    assert cycles(tui_graph()) == []


def test_the_cycle_check_finds_a_cycle() -> None:
    """The check of the check: a screen that imports the app closes a cycle, and it is found."""
    graph = tui_graph()
    graph["kexproxy_tui.screens.detail"] = {
        *graph["kexproxy_tui.screens.detail"],
        "kexproxy_tui.app",
    }
    assert ["kexproxy_tui.app", "kexproxy_tui.screens.detail", "kexproxy_tui.app"] in cycles(graph)
