"""Export of the audit trail to a syslog collector (issue 13 point 5, ``[audit.syslog]``):
DICOM audit messages (PS3.15 A.5) in RFC 5424 messages, octet-counted over TCP
(RFC 6587 3.4.1) and TLS (RFC 5425), received by a real collector the test runs."""

from __future__ import annotations

import base64
import json
import re
import socket
import ssl
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from noctis_pacs.core.audit import AuditAction, AuditEvent, AuditOutcome
from noctis_pacs.core.audit_message import SYSLOG_MSGID, SYSLOG_PRI
from noctis_pacs.core.auth import Principal, Role
from noctis_pacs.core.settings import SettingsError
from storage.archive import Archive
from tests.auth_support import NO_LIMITS, create_token
from tests.conftest import free_port, make_settings, start_server
from tests.dicomweb_support import multipart_body, new_boundary, stow_headers
from tests.factory import make_dataset, to_bytes, uid
from tests.test_auth_tls import make_pki

ALICE = Principal.with_role("alice", Role.VIEWER, kind="token")
#: RFC 5424 6: <PRI>VERSION SP TIMESTAMP SP HOSTNAME SP APP-NAME SP PROCID SP MSGID SP SD.
HEADER = re.compile(
    rb"^<(\d{1,3})>1 (\S+) (\S+) (\S+) (\S+) (\S+) (-) \xef\xbb\xbf(<\?xml.*)$", re.DOTALL
)


@dataclass
class Message:
    pri: int
    timestamp: str
    hostname: str
    app_name: str
    procid: str
    msgid: str
    xml: ET.Element

    @property
    def event_id(self) -> str:
        node = self.xml.find("EventIdentification/EventID")
        assert node is not None
        return str(node.get("csd-code"))

    @property
    def outcome(self) -> str:
        node = self.xml.find("EventIdentification")
        assert node is not None
        return str(node.get("EventOutcomeIndicator"))

    @property
    def seq(self) -> int:
        for participant in self.xml.findall("ActiveParticipant"):
            name = participant.get("UserName", "")
            if name.startswith("seq="):
                return int(name[4:])
        raise AssertionError("no seq")

    @property
    def requestor(self) -> ET.Element:
        for participant in self.xml.findall("ActiveParticipant"):
            if participant.get("UserIsRequestor") == "true":
                return participant
        raise AssertionError("no requestor")

    def studies(self) -> list[str]:
        return [
            str(node.get("ParticipantObjectID"))
            for node in self.xml.findall("ParticipantObjectIdentification")
            if node.find("ParticipantObjectIDTypeCode[@csd-code='110180']") is not None
        ]


def parse_frame(body: bytes) -> Message:
    match = HEADER.match(body)
    assert match is not None, body[:200]
    pri, timestamp, hostname, app_name, procid, msgid, _sd, xml = match.groups()
    return Message(
        int(pri),
        timestamp.decode(),
        hostname.decode(),
        app_name.decode(),
        procid.decode(),
        msgid.decode(),
        ET.fromstring(xml),
    )


