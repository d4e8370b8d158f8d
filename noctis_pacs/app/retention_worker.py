"""Applies the retention policies in the background every ``retention.interval_seconds``
(``Archive.retention_run``; every deletion audited).  Several processes may run it on
one index: a study another process deleted first is simply gone."""

from __future__ import annotations

import logging
import threading

from noctis_pacs.core.settings import Settings
from storage.archive import Archive

log = logging.getLogger("noctis.retention")


class RetentionWorker:
    def __init__(self, settings: Settings, archive: Archive) -> None:
        self.interval = settings.retention.interval_seconds
        self.archive = archive
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="retention", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                result = self.archive.retention_run(dry_run=False)
            except Exception:
                log.exception("retention run failed; retrying at the next interval")
                continue
            if result["studies"]:
                log.info(
                    "retention deleted %d study(ies), %d bytes",
                    len(result["studies"]),
                    result["bytes"],
                )
