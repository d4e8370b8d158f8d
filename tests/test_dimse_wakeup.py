"""pynetdicom's association loops wake on work (dimse/wakeup.py).

The speed this buys is measured by bench/bench_dimse.py, never here; these tests
show the mechanism holds: the loops still sleep through their module's ``time``
(so a pynetdicom upgrade that changes them fails here, not silently in production),
a queued message or primitive ends the wait early, and an accepted association
carries its wake-ups and still answers.
"""

from __future__ import annotations

import inspect
import select
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pynetdicom.association
import pynetdicom.dul
import pytest
from pynetdicom import AE
from pynetdicom.sop_class import SecondaryCaptureImageStorage, Verification

from dimse.fastpath import wakeup
from tests.test_dimse_support import ON_PYNETDICOM, dcmtk, in_process_dimse


def test_pynetdicom_loops_still_sleep_through_their_module_time() -> None:
    reactor = inspect.getsource(pynetdicom.association.Association._run_reactor)
    dul = inspect.getsource(pynetdicom.dul.DULServiceProvider.run_reactor)
    assert "time.sleep(0.001)" in reactor
    assert "time.sleep(self._run_loop_delay)" in dul
    assert "msg_queue" in inspect.getsource(pynetdicom.dimse.DIMSEServiceProvider)
    assert "to_provider_queue" in inspect.getsource(pynetdicom.dul.DULServiceProvider)


class _Thread(threading.Thread):
    """A thread that sleeps like a pynetdicom loop carrying a wake-up."""

    def __init__(self, sleep: Any, seconds: float, **attributes: Any) -> None:
        super().__init__(daemon=True)
        self._sleep = sleep
        self._seconds = seconds
        self.slept = -1.0
        for name, value in attributes.items():
            setattr(self, name, value)

    def run(self) -> None:
        start = time.monotonic()
        self._sleep(self._seconds)
        self.slept = time.monotonic() - start


def test_queued_message_ends_the_reactor_sleep_early() -> None:
    wakeup.install()
    wake = wakeup.Wakeup()
    messages = wakeup.RingingQueue(wake.reactor.set)
    sleeper = _Thread(pynetdicom.association.time.sleep, 10.0, _noctis_wakeup=wake)
    sleeper.start()
    time.sleep(0.05)
    messages.put((1, "C-STORE-RQ"))
    sleeper.join(5)
    assert 0 <= sleeper.slept < 2.0
    assert not wake.reactor.is_set()  # cleared for the next turn


def test_sleep_of_threads_without_a_wakeup_is_unchanged() -> None:
    wakeup.install()
    sleeper = _Thread(pynetdicom.association.time.sleep, 0.05)
    sleeper.start()
    sleeper.join(5)
    assert sleeper.slept >= 0.045
    assert pynetdicom.association.time.monotonic() > 0  # the rest is the time module


class _Socket:
    def __init__(self, sock: socket.socket) -> None:
        self.socket = sock


def test_dul_sleep_ends_on_data_or_on_a_queued_primitive() -> None:
    wakeup.install()
    ours, peer = socket.socketpair()
    try:
        wake = wakeup.Wakeup()
        outgoing = wakeup.RingingQueue(wake.dul.ring)
        triggers = (lambda: peer.send(b"\x04"), lambda: outgoing.put("P-DATA"))
        for trigger in triggers:
            sleeper = _Thread(
                pynetdicom.dul.time.sleep, 10.0, _noctis_wakeup=wake, socket=_Socket(ours)
            )
            sleeper.start()
            time.sleep(0.05)
            trigger()
            sleeper.join(5)
            assert 0 <= sleeper.slept < 2.0
            if select.select([ours], [], [], 0)[0]:
                assert ours.recv(1) == b"\x04"  # read, so the next wait starts quiet
        wake.dul.close()
    finally:
        ours.close()
        peer.close()


def test_a_held_socket_is_neither_read_nor_waited_on_by_the_dul() -> None:
    """While the C-MOVE sender holds the socket (dimse/sender.py), data on it neither
    ends the DUL's sleep nor is taken by the DUL's look at its socket."""
    assert "_is_transport_event()" in inspect.getsource(
        pynetdicom.dul.DULServiceProvider.run_reactor
    )
    wakeup.install()
    ours, peer = socket.socketpair()
    try:
        wake = wakeup.Wakeup()
        looks: list[str] = []
        look = wakeup._unless_owned(wake, lambda: looks.append("read") is None)
        with wake.socket_lock:
            peer.send(b"\x04")
            sleeper = _Thread(
                pynetdicom.dul.time.sleep, 0.3, _noctis_wakeup=wake, socket=_Socket(ours)
            )
            sleeper.start()
            sleeper.join(5)
            assert sleeper.slept >= 0.25  # the data did not wake it
            assert look() is False and looks == []
        assert look() is True and looks == ["read"]
        wake.dul.close()
    finally:
        ours.close()
        peer.close()


