"""Routing rules and the durable queue, over the wire: rules refused when saved,
delivery across a restart, two serve processes sharing PostgreSQL, dead letters."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, build_context, evt
from pynetdicom.presentation import StoragePresentationContexts
from pynetdicom.sop_class import CTImageStorage, MRImageStorage

from tests.conftest import RunningServer, db_url_for, free_port, pg_schema_url, start_server
from tests.factory import ct_series, uid
from tests.test_dimse_support import associate, server_archive

CONFIG = (
    "[routing]\npoll_interval_seconds = 0.1\nretry_initial_seconds = 0.2\n"
    "retry_max_seconds = 0.5\n[jobs]\ntimeout_seconds = 5.0\n"
)


@dataclass
class Destination:
    """A Storage SCP that records the SOP Instance UIDs in the order they arrive."""

    port: int
    ae_title: str = "ROUTED"
    received: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: Any = None

    def start(self) -> Destination:
        ae = AE(ae_title=self.ae_title)
        for cx in StoragePresentationContexts:
            ae.add_supported_context(
                cx.abstract_syntax, [ExplicitVRLittleEndian, ImplicitVRLittleEndian]
            )

        def handle(event: Any) -> int:
            with self.lock:
                self.received.append(str(event.request.AffectedSOPInstanceUID))
            return 0x0000

        self.server = ae.start_server(
            ("127.0.0.1", self.port), block=False, evt_handlers=[(evt.EVT_C_STORE, handle)]
        )
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server = None


def _series(modality: str, count: int, study: str | None = None) -> list[Dataset]:
    datasets = list(ct_series(count, 16, study_uid=study or uid()))
    for ds in datasets:
        ds.Modality = modality
        if modality == "MR":
            ds.SOPClassUID = MRImageStorage
            ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
    return datasets


def _c_store(server: RunningServer, datasets: list[Dataset], calling: str = "MODALITY") -> None:
    contexts = [build_context(CTImageStorage), build_context(MRImageStorage)]
    assoc = associate(server.dimse_port, contexts, ae_title=calling)
    assert assoc.is_established
    try:
        for ds in datasets:
            assert int(assoc.send_c_store(ds).Status) == 0
    finally:
        assoc.release()


def _api(server: RunningServer, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.request(method, f"{server.http_url}/api{path}", timeout=10, **kwargs)


def _setup(server: RunningServer, port: int, rule: dict[str, Any]) -> None:
    remote = {"name": "routed", "ae_title": "ROUTED", "host": "127.0.0.1", "port": port}
    assert _api(server, "POST", "/remotes", json=remote).status_code == 201
    answer = _api(server, "POST", "/routing/rules", json=rule)
    assert answer.status_code == 201, answer.text


def _until(check: Callable[[], bool], timeout: float = 60, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.parametrize(
    ("rule", "reason"),
    [
        ({"name": "r", "matches": {"NoSuchKeyword": "x"}, "destinations": ["d"]}, "unknown attribute"),
        ({"name": "r", "matches": {"Modality": "CT"}, "destinations": ["nosuch"]}, "no remote named"),
        ({"name": "r", "matches": {"Modality": "CT"}, "destinations": []}, "destinations"),
        ({"name": "r", "on": "stable", "matches": {"CallingAETitle": "X"}, "destinations": ["d"]}, "received rules only"),
        ({"name": "r", "on": "sometimes", "destinations": ["d"]}, "on must be"),
        ({"name": "r", "matches": {"Modality": 3}, "destinations": ["d"]}, "must be a string"),
        ({"name": "r", "destinations": ["d"], "colour": "red"}, "unknown field"),
    ],
)  # fmt: skip
def test_a_rule_is_refused_with_its_reason_when_saved(
    server: RunningServer, rule: dict[str, Any], reason: str
) -> None:
    remote = {"name": "d", "ae_title": "D", "host": "127.0.0.1", "port": 1}
    assert _api(server, "POST", "/remotes", json=remote).status_code in (201, 409)
    answer = _api(server, "POST", "/routing/rules", json=rule)
    assert answer.status_code == 400 and reason in answer.json()["detail"], answer.text
    assert _api(server, "GET", "/routing/rules").json() == []
    ignored = {"name": "r", "matches": {"PixelData": "x"}, "destinations": ["d"]}
    refused = _api(server, "POST", "/routing/rules", json=ignored)
    assert refused.status_code == 400, refused.text


def test_routing_across_a_restart_delivers_each_matching_instance_in_order(
    tmp_path: Path, backend: str
) -> None:
    """Instances received while the destination is down stay queued across a restart
    of the server, then arrive once it is up: each matching instance, in order per
    study, none of those the rule does not match."""
    data = tmp_path / "data"
    db_url = db_url_for(backend, data)
    port = free_port()
    server = start_server(data, db_url, config=CONFIG)
    try:
        rule = {
            "name": "ct-from-modality",
            "matches": {"Modality": "CT", "CallingAETitle": "MOD*"},
            "destinations": ["routed"],
            "max_attempts": 1000,
        }
        _setup(server, port, rule)
        time.sleep(2.5)  # ingest looks rules up at most every 2 s (storage.routing)
        study = uid()
        ct = _series("CT", 6, study)
        _c_store(server, ct)
        _c_store(server, _series("MR", 2))
        _c_store(server, _series("CT", 2), calling="OTHER")
        _until(
            lambda: _api(server, "GET", "/routing/queue").json()["queued"] == 6,
            what="6 queued items",
        )
        assert "noctis_route_queue" in httpx.get(f"{server.http_url}/metrics", timeout=10).text
    finally:
        server.stop()
    destination = Destination(port).start()
    try:
        server = start_server(data, db_url, config=CONFIG)
        try:
            _until(lambda: len(destination.received) >= 6, what="6 deliveries")
            _until(lambda: _api(server, "GET", "/routing/queue").json()["queued"] == 0)
        finally:
            server.stop()
    finally:
        destination.stop()
    assert destination.received == [str(ds.SOPInstanceUID) for ds in ct]


@pytest.mark.postgres
def test_two_serve_processes_sharing_postgresql_deliver_every_instance(tmp_path: Path) -> None:
    """Two serve processes on one PostgreSQL index and blob store, both receiving and
    both routing (FOR UPDATE SKIP LOCKED): every instance reaches the destination,
    duplicates on the wire allowed, none lost."""
    db_url = pg_schema_url()
    data = tmp_path / "data"
    port = free_port()
    destination = Destination(port).start()
    first = start_server(data, db_url, config=CONFIG)
    second = start_server(data, db_url, config=CONFIG)
    try:
        _setup(first, port, {"name": "all", "destinations": ["routed"], "max_attempts": 100})
        time.sleep(2.5)
        stored: list[str] = []
        for index in range(6):
            datasets = _series("CT", 5)
            _c_store(first if index % 2 else second, datasets)
            stored += [str(ds.SOPInstanceUID) for ds in datasets]
        _until(lambda: set(stored) <= set(destination.received), what="every instance")
        _until(lambda: _api(second, "GET", "/routing/queue").json()["queued"] == 0)
    finally:
        first.stop()
        second.stop()
        destination.stop()
    assert set(destination.received) == set(stored)


def test_failures_become_dead_letters_that_an_admin_retries_or_drops(
    server_factory: Callable[..., RunningServer],
) -> None:
    server = server_factory(CONFIG)
    port = free_port()
    _setup(server, port, {"name": "fragile", "destinations": ["routed"], "max_attempts": 2})
    time.sleep(2.5)
    datasets = _series("CT", 3)
    _c_store(server, datasets)
    _until(lambda: _api(server, "GET", "/routing/queue").json()["dead"] == 3, what="dead")
    dead = _api(server, "GET", "/routing/dead").json()
    assert len(dead) == 3 and all("connection refused" in d["error"] for d in dead)
    assert all(d["attempts"] == 2 for d in dead)
    assert _api(server, "POST", "/routing/dead/retry", json={"bogus": 1}).status_code == 400
    destination = Destination(port).start()
    try:
        retried = _api(server, "POST", "/routing/dead/retry", json={"ids": [dead[0]["id"]]})
        assert retried.json() == {"retried": 1}
        _until(lambda: len(destination.received) == 1, what="the retried item")
        assert _api(server, "POST", "/routing/dead/drop", json={"all": True}).json() == {
            "dropped": 2
        }
    finally:
        destination.stop()
    assert _api(server, "GET", "/routing/queue").json()["dead"] == 0
    assert destination.received == [str(datasets[0].SOPInstanceUID)]


def test_a_rule_on_stable_sends_the_study_once_it_is_stable(
    server_factory: Callable[..., RunningServer],
) -> None:
    """``on: stable``: nothing goes while the study receives; once it is stable
    (workflow.stable_after_seconds without a new instance) its matching instances do."""
    server = server_factory(
        CONFIG + "[workflow]\nstable_after_seconds = 1.5\npoll_interval_seconds = 0.2\n"
    )
    port = free_port()
    destination = Destination(port).start()
    try:
        rule = {"name": "on-stable", "on": "stable", "matches": {"Modality": "CT"},
                "destinations": ["routed"]}  # fmt: skip
        _setup(server, port, rule)
        time.sleep(2.5)
        study = uid()
        ct = _series("CT", 4, study)
        _c_store(server, ct[:2])
        assert destination.received == []
        _c_store(server, ct[2:])
        _until(lambda: len(destination.received) >= 4, what="the stable study")
    finally:
        destination.stop()
    assert sorted(destination.received) == sorted(str(ds.SOPInstanceUID) for ds in ct)


def _route_cli(server: RunningServer, *args: str) -> Any:
    import subprocess
    import sys

    cli = Path(sys.executable).parent / "noctis-pacs"
    return subprocess.run(
        [str(cli), "route", *args, "--config", str(server.config_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_route_cli_manages_rules_and_dead_letters_while_the_server_runs(
    server_factory: Callable[..., RunningServer],
) -> None:
    """``noctis-pacs route``: a rule refused with its reason when saved (nothing saved),
    one added from the CLI fires in the running server, its dead letters are listed,
    retried and dropped from the CLI; every act on the audit trail."""
    import json

    server = server_factory(CONFIG)
    port = free_port()
    remote = {"name": "routed", "ae_title": "ROUTED", "host": "127.0.0.1", "port": port}
    assert _api(server, "POST", "/remotes", json=remote).status_code == 201
    unknown = _route_cli(server, "add", "bad", "--destination", "routed", "--match", "Colour=red")
    assert unknown.returncode == 2 and "unknown attribute" in unknown.stderr
    nowhere = _route_cli(server, "add", "bad", "--destination", "nosuch", "--match", "Modality=CT")
    assert nowhere.returncode == 2 and "no remote named" in nowhere.stderr
    assert json.loads(_route_cli(server, "list", "--json").stdout) == []
    added = _route_cli(
        server, "add", "ct", "--destination", "routed", "--match", "Modality=CT",
        "--max-attempts", "1",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    rules = json.loads(_route_cli(server, "list", "--json").stdout)
    assert [(r["name"], r["matches"], r["destinations"]) for r in rules] == [
        ("ct", {"Modality": "CT"}, ["routed"])
    ]
    assert _route_cli(server, "add", "ct", "--destination", "routed").returncode == 1
    time.sleep(2.5)  # the running router reads its rules again
    ct, mr = _series("CT", 2), _series("MR", 1)
    _c_store(server, ct + mr)

    def dead() -> list[Any]:
        return list(json.loads(_route_cli(server, "dead", "list", "--json").stdout))

    _until(lambda: len(dead()) == 2, what="two dead letters (MR not routed)")
    letters = dead()
    assert {d["sop_uid"] for d in letters} == {str(ds.SOPInstanceUID) for ds in ct}
    assert _route_cli(server, "dead", "retry").returncode == 2  # neither ids nor --all
    destination = Destination(port).start()
    try:
        retried = _route_cli(server, "dead", "retry", str(letters[0]["id"]))
        assert retried.returncode == 0 and "retried 1" in retried.stdout
        _until(lambda: len(destination.received) == 1, what="the retried item")
        dropped = _route_cli(server, "dead", "drop", "--all")
        assert dropped.returncode == 0 and "dropped 1" in dropped.stdout
    finally:
        destination.stop()
    assert destination.received == [letters[0]["sop_uid"]]
    assert json.loads(_route_cli(server, "queue", "--json").stdout)["dead"] == 0
    removed = _route_cli(server, "remove", "ct")
    assert removed.returncode == 0
    assert _route_cli(server, "remove", "ct").returncode == 1
    with server_archive(server) as archive:
        actions = [r.action for r in archive.audit_records(principal="cli")]
    for action in ("admin.route.add", "admin.route.dead.retry", "admin.route.dead.drop",
                   "admin.route.remove"):  # fmt: skip
        assert action in actions, actions
