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


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", sorted(CORE.rglob("*.py")), ids=_module_name)
def test_no_core_source_names_an_outer_layer(path: Path) -> None:
    # Also catches imports a function makes lazily, which an import-time check cannot see.
    bad = sorted(
        name
        for name in _imports(path)
        if any(name == o or name.startswith(o + ".") for o in (*OUTER, *FORBIDDEN))
    )
    assert bad == [], f"{path.name} imports {bad}"
