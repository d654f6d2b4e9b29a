"""The core is sans-I/O: importing any of it pulls in no I/O, storage, UI or capture library.

Checked in a fresh interpreter (this one has long since imported everything), for every
module under kexproxy/core, found on disk so that a new module is checked without a list.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests import hygiene

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "kexproxy" / "core"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


CORE_MODULES = sorted(_module_name(p) for p in CORE.rglob("*.py"))
#: Standard-library and third-party modules the core must never load.
FORBIDDEN = ("asyncio", "socket", "selectors", "sqlite3", "scapy", "rich", "textual")
#: kexproxy's own outer layers: the core is imported by them, never the reverse.
OUTER = ("kexproxy.sources", "kexproxy.sinks", "kexproxy.commands", "kexproxy_tui", "kexproxy.cli")


def _loaded_after_import(module: str) -> list[str]:
    code = (
        "import importlib, json, sys\n"
        f"importlib.import_module({module!r})\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=True,
    ).stdout
    return list(json.loads(out))


def test_every_core_module_is_found() -> None:
    assert "kexproxy.core.parser" in CORE_MODULES
    assert "kexproxy.core.tracker" in CORE_MODULES
    assert "kexproxy.core.diagnosis.verdicts" in CORE_MODULES
    assert len(CORE_MODULES) >= 12


@pytest.mark.parametrize("module", CORE_MODULES)
def test_importing_a_core_module_loads_no_io_or_ui(module: str) -> None:
    loaded = _loaded_after_import(module)
    assert module in loaded
    bad = [
        name
        for name in loaded
        if any(name == f or name.startswith(f + ".") for f in (*FORBIDDEN, *OUTER))
    ]
    assert bad == [], f"{module} pulls in {bad}"


def test_the_whole_core_at_once_loads_no_io_or_ui() -> None:
    code = (
        "import importlib, json, sys\n"
        f"for m in {CORE_MODULES!r}: importlib.import_module(m)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=True,
    ).stdout
    loaded = set(json.loads(out))
    assert not loaded & set(FORBIDDEN)


@pytest.mark.parametrize(
    "module",
    [m for m in hygiene.modules(ROOT) if m.name.startswith("kexproxy.core")],
    ids=lambda m: m.name,
)
def test_no_core_source_names_an_outer_layer(module: hygiene.Module) -> None:
    # Also catches imports a function makes lazily, which an import-time check cannot see.
    bad = sorted(
        name
        for name in hygiene.imports(module, set())
        if any(name == o or name.startswith(o + ".") for o in (*OUTER, *FORBIDDEN))
    )
    assert bad == [], f"{module.name} imports {bad}"


# -- the layers, the cycles, the sizes and the name-lists, read from the source ------------------


def test_every_layer_imports_only_what_it_may() -> None:
    assert hygiene.layer_violations(ROOT) == []


def test_there_is_no_import_cycle_anywhere() -> None:
    assert hygiene.cycles(ROOT) == []


def test_no_file_is_over_600_lines() -> None:
    assert hygiene.long_files(ROOT) == []


def test_each_rfc_list_name_is_written_in_at_most_two_modules() -> None:
    literals = hygiene.list_name_literals(ROOT)
    assert literals["kex_algorithms"] == ["kexproxy.core.lists"]  # the registry has it
    too_many = {
        name: mods
        for name, mods in literals.items()
        if len(mods) > hygiene.MAX_MODULES_PER_LIST_NAME
    }
    assert too_many == {}


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for folder in ("kexproxy", "tui/kexproxy_tui"):
        (root / folder).mkdir(parents=True, exist_ok=True)
        (root / folder / "__init__.py").touch()
    return root


def test_the_checks_fail_on_a_tree_that_breaks_each_rule(tmp_path: Path) -> None:
    """The test of the test: every rule above, broken once, is caught and named."""
    root = _tree(
        tmp_path,
        {
            "kexproxy/core/__init__.py": "",
            "kexproxy/core/a.py": "import socket\nimport rich\nfrom kexproxy.sinks import b\n",
            "kexproxy/core/lists.py": "X = 'mac_algorithms_client_to_server'\n",
            "kexproxy/sinks/__init__.py": "",
            "kexproxy/sinks/b.py": "def f():\n    from kexproxy.sources import c\n",
            "kexproxy/sources/__init__.py": "",
            "kexproxy/sources/c.py": "from kexproxy.sinks.b import f\nimport kexproxy.pipeline\n",
            "kexproxy/pipeline.py": "",
            "kexproxy/commands/__init__.py": "",
            "kexproxy/commands/one.py": "from kexproxy.commands import two\n",
            "kexproxy/commands/two.py": "Y = 'mac_algorithms_client_to_server'\n",
            "tui/kexproxy_tui/app.py": (
                "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                "    from kexproxy_tui import screen\nimport kexproxy.cli\n"
            ),
            "tui/kexproxy_tui/screen.py": "from kexproxy_tui.app import App\nZ = 'mac_algorithms_client_to_server'\n",
            "kexproxy/cli.py": "\n" * 601,
        },
    )
    said = "\n".join(hygiene.layer_violations(root))
    assert "kexproxy.core.a imports rich: the core imports only" in said
    assert "kexproxy.core.a imports kexproxy.sinks.b" in said
    assert "socket" not in said  # the standard library is the core's to use...
    assert "kexproxy.sinks.b imports kexproxy.sources.c: sinks never import sources" in said
    assert "kexproxy.sources.c imports kexproxy.sinks.b: sources never import sinks" in said
    assert "kexproxy.sources.c imports kexproxy.pipeline" in said
    assert "kexproxy.commands.one imports kexproxy.commands.two: no command imports another" in said
    assert "kexproxy_tui.app imports kexproxy.cli: the TUI never imports" in said
    cycles = hygiene.cycles(root)
    assert ["kexproxy.sinks.b", "kexproxy.sources.c"] in cycles
    assert ["kexproxy_tui.app", "kexproxy_tui.screen"] in cycles  # TYPE_CHECKING counts
    assert hygiene.long_files(root, ("kexproxy",)) == ["kexproxy/cli.py: 601 lines"]
    assert hygiene.list_name_literals(root)["mac_algorithms_client_to_server"] == [
        "kexproxy.commands.two",
        "kexproxy.core.lists",
        "kexproxy_tui.screen",
    ]


def test_every_source_and_sink_module_has_its_test_module() -> None:
    missing = [
        f"{layer}/{path.stem}"
        for layer in ("sources", "sinks")
        for path in sorted((ROOT / "kexproxy" / layer).glob("*.py"))
        if path.stem != "__init__"
        and not (ROOT / "tests" / layer / f"test_{path.stem}.py").exists()
    ]
    assert missing == []


def test_modules_named_test_hold_tests_and_helpers_are_not_named_test() -> None:
    helpers = []
    for path in sorted((ROOT / "tests").rglob("test_*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        tests = [
            node
            for node in tree.body
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
            and node.name.startswith(("test_", "Test"))
        ]
        if not tests:
            helpers.append(str(path.relative_to(ROOT)))
    assert helpers == []
