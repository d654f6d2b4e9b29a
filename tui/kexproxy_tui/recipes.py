"""The diagnosis's recipes as the dashboard lists and copies them, checked for shape first.

A record read from a store is untrusted down to its diagnosis (`SessionRecord.from_dict`
checks only the top-level fields), and the shared wording in `kexproxy.present` calls
``.get`` on what the schema says are objects. A recipe of another shape is left out here,
so that one damaged row can neither stop the sessions table nor the detail screen.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from kexproxy.core.record import SessionRecord
from kexproxy.present import recipe_action

#: The step kinds a recipe's `command` is built from (core/diagnosis/steps.py): shown as
#: the command instead of one by one.
IN_COMMAND = frozenset({"ssh_option", "dbclient_option"})
#: The step kinds that are sentences for a person rather than text for a program.
PROSE = frozenset({"note", "upgrade"})


def recipe_options(diagnosis: dict[str, Any]) -> list[dict[str, Any]]:
    """The recipes to offer, strongest first as the diagnosis ranks them."""
    found = diagnosis.get("recipes")
    return [r for r in found if _shaped(r)] if isinstance(found, list) else []


def _shaped(recipe: object) -> bool:
    """Whether every part `present` and the detail screen read is of the schema's type."""
    if not isinstance(recipe, dict):
        return False
    steps, adds = recipe.get("steps") or [], recipe.get("adds") or []
    return (
        isinstance(recipe.get("software") or {}, dict)
        and isinstance(recipe.get("persist") or {}, dict)
        and isinstance(steps, list)
        and all(isinstance(s, dict) and isinstance(s.get("kind"), str | None) for s in steps)
        and isinstance(adds, list)
        and all(isinstance(add, dict) for add in adds)
    )


def shaped_record(record: SessionRecord) -> SessionRecord:
    """The record itself, or a copy without the recipes not shaped as the schema says."""
    diagnosis = record.diagnosis
    if not isinstance(diagnosis, dict) or "recipes" not in diagnosis:
        return record
    found = diagnosis["recipes"]
    kept = recipe_options(diagnosis)
    if isinstance(found, list) and len(kept) == len(found):
        return record
    return replace(record, diagnosis={**diagnosis, "recipes": kept})


def lasting(recipe: dict[str, Any]) -> str:
    """What to keep for good: the client's ssh_config Host block, else what `c` copies."""
    persist = recipe.get("persist")
    if isinstance(persist, dict) and persist.get("text"):
        return str(persist["text"])
    return recipe_action(recipe)


def notes(recipes: Iterable[dict[str, Any]]) -> list[str]:
    """How and where to apply the steps, each note once though several recipes carry it."""
    found = (str(note) for recipe in recipes for note in strings(recipe.get("notes")))
    return list(dict.fromkeys(found))


def strings(value: object) -> list[object]:
    """A list from the record as it is, anything else as none (each item still untrusted)."""
    return value if isinstance(value, list) else []
