"""The DIMSE listener (dimse/fastpath/listener.py) as it accepts associations: on the
fast path without TLS an association is created on the accepting thread (its own
thread is the only new one), and the listener never forces a full garbage collection
between connections (pynetdicom's does every 60, stopping every thread)."""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

from pynetdicom import AE
from pynetdicom.sop_class import SecondaryCaptureImageStorage, Verification

from tests.test_dimse_support import ON_PYNETDICOM, in_process_dimse, threads_started


def _echo_once(port: int) -> None:
    ae = AE(ae_title="LISTENED")
    ae.add_requested_context(Verification)
    ae.add_requested_context(SecondaryCaptureImageStorage)
    ae.add_requested_context(ON_PYNETDICOM)  # pynetdicom's association layer
    assoc = ae.associate("127.0.0.1", port, ae_title="NOCTIS")
    assert assoc.is_established
    try:
        assert assoc.send_c_echo().Status == 0x0000
    finally:
        assoc.release()


def test_an_association_starts_no_thread_per_connection(tmp_path: Path) -> None:
    with in_process_dimse(tmp_path) as (server, _):
        _echo_once(server.port)  # warm: the first association's one-time work
        with threads_started() as started:
            _echo_once(server.port)
    # The client's association and DUL threads, the server's association and DUL
    # threads: socketserver's per-connection thread is not among them.
    assert not [
        name for name in started if name.startswith("Thread-") and "process_request" in name
    ]
    assert sum(1 for name in started if name.startswith("AcceptorThread")) == 1


def test_no_full_collection_is_forced_between_connections(tmp_path: Path) -> None:
    collections: list[dict[str, Any]] = []

    def seen(phase: str, info: dict[str, Any]) -> None:
        if phase == "start" and info["generation"] == 2:
            collections.append(info)

    with in_process_dimse(tmp_path) as (server, _):
        listener = server._server
        assert listener is not None
        gc.callbacks.append(seen)
        try:
            for _ in range(130):  # pynetdicom's listener collects every 60th time
                listener.service_actions()
        finally:
            gc.callbacks.remove(seen)
    assert collections == []
