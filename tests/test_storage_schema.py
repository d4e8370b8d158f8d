"""Migrations: both dialects end with the same logical schema; version checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from storage.db import Database, open_database
from storage.schema import (
    SchemaVersionError,
    current_version,
    ensure_schema,
    latest_version,
    migrate,
)
from tests.conftest import db_url_for


def _logical_schema(db: Database) -> dict[str, object]:
    """Tables -> sorted column names, plus the set of index names."""
    with db.reader() as conn:
        if db.dialect == "sqlite":
            tables = [
                r[0]
                for r in conn.all(
                    "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'"
                )
            ]
            columns = {t: sorted(r[1] for r in conn.all(f"PRAGMA table_info({t})")) for t in tables}
            indexes = sorted(
                r[0]
                for r in conn.all(
                    "SELECT name FROM sqlite_master WHERE type='index' AND name LIKE 'ix_%'"
                )
            )
        else:
            tables = [
                r[0]
                for r in conn.all(
                    "SELECT table_name FROM information_schema.tables"
                    " WHERE table_schema = current_schema()"
                )
            ]
            columns = {
                t: sorted(
                    r[0]
                    for r in conn.all(
                        "SELECT column_name FROM information_schema.columns"
                        " WHERE table_schema = current_schema() AND table_name = :t",
                        {"t": t},
                    )
                )
                for t in tables
            }
            indexes = sorted(
                r[0]
                for r in conn.all(
                    "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()"
                    " AND indexname LIKE 'ix_%'"
                )
            )
    return {"columns": columns, "indexes": indexes}


@pytest.mark.postgres
def test_both_dialects_end_with_the_same_logical_schema(tmp_path: Path) -> None:
    schemas = []
    for backend in ("sqlite", "postgresql"):
        db = open_database(db_url_for(backend, tmp_path / backend))
        try:
            migrate(db)
            schemas.append(_logical_schema(db))
        finally:
            db.close()
    assert schemas[0] == schemas[1]
    assert "instances" in schemas[0]["columns"]  # type: ignore[operator]


def test_new_index_is_created_and_older_one_refused(tmp_path: Path, backend: str) -> None:
    db = open_database(db_url_for(backend, tmp_path))
    try:
        ensure_schema(db)
        ensure_schema(db)  # idempotent on a current index
        assert current_version(db) == latest_version(db.dialect)
        # An index at an older version is refused with a message naming `db migrate`.
        db.transaction(
            lambda conn: conn.execute("UPDATE schema_version SET version = version - 1000")
        )
        with pytest.raises(SchemaVersionError, match="noctis-pacs db migrate"):
            ensure_schema(db)
    finally:
        db.close()


def test_newer_index_is_refused(tmp_path: Path, backend: str) -> None:
    db = open_database(db_url_for(backend, tmp_path))
    try:
        ensure_schema(db)
        db.transaction(
            lambda conn: conn.execute(
                "INSERT INTO schema_version (version, applied_at) VALUES (999, 'x')"
            )
        )
        with pytest.raises(SchemaVersionError, match="upgrade Noctis PACS"):
            ensure_schema(db)
    finally:
        db.close()
