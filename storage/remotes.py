"""Remote peers: the ``[dimse.remotes.*]`` configuration (read-only) merged with the
remotes kept in the index (added and removed at run time, seen at once by every
process sharing the index: nothing is cached)."""

from __future__ import annotations

import logging
from typing import Any

from noctis_pacs.core.remotes import FROM_CONFIG, Remote, RemoteError, from_config
from noctis_pacs.core.settings import Settings
from storage.db import Connection, Database
from storage.index import now_iso
from storage.sqlfiles import named_queries

log = logging.getLogger("noctis.storage.remotes")


def A(name: str) -> str:  # noqa: N802 - reads like a SQL lookup
    return named_queries("admin.sql")[name]


def _remote(row: Any) -> Remote:
    name, kind, ae_title, host, port, url, username, secret, permissions, check_host = row
    return Remote(
        name=name,
        kind=kind,
        ae_title=ae_title,
        host=host,
        port=int(port),
        url=url,
        username=username,
        secret=secret,
        permissions=tuple(p for p in str(permissions).split(",") if p),
        check_host=bool(check_host),
    )


class RemoteDirectory:
    """Every remote this archive knows; configured ones win over stored ones."""

    def __init__(self, settings: Settings, db: Database) -> None:
        self.db = db
        self.configured = {
            name: from_config(name, remote) for name, remote in settings.dimse.remotes.items()
        }

    def entries(self) -> list[Remote]:
        with self.db.reader() as conn:
            stored = [_remote(r) for r in conn.all(A("remote_list"))]
        merged = dict(self.configured)
        for remote in stored:
            merged.setdefault(remote.name, remote)
        return [merged[name] for name in sorted(merged)]

    def get(self, name: str) -> Remote | None:
        if name in self.configured:
            return self.configured[name]
        with self.db.reader() as conn:
            row = conn.one(A("remote_by_name"), {"name": name})
        return _remote(row) if row is not None else None

    def by_ae_title(self, ae_title: str) -> Remote | None:
        """The DICOM remote with ``ae_title`` (a C-MOVE destination, a caller)."""
        title = ae_title.strip()
        for remote in self.configured.values():
            if remote.ae_title == title:
                return remote
        try:
            with self.db.reader() as conn:
                row = conn.one(A("remote_by_ae_title"), {"ae_title": title})
        except Exception as exc:
            if not self.db.is_unavailable(exc):
                raise
            # The index is down (a PostgreSQL restart): only the configured remotes are
            # known meanwhile. Every C-STORE asks, so the store itself answers honestly
            # (0xA701, retry) instead of the lookup failing the handler (0xC211).
            log.warning(
                "remote AE look-up skipped: the index is unavailable (%s)", type(exc).__name__
            )
            return None
        return _remote(row) if row is not None else None

    def add(self, remote: Remote) -> None:
        """Store ``remote``; raises ``RemoteError`` when the name is taken."""
        if remote.name in self.configured:
            raise RemoteError(f"remote {remote.name!r} is in the configuration file (read-only)")

        def work(conn: Connection) -> None:
            if conn.one(A("remote_by_name"), {"name": remote.name}) is not None:
                raise RemoteError(f"a remote named {remote.name!r} exists already")
            conn.execute(
                A("remote_insert"),
                {
                    "name": remote.name,
                    "kind": remote.kind,
                    "ae_title": remote.ae_title,
                    "host": remote.host,
                    "port": remote.port,
                    "url": remote.url,
                    "username": remote.username,
                    "secret": remote.secret,
                    "permissions": ",".join(remote.permissions),
                    "check_host": int(remote.check_host),
                    "now": now_iso(),
                },
            )

        self.db.transaction(work)

    def remove(self, name: str) -> bool:
        """Remove a stored remote; ``False`` when there is none of that name. Raises
        ``RemoteError`` for a configured one."""
        if name in self.configured:
            raise RemoteError(
                f"remote {name!r} is in the configuration file ({FROM_CONFIG}, read-only)"
            )
        removed: int = self.db.transaction(
            lambda conn: conn.execute(A("remote_delete"), {"name": name}).rowcount
        )
        return removed > 0
