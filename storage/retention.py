"""Retention policies and protected studies in the index, and the candidates the pure
rules (``noctis_pacs.core.retention``) choose from."""

from __future__ import annotations

from typing import Any

from noctis_pacs.core.retention import Candidate, Policy
from storage.db import Connection, Database
from storage.sqlfiles import named_queries
from storage.workflow_events import now_iso


def T(name: str) -> str:  # noqa: N802 - reads like a SQL lookup
    return named_queries("retention.sql")[name]


class RetentionStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def policies(self) -> list[Policy]:
        with self.db.reader() as conn:
            rows = conn.all(T("policy_list"))
        return [Policy(r[0], int(r[1]), r[2], int(r[3]), r[4], r[5], bool(r[6])) for r in rows]

    def add_policy(self, policy: Policy) -> bool:
        """Store ``policy``; ``False`` when one of that name exists."""

        def work(conn: Connection) -> bool:
            if conn.one(T("policy_exists"), {"name": policy.name}) is not None:
                return False
            conn.execute(
                T("policy_insert"),
                {**policy.public(), "enabled": int(policy.enabled), "now": now_iso()},
            )
            return True

        return self.db.transaction(work)

    def remove_policy(self, name: str) -> bool:
        removed: int = self.db.transaction(
            lambda conn: conn.execute(T("policy_delete"), {"name": name}).rowcount
        )
        return removed > 0

    def protect(self, study_uid: str, reason: str) -> bool:
        """Protect a study from retention; ``False`` when it already is."""

        def work(conn: Connection) -> bool:
            if conn.one(T("is_protected"), {"study_uid": study_uid}) is not None:
                return False
            conn.execute(T("protect"), {"study_uid": study_uid, "reason": reason, "now": now_iso()})
            return True

        return self.db.transaction(work)

    def unprotect(self, study_uid: str) -> bool:
        removed: int = self.db.transaction(
            lambda conn: conn.execute(T("unprotect"), {"study_uid": study_uid}).rowcount
        )
        return removed > 0

    def protected(self) -> list[dict[str, Any]]:
        with self.db.reader() as conn:
            rows = conn.all(T("protected_list"))
        return [{"study_uid": r[0], "reason": r[1], "since": r[2]} for r in rows]

    def candidates(self) -> list[Candidate]:
        with self.db.reader() as conn:
            rows = conn.all(T("candidates"))
        return [
            Candidate(
                study_uid=r[0],
                study_date=r[1] or "",
                received_at=r[2] or "",
                size=int(r[3]),
                facility=r[4] or "",
                modalities=frozenset(m for m in str(r[5] or "").split("\\") if m),
                protected=r[6] is not None,
            )
            for r in rows
        ]
