"""Package data of the core: the algorithm catalogue, OpenSSH's default-list history, the SSH
implementations, the TLS registries (TOML), and their compiled twins.

A package so that `importlib.resources` finds the files in a wheel, a zip or a checkout alike.

The TOML files are the source: people edit them. Parsing them all with `tomllib` took about
a twentieth of a second, paid by every run that diagnoses anything; `compiled/` holds each
one as JSON, named by the SHA-256 of the TOML's bytes, which `json` reads ten times faster.
A TOML edited since (its hash has no twin) is simply parsed, so the twin can never be stale,
only missing; ``python -m kexproxy.core.data`` writes them again and a test says when to.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from importlib import resources
from typing import Any

#: Hex digits of the TOML's SHA-256 that name its compiled twin.
DIGEST_CHARS = 32


def compiled_name(raw: bytes) -> str:
    """The compiled twin's file name for a TOML file of these bytes."""
    return hashlib.sha256(raw).hexdigest()[:DIGEST_CHARS] + ".json"


def load_toml(path: str) -> dict[str, Any]:
    """The data file at `path` (relative to this package), parsed: from its compiled JSON
    twin when there is one for exactly these bytes, else from the TOML itself."""
    folder = resources.files(__package__)
    raw = folder.joinpath(path).read_bytes()
    try:
        data: dict[str, Any] = json.loads(
            folder.joinpath("compiled", compiled_name(raw)).read_bytes()
        )
    except (OSError, ValueError):
        data = tomllib.loads(raw.decode("utf-8"))
    return data
