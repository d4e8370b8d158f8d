"""The router: routing rules' inbox turned into queue items, and the queue delivered.

Started by the wiring next to HTTP and DIMSE (``routing.enabled``).  Each round
it (1) routes inbox rows (instances received, studies stable) through the rules,
matching with the archive's one query engine, and queues one item per instance
and destination in the transaction that takes the rows, (2) leases the oldest
due group (destination, study) and sends it in id order over one association
(``dimse.scu``) or STOW-RS (``dicomweb.stow_client``), (3) settles each item:
delivered items leave the queue, failed ones wait an exponential backoff, and
after their rule's ``max_attempts`` become dead letters, (4) publishes queue
depth, age and outcomes as metrics.  Every step is safe with several processes
on one index (``storage.routing``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from dicomweb.stow_client import stow
from dimse import scu
from dimse.fastpath import FastPath
from noctis_pacs.app import leases
from noctis_pacs.core.metrics import Metrics
from noctis_pacs.core.model import Level, Match, MatchKind, Query
from noctis_pacs.core.remotes import DIMSE
from noctis_pacs.core.routing import RECEIVED, Rule, retry_delay
from noctis_pacs.core.settings import Settings
from storage.archive import Archive, InstanceLocation, QueueItem

log = logging.getLogger("noctis.routing")

#: Routed / sent when the destination answers nothing else.
CANCELLED = "cancelled"


def _uids(keyword: str, uids: tuple[str, ...]) -> Match:
    return Match(keyword, MatchKind.LIST_OF_UID, uids)


class Router:
    """One background thread per process; ``start`` / ``stop`` / ``wake`` by the wiring."""

    def __init__(
        self,
        settings: Settings,
        archive: Archive,
        metrics: Metrics | None,
        *,
        fast_path: Callable[[], FastPath | None] = lambda: None,
    ) -> None:
        self.settings = settings
        #: This process's DIMSE fast path, once the DIMSE server started it.
        self.fast_path = fast_path
        self.config = settings.routing
        self.archive = archive
        self.metrics = metrics
        self.owner = leases.new_owner()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        try:
            self.archive.routing.release_orphans(leases.host_prefix(), leases.owner_alive)
        except Exception:
            log.exception("could not release the leases of stopped processes")
        self._thread = threading.Thread(target=self._run, name="router", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.settings.jobs.timeout_seconds + 5)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            busy = False
            try:
                busy = self.round()
            except Exception as exc:
                if not self.archive.db.is_unavailable(exc):
                    log.exception("routing round failed; retrying")
                else:  # an index outage (issue 14): one line, no traceback
                    log.warning("routing round skipped: the index is unavailable; retrying")
            if not busy:
                self._stop.wait(self.config.poll_interval_seconds)

    def round(self) -> bool:
        """Route the inbox, deliver one group, publish metrics; whether there was work."""
        routed = self.route_inbox()
        delivered = self.deliver()
        self.publish()
        return bool(routed or delivered)

    # -- inbox -> queue -------------------------------------------------------------------

    def route_inbox(self) -> int:
        rows = self.archive.routing.inbox(self.config.batch)
        if not rows:
            return 0
        rules = [rule for rule in self.archive.routing.rules() if rule.enabled]
        received = [row for row in rows if row.on == RECEIVED]
        matched: dict[str, set[str]] = {}
        for rule in rules:
            if rule.on != RECEIVED:
                continue
            uids = tuple(row.sop_uid for row in received if rule.admits_caller(row.calling_ae))
            matched[rule.name] = (
                self._matching(rule, _uids("SOPInstanceUID", uids)) if uids else set()
            )
        routed = []
        for row in rows:
            targets: list[tuple[Rule, str, str]] = []
            for rule in rules:
                if rule.on != row.on:
                    continue
                if row.on == RECEIVED:
                    sops = [row.sop_uid] if row.sop_uid in matched[rule.name] else []
                else:
                    study = Match("StudyInstanceUID", MatchKind.SINGLE, (row.study_uid,))
                    sops = sorted(self._matching(rule, study))
                targets += [(rule, dest, sop) for sop in sops for dest in rule.destinations]
            routed.append((row, targets))
        queued = self.archive.routing.take(routed)
        log.debug("routed %d inbox row(s) into %d queue item(s)", len(rows), queued)
        return len(rows)

    def _matching(self, rule: Rule, scope: Match) -> set[str]:
        query = Query(level=Level.IMAGE, matches=(*rule.query_matches(), scope))
        return {loc.sop_uid for loc in self.archive.locate(query)}

    # -- queue -> destinations -----------------------------------------------------------

    def deliver(self) -> int:
        items = self.archive.routing.lease_group(
            self.owner, self.config.lease_seconds, self.config.batch
        )
        if not items:
            return 0
        destination = items[0].destination
        remote = self.archive.remotes.get(destination)
        outcomes: dict[str, tuple[str, str]] = {}
        error: str | None = None
        locations: list[InstanceLocation] = []
        if remote is None:
            error = f"no remote named {destination!r}"
        else:
            unique = tuple(dict.fromkeys(item.sop_uid for item in items))
            found = {
                loc.sop_uid: loc
                for loc in self.archive.locate(
                    Query(level=Level.IMAGE, matches=(_uids("SOPInstanceUID", unique),))
                )
            }
            # Deleted since it was queued: nothing left to deliver.
            outcomes.update({uid: ("gone", "") for uid in unique if uid not in found})
            locations = [found[uid] for uid in unique if uid in found]

            def outcome(sop_uid: str, result: str, detail: str) -> None:
                outcomes[sop_uid] = (result, detail)

            if remote.kind == DIMSE:
                error = scu.store(
                    self.archive,
                    remote,
                    locations,
                    calling_ae=self.settings.dimse.ae_title,
                    timeout=self.settings.jobs.timeout_seconds,
                    outcome=outcome,
                    cancelled=self._stop.is_set,
                    fast=self.fast_path(),
                )
            else:
                error = stow(
                    self.archive,
                    remote,
                    locations,
                    batch=self.settings.jobs.stow_batch,
                    timeout=self.settings.jobs.timeout_seconds,
                    outcome=outcome,
                    cancelled=self._stop.is_set,
                )
        self._settle(items, outcomes, error)
        return len(items)

    def _settle(
        self, items: list[QueueItem], outcomes: dict[str, tuple[str, str]], error: str | None
    ) -> None:
        delivered, failed, untried = [], [], []
        for item in items:
            result, detail = outcomes.get(item.sop_uid, ("", ""))
            if result in ("sent", "gone"):
                delivered.append(item.id)
            elif result == "failed":
                failed.append((item, detail, self._delay(item)))
            elif error == CANCELLED:
                untried.append(item)
            else:
                failed.append((item, error or "not sent", self._delay(item)))
        self.archive.routing.release(untried)
        dead = self.archive.routing.settle(delivered=delivered, failed=failed)
        if self.metrics is not None:
            self.metrics.route_deliveries.labels("delivered").inc(len(delivered))
            self.metrics.route_deliveries.labels("failed").inc(len(failed))
            self.metrics.route_deliveries.labels("dead").inc(dead)
        if failed:
            log.warning(
                "routing to %s: %d delivered, %d failed (%s), %d now dead letters",
                items[0].destination,
                len(delivered),
                len(failed),
                failed[0][1],
                dead,
            )
        else:
            log.info("routing to %s: %d delivered", items[0].destination, len(delivered))

    def _delay(self, item: QueueItem) -> float:
        return retry_delay(
            self.config.retry_initial_seconds, self.config.retry_max_seconds, item.attempts + 1
        )

    def publish(self) -> None:
        if self.metrics is None:
            return
        summary = self.archive.routing.summary()
        for state in ("inbox", "queued", "dead"):
            self.metrics.route_queue.labels(state).set(summary[state])
        self.metrics.route_oldest_seconds.set(summary["oldest_seconds"])
