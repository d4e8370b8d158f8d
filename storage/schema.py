"""Numbered migrations for both dialects (``storage/sql/<dialect>/NNNN_name.sql``).

A new, empty index is created and migrated by any command; an index at an
older version is refused with a message naming ``noctis-pacs db migrate``;
an index newer than this code is refused too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

from storage.db import Connection, Database, DatabaseError

_FILE = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


class SchemaVersionError(DatabaseError):
    """The index is at another schema version than this code expects."""


def migrations(dialect: str) -> list[Migration]:
    folder = resources.files("storage") / "sql" / dialect
    found = []
    for entry in folder.iterdir():
        match = _FILE.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), entry.name, entry.read_text("utf-8")))
    found.sort(key=lambda m: m.version)
    return found


def latest_version(dialect: str) -> int:
    return migrations(dialect)[-1].version


def _has_version_table(conn: Connection) -> bool:
    if conn.dialect == "sqlite":
        row = conn.one("SELECT 1 FROM sqlite_master WHERE type='table' AND name='schema_version'")
    else:
        row = conn.one(
            "SELECT 1 FROM information_schema.tables"
            " WHERE table_schema = current_schema() AND table_name = 'schema_version'"
        )
    return row is not None


def current_version(db: Database) -> int | None:
    """The index's schema version; ``None`` for a new, empty index."""
    with db.reader() as conn:
        if not _has_version_table(conn):
            return None
        row = conn.one("SELECT MAX(version) FROM schema_version")
        return int(row[0] or 0)


def _split(sql: str) -> list[str]:
    statements = []
    for chunk in sql.split(";"):
        lines = [ln for ln in chunk.splitlines() if not ln.strip().startswith("--")]
        text = "\n".join(lines).strip()
        if text:
            statements.append(text)
    return statements


def migrate(db: Database) -> list[int]:
    """Apply every pending migration, each in its own transaction; return the versions."""
    applied = []
    version = current_version(db) or 0
    for migration in migrations(db.dialect):
        if migration.version <= version:
            continue

        def apply(conn: Connection, migration: Migration = migration) -> None:
            if not _has_version_table(conn):
                conn.raw.cursor().execute(
                    "CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at TEXT)"
                )
            cur = conn.raw.cursor()
            for statement in _split(migration.sql):
                cur.execute(statement)
            conn.execute(
                "INSERT INTO schema_version (version, applied_at) VALUES (:v, CURRENT_TIMESTAMP)",
                {"v": migration.version},
            )

        db.transaction(apply, attempts=1)
        applied.append(migration.version)
    return applied


def ensure_schema(db: Database) -> None:
    """Create a new index; refuse one at another version with what to do next."""
    version = current_version(db)
    latest = latest_version(db.dialect)
    if version is None:
        migrate(db)
    elif version < latest:
        raise SchemaVersionError(
            f"the index at {db.url_for_logs()} is at schema version {version}, this version "
            f"of Noctis PACS needs {latest}: back it up, then run `noctis-pacs db migrate`."
        )
    elif version > latest:
        raise SchemaVersionError(
            f"the index at {db.url_for_logs()} is at schema version {version}, newer than this "
            f"version of Noctis PACS understands ({latest}): upgrade Noctis PACS."
        )
