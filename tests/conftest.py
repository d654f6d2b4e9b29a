"""Every record any test makes through the pipeline must match the project's own JSON Schema.

Issue 9 found a record (a name with CR/LF in a rejection message) that broke the schema the
project publishes; this makes the class visible wherever it appears: each record that leaves
the stages in a test process is validated, and the test that made a bad one fails there.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest

from kexproxy.core.record import SessionRecord
from kexproxy.pipeline import Pipeline
from kexproxy.schema import session_record_schema

_SCHEMA = session_record_schema()
_VALIDATOR = jsonschema.validators.validator_for(_SCHEMA)(_SCHEMA)


def schema_errors(record: SessionRecord) -> list[str]:
    """What is wrong with `record` by the schema, one line each (nothing when it is valid)."""
    return [
        f"{'/'.join(map(str, e.path)) or '(record)'}: {e.message[:200]}"
        for e in _VALIDATOR.iter_errors(record.to_dict())
    ]


@pytest.fixture(autouse=True)
def _records_match_the_schema(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    process = Pipeline.process

    def checked(self: Pipeline, record: SessionRecord) -> Any:
        out = process(self, record)
        errors = schema_errors(out)
        assert errors == [], f"record {out.id} does not match the schema: {errors}"
        return out

    monkeypatch.setattr(Pipeline, "process", checked)
    yield


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[Any]:
    """One throwaway PostgreSQL cluster for the whole run (tests/peers/postgres.py)."""
    from tests.peers.postgres import PostgresCluster

    cluster = PostgresCluster()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def postgres_url(postgres_cluster: Any) -> str:
    """The URL of a new, empty database of the session's cluster."""
    url: str = postgres_cluster.database()
    return url