@pytest.mark.dcmtk
def test_accepted_association_carries_its_wakeups_and_answers(tmp_path: Path) -> None:
    """PS3.4 A: each of 20 C-ECHOs on one association answered Success. The 20 go from
    dcmtk's echoscu: a pynetdicom requestor in this process, sharing the GIL with the
    server, can lose a fast response to its own reactor (its pause check races with
    the response: "Received unexpected C-ECHO service message")."""
    with in_process_dimse(tmp_path) as (server, _):
        ae = AE(ae_title="WAKEUP")
        ae.add_requested_context(Verification)
        ae.add_requested_context(SecondaryCaptureImageStorage)
        ae.add_requested_context(ON_PYNETDICOM)  # pynetdicom's association layer
        assoc = ae.associate("127.0.0.1", server.port, ae_title="NOCTIS")
        assert assoc.is_established
        try:
            accepted = server._server.active_associations
            assert accepted
            assert all(isinstance(a._noctis_wakeup, wakeup.Wakeup) for a in accepted)
            assert all(
                isinstance(a.dimse.msg_queue, wakeup.RingingQueue)
                and isinstance(a.dul.to_provider_queue, wakeup.RingingQueue)
                for a in accepted
            )
        finally:
            assoc.release()
        done = dcmtk(
            "echoscu", "-v", "--repeat", "20", "-aec", "NOCTIS", "127.0.0.1", str(server.port)
        )
        assert done.returncode == 0, done.stderr
        answers = (done.stdout + done.stderr).count("Received Echo Response (Success)")
        assert answers == 20


def _idle_ticks(accepted: Any, seconds: float) -> int:
    """How often the association's reactor woke in ``seconds`` of idleness."""
    found = wakeup.of(accepted)
    assert found is not None
    count = 0
    original = found.reactor.wait

    def counting(timeout: float | None = None) -> bool:
        nonlocal count
        count += 1
        return original(timeout)

    found.reactor.wait = counting  # type: ignore[method-assign]
    try:
        time.sleep(seconds)
    finally:
        found.reactor.wait = original  # type: ignore[method-assign]
    return count


def test_an_idle_acceptor_reactor_sleeps_long_yet_release_and_abort_end_it_at_once(
    tmp_path: Path,
) -> None:
    """The reactor of an accepted association idles up to REACTOR_IDLE (not pynetdicom's
    1 ms tick) because received A-RELEASE and A-ABORT primitives ring it (PS3.8 7.2,
    7.3): both still end the association without waiting out an idle tick."""
    with in_process_dimse(tmp_path) as (server, _):
        ae = AE(ae_title="IDLE")
        ae.add_requested_context(Verification)
        ae.add_requested_context(SecondaryCaptureImageStorage)
        ae.add_requested_context(ON_PYNETDICOM)  # pynetdicom's association layer
        for ending in ("release", "abort"):
            assoc = ae.associate("127.0.0.1", server.port, ae_title="NOCTIS")
            assert assoc.is_established
            (accepted,) = server._server.active_associations
            assert isinstance(accepted.dul.to_user_queue, wakeup.RingingQueue)
            assert _idle_ticks(accepted, 0.5) <= 0.5 / wakeup.REACTOR_IDLE + 2  # not 500
            started = time.monotonic()
            assoc.release() if ending == "release" else assoc.abort()
            accepted.join(timeout=5)
            assert not accepted.is_alive()
            assert time.monotonic() - started < 1.0, ending  # loose: a loaded CI machine


def test_a_queue_that_still_holds_items_after_a_get_rings_again() -> None:
    """The reactor takes one message per turn and then waits up to REACTOR_IDLE: a
    second message queued before its turn must ring it again, not wait out the tick."""
    rings: list[int] = []
    messages = wakeup.RingingQueue(lambda: rings.append(1))
    messages.put("first")
    messages.put("second")
    assert len(rings) == 2
    assert messages.get(block=False) == "first"
    assert len(rings) == 3  # the second is still there: rung again
    assert messages.get(block=False) == "second"
    assert len(rings) == 3  # nothing left: no ring
