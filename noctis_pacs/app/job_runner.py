"""The job runner: claims due send jobs from the index and carries them out.

Started by the wiring next to HTTP and DIMSE (``jobs.enabled``).  A job is
claimed under a lease (``storage.jobs``), so several ``serve`` processes sharing
one index share the work and a crashed process's job resumes elsewhere.  Each
attempt sends the instances not yet sent, over DIMSE C-STORE (``dimse.scu``) or
STOW-RS (``dicomweb.stow_client``), recording each outcome as it comes; an attempt
that leaves failures is retried after an exponential backoff until
``max_attempts``, then the job is ``failed`` (``POST /api/jobs/{id}/retry`` or
``noctis-pacs jobs retry`` queues it again).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from dicomweb.stow_client import stow
from dimse import scu
from dimse.fastpath import FastPath
from noctis_pacs.app import leases
from noctis_pacs.core.deid import DeidError, parse_options
from noctis_pacs.core.model import Level, Match, MatchKind, Query
from noctis_pacs.core.remotes import DIMSE
from noctis_pacs.core.settings import JobSettings, Settings
from storage.archive import Archive, Job

log = logging.getLogger("noctis.jobs")

#: The kind of a de-identification job (``POST /api/jobs/deidentify``).
DEIDENTIFY = "deidentify"

#: Outcomes written to the index per transaction while a job runs.
RECORD_EVERY = 25


def retry_delay(jobs: JobSettings, attempts: int) -> float:
    """Seconds before attempt ``attempts + 1``: doubled each time, up to the maximum."""
    return float(
        min(jobs.retry_initial_seconds * 2 ** max(attempts - 1, 0), jobs.retry_max_seconds)
    )


class JobRunner:
    """One background thread per process; ``start`` / ``stop`` / ``wake`` by the wiring."""

    def __init__(
        self,
        settings: Settings,
        archive: Archive,
        *,
        fast_path: Callable[[], FastPath | None] = lambda: None,
    ) -> None:
        self.settings = settings
        #: This process's DIMSE fast path, once the DIMSE server started it.
        self.fast_path = fast_path
        self.jobs = settings.jobs
        self.archive = archive
        self.owner = leases.new_owner()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        try:
            self.archive.jobs.release_orphans(leases.host_prefix(), leases.owner_alive)
        except Exception:
            log.exception("could not release the leases of stopped processes")
        self._thread = threading.Thread(target=self._run, name="job-runner", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=self.jobs.timeout_seconds + 5)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                while not self._stop.is_set() and self.run_one():
                    pass
            except Exception as exc:
                if not self.archive.db.is_unavailable(exc):
                    log.exception("job runner round failed; retrying")
                else:  # an index outage (issue 14): one line, no traceback
                    log.warning("job runner round skipped: the index is unavailable; retrying")
            self._wake.wait(self.jobs.poll_interval_seconds)
            self._wake.clear()

    def run_one(self) -> bool:
        """Claim and run one due job; ``False`` when none was due."""
        job = self.archive.jobs.claim(self.owner, self.jobs.lease_seconds)
        if job is None:
            return False
        started = time.monotonic()
        try:
            error = self._attempt(job)
        except Exception as exc:  # the job fails (and is retried), the runner goes on
            log.exception("job %d attempt failed unexpectedly", job.id)
            error = f"unexpected error: {type(exc).__name__}: {exc}"
        delay = retry_delay(self.jobs, job.attempts) if job.attempts < job.max_attempts else None
        state = self.archive.jobs.finish(job.id, self.owner, retry_in=delay, error=error or "")
        updated = self.archive.jobs.get(job.id)
        log.info(
            "job %d (%s to %s) attempt %d: %s in %.1f s, %s sent, %s failed%s",
            job.id,
            job.kind,
            job.destination,
            job.attempts,
            state,
            time.monotonic() - started,
            updated.done if updated else "?",
            updated.failed if updated else "?",
            f"; {error}" if error else "",
        )
        return True

    def _attempt(self, job: Job) -> str | None:
        """Send the job's unsent instances; why the attempt fell short, if it did."""
        if job.kind == DEIDENTIFY:
            return self._deidentify(job)
        remote = self.archive.remotes.get(job.destination)
        if remote is None:
            return f"remote {job.destination!r} no longer exists"
        pending = self.archive.jobs.pending_items(job.id)
        if not pending:
            return None
        locations = self.archive.locate(
            Query(
                level=Level.IMAGE,
                matches=(Match("SOPInstanceUID", MatchKind.LIST_OF_UID, tuple(pending)),),
            )
        )
        found = {loc.sop_uid for loc in locations}
        outcomes: list[tuple[str, str, str]] = [
            (uid, "failed", "no longer in the archive") for uid in pending if uid not in found
        ]

        def flush() -> None:
            if outcomes:
                self.archive.jobs.record(job.id, list(outcomes))
                outcomes.clear()

        def outcome(sop_uid: str, result: str, detail: str) -> None:
            outcomes.append((sop_uid, result, detail))
            if len(outcomes) >= RECORD_EVERY:
                flush()

        cancelled = self._cancel_check(job)

        try:
            if remote.kind == DIMSE:
                error = scu.store(
                    self.archive,
                    remote,
                    locations,
                    calling_ae=self.settings.dimse.ae_title,
                    timeout=self.jobs.timeout_seconds,
                    outcome=outcome,
                    cancelled=cancelled,
                    fast=self.fast_path(),
                )
            else:
                error = stow(
                    self.archive,
                    remote,
                    locations,
                    batch=self.jobs.stow_batch,
                    timeout=self.jobs.timeout_seconds,
                    outcome=outcome,
                    cancelled=cancelled,
                )
        finally:
            flush()
        if error is None and self.archive.jobs.pending_items(job.id):
            error = "some instances were not sent"
        return error

    def _cancel_check(self, job: Job) -> Callable[[], bool]:
        """Whether to stop now: the runner stops, or the job was cancelled (renewing its
        lease, at most once a second, fails once it is no longer running)."""
        state: dict[str, Any] = {"last_check": time.monotonic(), "cancelled": False}

        def cancelled() -> bool:
            if self._stop.is_set():
                return True
            if time.monotonic() - state["last_check"] > 1.0:
                state["last_check"] = time.monotonic()
                if not self.archive.jobs.renew(job.id, self.owner, self.jobs.lease_seconds):
                    state["cancelled"] = True
            return bool(state["cancelled"])

        return cancelled

    def _deidentify(self, job: Job) -> str | None:
        """A de-identification job (``POST /api/jobs/deidentify``): the whole study in one
        attempt (one UID map for the whole export), the result zip or the new study's
        UID kept under ``<data-dir>/exports``; audited with the old and new study."""
        request = job.request
        output = str(request.get("output", "zip"))
        target = self.archive.export_path(job.id, ".zip") if output == "zip" else None
        study = str(request.get("study", ""))
        try:
            result = self.archive.deidentify(
                study_uid=study,
                options=parse_options(dict(request.get("options", {}))),
                output=output,
                target=target,
                cancelled=self._cancel_check(job),
            )
        except DeidError as exc:
            if target is not None:
                target.unlink(missing_ok=True)
            self.archive.jobs.record(
                job.id,
                [(uid, "failed", str(exc)) for uid in self.archive.jobs.pending_items(job.id)],
            )
            self._audit_deid(job, study, "failure", reason=str(exc))
            return str(exc)
        self.archive.jobs.record(job.id, result.outcomes)
        summary = {**result.public(), "output": output}
        self.archive.export_path(job.id, ".json").write_text(json.dumps(summary))
        self._audit_deid(job, study, "success", new_studies=result.study_uids, **result.public())
        failed = [o for o in result.outcomes if o[1] != "sent"]
        return f"{len(failed)} instance(s) failed" if failed else None

    def _audit_deid(self, job: Job, study: str, outcome: str, **details: Any) -> None:
        new = details.get("new_studies", [])
        self.archive.record_admin_act(
            principal=job.created_by,
            action="deidentify",
            outcome=outcome,
            study_uids=(study, *new),
            details={"job": job.id, **{k: v for k, v in details.items() if k != "new_studies"}},
        )
