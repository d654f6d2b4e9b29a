"""The layering rules of the tree, read from the source with `ast` (lazy and TYPE_CHECKING imports
included), as functions of a root folder so that a test can show each rule failing.

Layers, lowest first: the core (sans-I/O); the shared helpers (worker threads and processes,
exit codes, text for people); sources and sinks (side by side, never importing each other);
the pipeline; the commands; the command line; and the TUI beside the commands.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

#: Packages and modules of each layer, by dotted prefix.
CORE = "kexproxy.core"
SOURCES = ("kexproxy.sources",)
SINKS = ("kexproxy.sinks",)
COMMANDS = "kexproxy.commands"
CLI = "kexproxy.cli"
TUI = "kexproxy_tui"
PIPELINE = "kexproxy.pipeline"
#: What the core may import besides itself and the standard library.
CORE_THIRD_PARTY = ("cryptography",)
MAX_LINES = 600
#: RFC 4253 7.1 name-list field names: each written as a literal in at most this many modules.
MAX_MODULES_PER_LIST_NAME = 2
LIST_NAME_SUFFIXES = ("_client_to_server", "_server_to_client")
LIST_NAMES_WHOLE = ("kex_algorithms", "server_host_key_algorithms")


@dataclass(frozen=True, slots=True)
class Module:
    name: str
    path: Path
    tree: ast.Module


def modules(root: Path) -> list[Module]:
    """Every module of kexproxy/ and tui/kexproxy_tui/ under `root`, by dotted name."""
    out = []
    for base, package in ((root, "kexproxy"), (root / "tui", "kexproxy_tui")):
        for path in sorted((base / package).rglob("*.py")):
            parts = path.relative_to(base).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            out.append(Module(".".join(parts), path, tree))
    return out


def imports(module: Module, known: set[str]) -> set[str]:
    """The modules `module` imports, resolved to known modules where a name is a submodule."""
    names: set[str] = set()
    package = module.name if module.path.name == "__init__.py" else module.name.rpartition(".")[0]
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            names.add(base)
            for alias in node.names:
                if f"{base}.{alias.name}" in known:
                    names.add(f"{base}.{alias.name}")
    return {n for n in names if n}


def _within(name: str, prefixes: str | tuple[str, ...]) -> bool:
    prefixes = (prefixes,) if isinstance(prefixes, str) else prefixes
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def layer_violations(root: Path) -> list[str]:
    """Every import that breaks a layering rule, as 'module imports other: why'."""
    mods = modules(root)
    known = {m.name for m in mods}
    stdlib = set(sys.stdlib_module_names)
    bad: list[str] = []
    for module in mods:
        for name in sorted(imports(module, known)):
            top = name.split(".")[0]
            why = None
            if _within(module.name, CORE):
                if not (_within(name, CORE) or top in stdlib or top in CORE_THIRD_PARTY):
                    why = "the core imports only the standard library, cryptography and the core"
            elif _within(module.name, SOURCES):
                if _within(name, (*SINKS, COMMANDS, CLI, TUI, PIPELINE)):
                    why = "sources never import sinks, the pipeline, commands, the CLI or the TUI"
            elif _within(module.name, SINKS):
                if _within(name, (*SOURCES, COMMANDS, CLI, TUI, PIPELINE)):
                    why = "sinks never import sources, the pipeline, commands, the CLI or the TUI"
            elif _within(module.name, TUI):
                if _within(name, (COMMANDS, CLI)):
                    why = "the TUI never imports commands or the CLI"
            elif (
                _within(module.name, COMMANDS)
                and module.name != COMMANDS
                and _within(name, COMMANDS)
                and name != COMMANDS
            ):
                why = "no command imports another"
            if why:
                bad.append(f"{module.name} imports {name}: {why}")
    return bad


def import_graph(root: Path) -> dict[str, list[str]]:
    """Each of the tree's own modules -> the tree's modules it imports (itself left out)."""
    mods = modules(root)
    known = {m.name for m in mods}
    return {
        m.name: sorted(n for n in imports(m, known) if n in known and n != m.name) for m in mods
    }


def cycles(root: Path) -> list[list[str]]:
    """Import cycles among the tree's own modules (each as the list of modules around it)."""
    return find_cycles(import_graph(root))


def find_cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """The strongly connected parts of `graph` with more than one module, each sorted."""
    found: list[list[str]] = []
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def long_files(
    root: Path, folders: tuple[str, ...] = ("kexproxy", "tui", "tests", "scripts")
) -> list[str]:
    """Python files (scripts included) longer than `MAX_LINES` lines."""
    out = []
    for folder in folders:
        for path in sorted((root / folder).rglob("*")):
            if not path.is_file() or "__snapshots__" in path.parts or "data" in path.parts:
                continue
            if path.suffix != ".py" and not _is_python_script(path):
                continue
            lines = path.read_text(encoding="utf-8").count("\n")
            if lines > MAX_LINES:
                out.append(f"{path.relative_to(root)}: {lines} lines")
    return out


def _is_python_script(path: Path) -> bool:
    if path.suffix:
        return False
    with path.open("rb") as handle:
        first = handle.readline(200)
    return first.startswith(b"#!") and b"python" in first


def _string_literals(tree: ast.Module) -> Iterator[str]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.value


def list_name_literals(root: Path) -> dict[str, list[str]]:
    """Each RFC name-list field name -> the modules that write it as a string literal."""
    where: dict[str, set[str]] = {}
    for module in modules(root):
        for text in _string_literals(module.tree):
            if text in LIST_NAMES_WHOLE or (
                text.endswith(LIST_NAME_SUFFIXES) and text.count("_") >= 3 and " " not in text
            ):
                where.setdefault(text, set()).add(module.name)
    return {name: sorted(mods) for name, mods in sorted(where.items())}
