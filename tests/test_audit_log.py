"""The audit trail in the index: hash chain, filters, tampering found, several writers."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from noctis_pacs.core.audit import AuditAction, AuditEvent, AuditOutcome
from noctis_pacs.core.auth import Principal, Role
from noctis_pacs.core.settings import Settings
from storage.archive import Archive

ALICE = Principal.with_role("alice", Role.VIEWER, facilities=["north"], kind="token")


def _events(n: int, *, study: str = "1.2.3") -> list[AuditEvent]:
    return [
        AuditEvent.of(
            AuditAction.QIDO,
            ALICE,
            client="10.0.0.1",
            study_uids=[f"{study}.{i}", f"{study}.{i}"],
            query={"PatientID": f"P{i}"},
        )
        for i in range(n)
    ]


def test_records_chain_and_read_back(archive: Archive) -> None:
    first = archive.audit(AuditEvent.of(AuditAction.TOKEN_CREATE, ALICE, detail="token bob"))
    for event in _events(3):
        archive.audit_later(event)
    archive.flush_audit()
    records = archive.audit_records()
    assert [r.seq for r in records] == [first, first + 1, first + 2, first + 3]
    assert records[1].study_uids == ("1.2.3.0",)  # de-duplicated
    assert records[1].query == {"PatientID": "P0"}
    assert records[1].prev_hash == records[0].hash
    out = records[1].to_json()
    assert {"time", "principal", "action", "study_uids", "outcome", "client"} <= set(out)
    assert out["principal"] == "alice" and out["client"] == "10.0.0.1"
    assert [r.seq for r in archive.audit_records(study_uid="1.2.3.2")] == [first + 3]
    assert len(archive.audit_records(principal="alice", action="qido")) == 3
    assert archive.audit_records(principal="nobody") == []
    assert len(archive.audit_records(since=records[2].time)) == 2
    result = archive.verify_audit()
    assert result.ok and result.checked == 4


def test_verify_names_the_altered_record(archive: Archive) -> None:
    for event in _events(5):
        archive.audit_later(event)
    archive.flush_audit()
    assert archive.verify_audit().ok
    third = archive.audit_records()[2].seq
    archive.db.transaction(
        lambda conn: conn.execute(
            "UPDATE audit_records SET outcome = :o WHERE seq = :s",
            {"o": AuditOutcome.FAILURE.value, "s": third},
        )
    )
    result = archive.verify_audit()
    assert not result.ok and result.broken_seq == third
    assert f"record {third}" in result.reason


def test_verify_finds_a_removed_record(archive: Archive) -> None:
    for event in _events(4):
        archive.audit_later(event)
    archive.flush_audit()
    seqs = [r.seq for r in archive.audit_records()]
    archive.db.transaction(
        lambda conn: conn.execute("DELETE FROM audit_records WHERE seq = :s", {"s": seqs[1]})
    )
    result = archive.verify_audit()
    assert not result.ok and result.broken_seq == seqs[1]


def test_verify_finds_a_cut_tail(archive: Archive) -> None:
    for event in _events(4):
        archive.audit_later(event)
    archive.flush_audit()
    last = archive.audit_records()[-1].seq
    archive.db.transaction(
        lambda conn: conn.execute("DELETE FROM audit_records WHERE seq = :s", {"s": last})
    )
    result = archive.verify_audit()
    assert not result.ok and result.broken_seq == last


def test_prune_keeps_the_chain_verifiable(archive: Archive) -> None:
    old = [
        AuditEvent(action="qido", principal="old", time=f"2020-01-0{i}T00:00:00.000000Z")
        for i in range(1, 4)
    ]
    for event in old + _events(2):
        archive.audit_later(event)
    archive.flush_audit()
    assert archive.prune_audit("2021-01-01T00:00:00Z") == 3
    assert [r.principal for r in archive.audit_records()] == ["alice", "alice"]
    assert archive.verify_audit().ok
    archive.audit(AuditEvent.of(AuditAction.AUDIT_PRUNE, None, detail="3 records"))
    assert archive.verify_audit().ok
    assert archive.prune_audit("2021-01-01T00:00:00Z") == 0


def test_disabled_audit_records_nothing(tmp_path: Path, settings: Settings) -> None:
    from dataclasses import replace

    from noctis_pacs.core.settings import AuditSettings

    off = replace(settings, audit=AuditSettings(enabled=False))
    arch = Archive(off)
    try:
        assert arch.audit(_events(1)[0]) is None
        arch.audit_later(_events(1)[0])
        arch.flush_audit()
        assert arch.audit_records() == []
    finally:
        arch.close()


_WRITER = """
import sys
from noctis_pacs.core.audit import AuditEvent
from noctis_pacs.core.settings import load_settings
from storage.archive import Archive

settings = load_settings(environ={}, overrides={"storage": {"data_dir": sys.argv[1],
    "db": sys.argv[2]}, "audit": {"flush_interval": 0.01}})
archive = Archive(settings)
for i in range(int(sys.argv[3])):
    event = AuditEvent(action="c-find", principal=sys.argv[4], detail=str(i))
    if i % 10 == 0:
        archive.audit(event)
    else:
        archive.audit_later(event)
archive.close()
"""


def test_concurrent_writers_from_several_processes_keep_one_chain(
    archive: Archive, settings: Settings
) -> None:
    """Four processes append at once (SQLite WAL or PostgreSQL): one gap-free chain."""
    script = textwrap.dedent(_WRITER)
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                script,
                settings.storage.data_dir,
                settings.db_url,
                "150",
                f"w{n}",
            ]
        )
        for n in range(4)
    ]
    for proc in procs:
        assert proc.wait(timeout=120) == 0
    records = archive.audit_records()
    assert len(records) == 600
    assert [r.seq for r in records] == list(range(records[0].seq, records[0].seq + 600))
    for n in range(4):  # each process's records keep their own order
        details = [int(r.detail) for r in records if r.principal == f"w{n}"]
        assert details == list(range(150))
    result = archive.verify_audit()
    assert result.ok and result.checked == 600


def test_close_while_the_writer_thread_is_starting(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A record queued by a store that ends as the archive closes (a DIMSE association's
    audit tally at shutdown) starts the writer thread while ``close`` runs: ``close``
    waits for it instead of failing ("cannot join thread before it is started"), and the
    record is written."""
    archive = Archive(settings)
    original = threading.Thread.start
    starting = threading.Event()

    def slow_start(thread: threading.Thread) -> None:
        starting.set()
        time.sleep(0.3)
        original(thread)

    monkeypatch.setattr(threading.Thread, "start", slow_start)
    (event,) = _events(1, study="9.9")
    putting = threading.Thread(target=archive.audit_later, args=(event,))
    original(putting)
    assert starting.wait(10)
    archive.close()  # raised RuntimeError before
    putting.join(10)
    monkeypatch.undo()
    reopened = Archive(settings)
    try:
        assert [r.study_uids for r in reopened.audit_records(study_uid="9.9.0")] == [("9.9.0",)]
    finally:
        reopened.close()
