"""The workflow tables' named queries (``storage/sql/worklist.sql``)."""

from __future__ import annotations

from storage.sqlfiles import named_queries


def W(name: str) -> str:  # noqa: N802 - reads like a SQL lookup
    return named_queries("worklist.sql")[name]
