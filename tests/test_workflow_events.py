"""Study tracking, stability, SSE and webhooks against the real server, both backends."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
from pydicom.uid import generate_uid

from tests.conftest import RunningServer
from tests.factory import make_dataset
from tests.workflow_support import (
    MPPS,
    association,
    create_item,
    item_json,
    mpps_create_dataset,
    token,
)

SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
FAST = (
    "[workflow]\nstable_after_seconds = 1.5\npoll_interval_seconds = 0.2\n"
    "webhook_retry_initial_seconds = 2.0\n"
)


def wait_for(check: Callable[[], Any], timeout: float = 20.0, step: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(step)
    raise AssertionError("condition not met in time")


def store(server: RunningServer, count: int, **attrs: Any) -> None:
    with association(server.dimse_port, SECONDARY_CAPTURE) as assoc:
        for number in range(count):
            ds = make_dataset(instance_number=number + 1, **attrs)
            status = assoc.send_c_store(ds)
            assert int(status.Status) == 0, status


class EventStream:
    """Reads the SSE stream (HTTP/1.0 over a plain socket) in a thread; ``events`` grows."""

    def __init__(self, url: str) -> None:
        self.events: list[dict[str, Any]] = []
        parsed = httpx.URL(url)
        self._sock = socket.create_connection((parsed.host, parsed.port or 80), timeout=10)
        target = parsed.raw_path.decode()
        self._sock.sendall(f"GET {target} HTTP/1.0\r\nHost: {parsed.host}\r\n\r\n".encode())
        self._sock.settimeout(None)
        self._file = self._sock.makefile("rb")
        status = self._file.readline().decode()
        assert " 200 " in status, status
        headers = {}
        while (line := self._file.readline().decode().strip()) != "":
            key, _, value = line.partition(":")
            headers[key.lower()] = value.strip()
        assert headers["content-type"].startswith("text/event-stream")
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        fields: dict[str, str] = {}
        try:
            for raw in self._file:
                line = raw.decode().rstrip("\r\n")
                if not line:
                    if "data" in fields:
                        event = {"id": int(fields["id"]), "event": fields["event"]}
                        self.events.append({**event, **json.loads(fields["data"])})
                    fields = {}
                elif not line.startswith(":") and ":" in line:
                    key, _, value = line.partition(":")
                    fields[key] = value.strip()
        except (OSError, ValueError):
            pass

    def kinds(self, subject: str) -> list[str]:
        return [e["kind"] for e in self.events if e["subject"] == subject]

    def close(self) -> None:
        with suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        self._thread.join(timeout=5)


def test_tracking_stability_and_sse(server_factory: Callable[..., RunningServer]) -> None:
    """Instances link to their item by Study Instance UID, else Accession Number; a study
    becomes stable once after ``stable_after_seconds`` without new instances."""
    srv = server_factory(FAST)
    stream = EventStream(f"{srv.http_url}/workflow/events")
    try:
        by_uid = create_item(srv.http_url, item_json(token()))
        acc_pid = token()
        by_acc = create_item(srv.http_url, item_json(acc_pid))
        study_uid = by_uid["study_instance_uid"]
        other_study = generate_uid()
        store(srv, 3, study_uid=study_uid, accession="UNRELATED")
        store(srv, 2, study_uid=other_study, accession=acc_pid[:16])
        status_url = f"{srv.http_url}/workflow/studies"

        def stable(uid: str) -> dict[str, Any] | None:
            found = httpx.get(f"{status_url}/{uid}", timeout=10).json()
            return found if found.get("phase") == "stable" else None

        first = wait_for(lambda: stable(study_uid))
        assert first["instances"] == 3 and first["item_id"] == by_uid["id"]
        second = wait_for(lambda: stable(other_study))
        assert second["instances"] == 2 and second["item_id"] == by_acc["id"]
        time.sleep(2.0)  # more polls: stability must not fire again
        wait_for(lambda: "study.stable" in stream.kinds(other_study))
        assert stream.kinds(study_uid).count("study.stable") == 1
        assert stream.kinds(study_uid).count("study.received") == 1
        assert stream.kinds(other_study).count("study.stable") == 1
        assert "worklist.created" in stream.kinds(by_uid["id"])
        # A new instance re-opens the study: received again, then stable once more.
        store(srv, 1, study_uid=study_uid, accession="UNRELATED")
        wait_for(lambda: stream.kinds(study_uid).count("study.stable") == 2)
        assert stable(study_uid)["instances"] == 4  # type: ignore[index]
        # MPPS completion: the study view reaches "completed" and events follow.
        mpps_uid = generate_uid()
        with association(srv.dimse_port, MPPS) as assoc:
            status, _ = assoc.send_n_create(mpps_create_dataset(study_uid, "SPS1"), MPPS, mpps_uid)
            assert int(status.Status) == 0
            from tests.test_workflow_mpps import _completion

            status, _ = assoc.send_n_set(_completion(), MPPS, mpps_uid)
            assert int(status.Status) == 0
        done = httpx.get(f"{status_url}/{study_uid}", timeout=10).json()
        assert done["phase"] == "completed" and done["item_status"] == "COMPLETED"
        wait_for(lambda: stream.kinds(mpps_uid).count("mpps.changed") == 2)
        assert "worklist.changed" in stream.kinds(by_uid["id"])
        listed = httpx.get(status_url, timeout=10).json()
        assert {s["study_instance_uid"] for s in listed} >= {study_uid, other_study}
        # The stream resumes after a given event id (Last-Event-ID).
        last = stream.events[0]["id"]
        resumed = EventStream(f"{srv.http_url}/workflow/events?after={last}")
        try:
            wait_for(lambda: len(resumed.events) >= len(stream.events) - 1)
            assert resumed.events[0]["id"] == stream.events[1]["id"]
        finally:
            resumed.close()
    finally:
        stream.close()


class Receiver:
    """A webhook receiver that answers 500 to the first two attempts of each delivery."""

    def __init__(self, failures: int = 2) -> None:
        self.attempts: Counter[str] = Counter()
        self.successes: Counter[str] = Counter()
        self.bodies: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server API
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                delivery = self.headers["Noctis-Delivery-Id"]
                with receiver.lock:
                    receiver.attempts[delivery] += 1
                    ok = receiver.attempts[delivery] > failures
                    if ok:
                        receiver.successes[delivery] += 1
                        receiver.bodies[delivery] = body
                self.send_response(200 if ok else 500)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()


@contextmanager
def receiver() -> Iterator[Receiver]:
    hook = Receiver()
    try:
        yield hook
    finally:
        hook.close()


def test_webhook_retried_across_a_restart(server_factory: Callable[..., RunningServer]) -> None:
    """At-least-once: two failures, a server restart in between, then exactly one success
    per delivery id; pending deliveries live in the index."""
    with receiver() as hook:
        config = FAST + f'webhooks = ["{hook.url}"]\n'
        first = server_factory(config)
        created = create_item(first.http_url, item_json(token()))
        wait_for(lambda: sum(hook.attempts.values()) >= 1)
        first.stop()
        assert sum(hook.attempts.values()) == 1  # the retry was not yet due
        second = server_factory(config, db_url=first.db_url)
        wait_for(lambda: len(hook.successes) >= 1, timeout=30)
        summary = wait_for(
            lambda: (
                (s := httpx.get(f"{second.http_url}/workflow/webhooks", timeout=10).json())[
                    "delivered"
                ]
                and s
            )
        )
        assert summary["pending"] == 0 and summary["failed"] == 0
        time.sleep(1.0)
        assert len(hook.attempts) == 1
        delivery_id, attempts = next(iter(hook.attempts.items()))
        assert attempts == 3
        assert hook.successes == Counter({delivery_id: 1})
        body = hook.bodies[delivery_id]
        assert body["delivery_id"] == delivery_id
        assert body["event"]["kind"] == "worklist.created"
        assert body["event"]["data"]["item_id"] == created["id"]
        assert "patient_name" not in json.dumps(body)  # no patient attributes in events
