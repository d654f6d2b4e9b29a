"""The TUI's imports: screens never reach for the app, nothing reaches for the commands.

Read with `ast` by tests/hygiene.py, so that an import inside a function or under
``TYPE_CHECKING`` counts as much as one at the top: either kind makes a cycle a reader has
to untangle.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import hygiene

ROOT = Path(__file__).resolve().parents[2]
MODULES = [m for m in hygiene.modules(ROOT) if m.name.split(".")[0] == hygiene.TUI]
KNOWN = {m.name for m in hygiene.modules(ROOT)}
#: What the TUI must never import: the command line is its caller, the console sink's Rich
#: tables are not its presentation (kexproxy.present is).
FORBIDDEN = ("kexproxy.commands", "kexproxy.cli", "kexproxy.sinks.console")


def test_every_tui_module_is_found() -> None:
    names = {m.name for m in MODULES}
    assert {"kexproxy_tui.app", "kexproxy_tui.screens.sessions"} <= names


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.name)
def test_the_tui_never_imports_the_command_line(module: hygiene.Module) -> None:
    bad = sorted(
        name
        for name in hygiene.imports(module, KNOWN)
        if any(name == f or name.startswith(f + ".") for f in FORBIDDEN)
    )
    assert bad == [], f"{module.name} imports {bad}"


@pytest.mark.parametrize(
    "module",
    [m for m in MODULES if m.name.startswith("kexproxy_tui.screens")],
    ids=lambda m: m.name,
)
def test_a_screen_never_imports_the_app(module: hygiene.Module) -> None:
    assert "kexproxy_tui.app" not in hygiene.imports(module, KNOWN)


def _tui_graph() -> dict[str, list[str]]:
    return {
        name: [dep for dep in deps if dep.split(".")[0] == hygiene.TUI]
        for name, deps in hygiene.import_graph(ROOT).items()
        if name.split(".")[0] == hygiene.TUI
    }


def test_no_import_cycle_in_the_tui() -> None:
    assert hygiene.find_cycles(_tui_graph()) == []


def test_the_cycle_check_finds_a_cycle() -> None:
    """The check of the check: a screen that imports the app closes a cycle, and it is found."""
    graph = _tui_graph()
    graph["kexproxy_tui.screens.detail"] = [
        *graph["kexproxy_tui.screens.detail"],
        "kexproxy_tui.app",
    ]
    assert any(
        {"kexproxy_tui.app", "kexproxy_tui.screens.detail"} <= set(cycle)
        for cycle in hygiene.find_cycles(graph)
    )