@dataclass
class Collector:
    """A syslog collector: RFC 6587 octet-counted frames over TCP, or TLS when given a
    context (RFC 5425); every frame parsed as it arrives."""

    port: int
    context: ssl.SSLContext | None = None
    messages: list[Message] = field(default_factory=list)
    connections: int = 0
    _listener: socket.socket | None = None
    _open: list[socket.socket] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> Collector:
        self._stop.clear()
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen()
        listener.settimeout(0.1)
        self._listener = listener
        thread = threading.Thread(target=self._accept, daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def stop(self) -> None:
        """Close the listener and every connection (a collector going down)."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads.clear()
        for sock in self._open:
            sock.close()
        self._open.clear()
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    def _accept(self) -> None:
        assert self._listener is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(10)
            if self.context is not None:
                try:
                    conn = self.context.wrap_socket(conn, server_side=True)
                except (ssl.SSLError, OSError):
                    conn.close()
                    continue
            self.connections += 1
            self._open.append(conn)
            thread = threading.Thread(target=self._read, args=(conn,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _read(self, conn: socket.socket) -> None:
        buffer = b""
        conn.settimeout(0.1)
        while not self._stop.is_set():
            try:
                chunk = conn.recv(65536)
            except (TimeoutError, ssl.SSLWantReadError):
                continue
            except OSError:
                return
            if not chunk:
                return
            buffer += chunk
            while b" " in buffer:
                length_text, rest = buffer.split(b" ", 1)
                assert length_text.isdigit(), length_text[:20]  # RFC 6587 3.4.1 MSG-LEN
                length = int(length_text)
                if len(rest) < length:
                    break
                self.messages.append(parse_frame(rest[:length]))
                buffer = rest[length:]

    def wait_for(self, count: int, timeout: float = 20) -> list[Message]:
        deadline = time.monotonic() + timeout
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return list(self.messages)


@pytest.fixture
def collector() -> Iterator[Collector]:
    running = Collector(free_port()).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("syslog-pki")
    make_pki(folder)
    return folder


def _archive(tmp_path: Path, **syslog: object) -> Archive:
    data = tmp_path / "data"
    return Archive(
        make_settings(
            data,
            f"sqlite:///{data / 'index.sqlite3'}",
            audit={"flush_interval": 0.05, "syslog": {"tls": False, **syslog}},
        )
    )


def _event(n: int) -> AuditEvent:
    return AuditEvent.of(AuditAction.QIDO, ALICE, client="10.0.0.7", query={"PatientID": f"P{n}"})


def test_dicom_audit_messages_in_rfc5424_frames(tmp_path: Path, collector: Collector) -> None:
    """PS3.15 A.5.1 AuditMessage elements with the PS3.15 A.5.3 event codes, in an RFC 5424
    message (PRI 85 = security/authorization + notice; MSGID IHE+RFC-3881)."""
    archive = _archive(tmp_path, host="127.0.0.1", port=collector.port, app_name="noctis-test")
    study = uid()
    try:
        archive.audit(
            AuditEvent.of(
                AuditAction.QIDO,
                ALICE,
                client="10.0.0.7",
                study_uids=[study],
                query={"PatientName": "DOE^J*"},
            )
        )
        archive.audit(AuditEvent.of(AuditAction.WADO, ALICE, client="10.0.0.7", study_uids=[study]))
        archive.audit(
            AuditEvent.of(
                AuditAction.C_STORE,
                Principal.with_role("MODALITY1", Role.UPLOADER, kind="ae"),
                client="10.0.0.8",
                study_uids=[study],
            )
        )
        archive.audit(
            AuditEvent(
                action=AuditAction.AUTH_FAILURE,
                outcome=AuditOutcome.DENIED,
                client="10.0.0.9",
                detail="invalid token",
            )
        )
        archive.audit(AuditEvent.of(AuditAction.TOKEN_CREATE, None, detail="token bob"))
        archive.audit(AuditEvent.of(AuditAction.DELETE, ALICE, study_uids=[study]))
        messages = collector.wait_for(6)
        trail = [r.seq for r in archive.audit_records()]
    finally:
        archive.close()
    assert [m.event_id for m in messages] == [
        "110112",  # Query
        "110104",  # DICOM Instances Transferred
        "110104",
        "110114",  # User Authentication
        "110113",  # Security Alert
        "110105",  # DICOM Study Deleted
    ]
    for message in messages:
        assert message.pri == SYSLOG_PRI == 85
        assert message.msgid == SYSLOG_MSGID
        assert message.app_name == "noctis-test"
        source = message.xml.find("AuditSourceIdentification")
        assert source is not None and source.get("AuditSourceID") == "noctis-test"
        assert source.find("AuditSourceTypeCode[@csd-code='4']") is not None
    seqs = [m.seq for m in messages]
    assert seqs == sorted(seqs) and len(set(seqs)) == 6
    assert trail == seqs  # the trail's own numbers

    query, read, store, failure, token, delete = messages
    action = query.xml.find("EventIdentification")
    assert action is not None and action.get("EventActionCode") == "E"
    assert query.outcome == "0"
    assert query.requestor.get("UserID") == "alice"
    assert query.requestor.get("NetworkAccessPointID") == "10.0.0.7"
    assert query.requestor.get("NetworkAccessPointTypeCode") == "2"
    assert query.studies() == [study]
    encoded = query.xml.find(
        "ParticipantObjectIdentification[@ParticipantObjectID='1.2.840.10008.5.1.4.1.2.2.1']"
        "/ParticipantObjectQuery"
    )
    assert encoded is not None and encoded.text is not None
    assert json.loads(base64.b64decode(encoded.text)) == {"PatientName": "DOE^J*"}
    action = read.xml.find("EventIdentification")
    assert action is not None and action.get("EventActionCode") == "R"
    assert read.requestor.find("RoleIDCode[@csd-code='110152']") is not None  # destination
    assert store.requestor.get("AlternativeUserID") == "AETITLES=MODALITY1"
    assert store.requestor.find("RoleIDCode[@csd-code='110153']") is not None  # source
    assert failure.outcome == "4"
    assert failure.xml.find("EventIdentification/EventTypeCode[@csd-code='110122']") is not None
    assert token.xml.find("EventIdentification/EventTypeCode[@csd-code='110137']") is not None
    assert delete.studies() == [study]


def test_queued_while_the_collector_is_down_then_sent_in_order(tmp_path: Path) -> None:
    """Records wait (in order) while nothing listens, and a collector that goes away and
    comes back loses none of them."""
    port = free_port()
    archive = _archive(tmp_path, host="127.0.0.1", port=port)
    collector = Collector(port)
    try:
        for n in range(5):
            archive.audit_later(_event(n))
        archive.flush_audit()
        deadline = time.monotonic() + 10
        while True:
            stats = archive.audit_export_stats()
            assert stats is not None
            if stats.connect_failures >= 2 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert stats.queued == 5 and stats.sent == 0 and stats.connect_failures >= 2
        collector.start()
        messages = collector.wait_for(5)
        assert [m.seq for m in messages] == [r.seq for r in archive.audit_records()]
        # The collector restarts: the exporter notices the closed connection and reconnects.
        collector.stop()
        time.sleep(0.2)
        for n in range(5, 10):
            archive.audit(_event(n))
        time.sleep(0.5)
        collector.start()
        messages = collector.wait_for(10)
        assert [m.seq for m in messages] == [r.seq for r in archive.audit_records()]
        sent = [
            base64.b64decode(q.text or "")
            for m in messages
            for q in m.xml.iter("ParticipantObjectQuery")
        ]
        assert [json.loads(s)["PatientID"] for s in sent] == [f"P{n}" for n in range(10)]
        stats = archive.audit_export_stats()
        assert stats is not None and stats.sent == 10 and stats.dropped == 0
    finally:
        archive.close()
        collector.stop()


def test_the_queue_is_bounded_and_drops_are_counted(tmp_path: Path) -> None:
    port = free_port()
    archive = _archive(tmp_path, host="127.0.0.1", port=port, max_queued=4)
    collector = Collector(port)
    try:
        for n in range(10):
            archive.audit_later(_event(n))
        archive.flush_audit()
        stats = archive.audit_export_stats()
        assert stats is not None and stats.dropped == 6 and stats.queued == 4
        collector.start()
        messages = collector.wait_for(4)
        time.sleep(0.3)
        assert len(collector.messages) == 4
        # The newest four, in order.
        assert [m.seq for m in messages] == [r.seq for r in archive.audit_records()][-4:]
    finally:
        archive.close()
        collector.stop()


def test_tls_with_a_test_ca_and_a_client_certificate(tmp_path: Path, pki: Path) -> None:
    """RFC 5425: the collector's certificate is checked against ``ca_file``, and ours is
    presented for mutual authentication; a collector the CA did not sign gets nothing."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki / "ca.pem"))
    context.load_cert_chain(pki / "server.pem", pki / "server.key")
    context.verify_mode = ssl.CERT_REQUIRED
    collector = Collector(free_port(), context=context).start()
    archive = _archive(
        tmp_path,
        host="127.0.0.1",
        port=collector.port,
        tls=True,
        ca_file=str(pki / "ca.pem"),
        cert_file=str(pki / "client.pem"),
        key_file=str(pki / "client.key"),
    )
    try:
        archive.audit(_event(1))
        messages = collector.wait_for(1)
        assert [m.event_id for m in messages] == ["110112"]
    finally:
        archive.close()
        collector.stop()
    # The system CAs do not know the test CA: the exporter refuses that collector.
    collector = Collector(free_port(), context=context).start()
    archive = _archive(tmp_path / "other", host="127.0.0.1", port=collector.port, tls=True)
    try:
        archive.audit(_event(2))
        time.sleep(1.0)
        stats = archive.audit_export_stats()
        assert stats is not None and stats.sent == 0 and stats.connect_failures >= 1
        assert collector.messages == []
    finally:
        archive.close()
        collector.stop()


def test_settings_are_checked() -> None:
    with pytest.raises(SettingsError, match="cert_file and audit.syslog.key_file"):
        make_settings(
            Path("/tmp/x"), "sqlite:///x", audit={"syslog": {"host": "h", "cert_file": "c"}}
        )
    with pytest.raises(SettingsError, match="app_name"):
        make_settings(
            Path("/tmp/x"), "sqlite:///x", audit={"syslog": {"host": "h", "app_name": "a b"}}
        )
    with pytest.raises(SettingsError, match="need audit.syslog.tls"):
        make_settings(
            Path("/tmp/x"),
            "sqlite:///x",
            audit={"syslog": {"host": "h", "tls": False, "ca_file": "c"}},
        )
    off = make_settings(Path("/tmp/x"), "sqlite:///x")
    assert off.audit.syslog.host == ""  # off by default


def test_a_running_server_exports_what_it_audits(tmp_path: Path) -> None:
    """The server sends its records in the background: STOW-RS, QIDO-RS, WADO-RS and a
    refused credential reach the collector; the counters are on /metrics."""
    collector = Collector(free_port()).start()
    config = (
        '[auth]\nmode = "token"\n'
        + NO_LIMITS
        + "[audit]\nflush_interval = 0.05\n"
        + f'[audit.syslog]\nhost = "127.0.0.1"\nport = {collector.port}\ntls = false\n'
    )
    data = tmp_path / "data"
    server = start_server(data, f"sqlite:///{data / 'index.sqlite3'}", config=config)
    try:
        secret = create_token(server, "tech", "technologist")
        auth = {"Authorization": f"Bearer {secret}"}
        study = uid()
        boundary = new_boundary()
        stored = httpx.post(
            f"{server.dicomweb_url}/studies",
            content=multipart_body([to_bytes(make_dataset(study_uid=study))], boundary),
            headers={**stow_headers(boundary), **auth},
            timeout=30,
        )
        assert stored.status_code == 200, stored.text
        found = httpx.get(f"{server.dicomweb_url}/studies?StudyInstanceUID={study}", headers=auth)
        assert found.status_code == 200 and len(found.json()) == 1
        metadata = httpx.get(f"{server.dicomweb_url}/studies/{study}/metadata", headers=auth)
        assert metadata.status_code == 200
        refused = httpx.get(
            f"{server.dicomweb_url}/studies", headers={"Authorization": "Bearer wrong"}
        )
        assert refused.status_code == 401
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            ids = {m.event_id for m in collector.messages}
            if {"110104", "110112", "110114", "110113"} <= ids and len(ids) >= 4:
                break
            time.sleep(0.1)
        by_id: dict[str, list[Message]] = {}
        for message in collector.messages:
            by_id.setdefault(message.event_id, []).append(message)
        assert "110113" in by_id  # the token's creation, sent by the CLI's process
        queries = [
            json.loads(base64.b64decode(node.text or ""))
            for m in by_id["110112"]
            for node in m.xml.iter("ParticipantObjectQuery")
        ]
        assert {"StudyInstanceUID": study} in queries
        transfers = [m for m in by_id["110104"] if study in m.studies()]
        actions = {
            str(node.get("EventActionCode"))
            for m in transfers
            for node in m.xml.iter("EventIdentification")
        }
        assert actions == {"C", "R"}  # stored, then read
        assert by_id["110114"][0].outcome == "4"
        assert "wrong" not in "".join(ET.tostring(m.xml, "unicode") for m in collector.messages)
        server_messages = [m for m in collector.messages if m.procid == str(server.process.pid)]
        seqs = [m.seq for m in server_messages]
        assert seqs == sorted(seqs)  # one process: chain order
        metrics = httpx.get(f"{server.http_url}/metrics", headers=auth).text
        sent = re.search(r'noctis_audit_syslog_records_total\{outcome="sent"\} (\d+)', metrics)
        assert sent is not None and int(float(sent.group(1))) >= 1
        assert "noctis_audit_syslog_queued" in metrics
    finally:
        server.stop()
        collector.stop()
