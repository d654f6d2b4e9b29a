"""What both store back ends share: the upsert, the migration split, and the store's name
as messages show it (a URL's password never shown)."""

from __future__ import annotations

import pytest

from kexproxy.sinks.store_schema import (
    COLUMNS,
    display_name,
    is_postgres_url,
    scrub,
    split_statements,
    upsert_sql,
)


@pytest.mark.parametrize(
    ("target", "shown"),
    [
        ("kexproxy.db", "kexproxy.db"),
        ("/var/lib/k:pw@x.db", "/var/lib/k:pw@x.db"),  # a path, however it looks
        ("postgresql://u@db:5432/k", "postgresql://u@db:5432/k"),
        ("postgresql://u:hunter2@db:5432/k", "postgresql://u:***@db:5432/k"),
        ("POSTGRES://u:p%40ss@db/k", "postgres://u:***@db/k"),
        ("postgresql://db/k?password=hunter2&sslmode=require",
         "postgresql://db/k?password=***&sslmode=require"),
        ("postgresql://u:pw@db:notaport/k", "postgresql://u:***@db:notaport/k"),
    ],
)  # fmt: skip
def test_display_name_masks_the_password_only(target: str, shown: str) -> None:
    assert display_name(target) == shown


def test_scrub_strikes_the_password_however_a_driver_quotes_it() -> None:
    url = "postgresql://u:p%40ss@db/k?password=other"
    text = scrub("failed for p%40ss, p@ss and other", url)
    assert text == "failed for ***, *** and ***"
    assert scrub("nothing to hide", "kexproxy.db") == "nothing to hide"


def test_only_the_two_url_schemes_are_postgresql() -> None:
    assert is_postgres_url("postgresql://x") and is_postgres_url("postgres://x")
    assert not is_postgres_url("sqlite:///x.db") and not is_postgres_url("pg.db")


def test_the_upsert_names_every_column_and_keeps_a_final_row() -> None:
    sql = upsert_sql("%s")
    assert sql.count("%s") == len(COLUMNS)
    assert "ON CONFLICT(id) DO UPDATE" in sql
    assert sql.endswith("WHERE sessions.final = 0 OR excluded.final = 1")


def test_migration_scripts_split_into_statements() -> None:
    assert split_statements(" CREATE TABLE a (x);\n;  CREATE INDEX i ON a (x) ; ") == [
        "CREATE TABLE a (x)",
        "CREATE INDEX i ON a (x)",
    ]
