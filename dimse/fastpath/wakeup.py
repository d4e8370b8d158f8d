"""Wake pynetdicom's two per-association loops when there is work, not on a fixed tick.

pynetdicom runs two polling loops for every association:

- the DUL thread looks at its socket and at its queue of primitives to send, and
  sleeps ``_run_loop_delay`` (1 ms) whenever a turn found nothing to do;
- the association's reactor (the acceptor thread, which runs our handlers) sleeps
  1 ms before every look at its queue of decoded DIMSE messages.

A C-STORE request therefore waits for the DUL's tick to be read and for the
reactor's tick to be handled, and its response for the DUL's tick to be sent. On
loopback the work of one small C-STORE is well under a millisecond, so the ticks
dominate the time per instance (measured with a no-op SCP: docs/performance.md).

Here the loops' sleeps become waits that end early:

- the reactor waits on an :class:`threading.Event` that is set when a DIMSE message
  is queued for it, or when a sending thread asks it to pause;
- the DUL waits in ``select()`` on its socket and on an event file descriptor
  written when a primitive is queued for sending.

The DUL's waits never last longer than the sleeps they replace, so its own logic
(timers, release, abort) is unchanged. The reactor of an association Noctis accepted
waits up to ``REACTOR_IDLE`` instead of 1 ms: everything its loop reacts to rings it
(a queued message, a pause, and the DUL's queue of received A-RELEASE, A-ABORT and
A-P-ABORT primitives, :class:`RingingQueue` too on acceptors), so the longer wait only
spaces its checks of the network idle timer and of a DUL thread that died without a
word. Ticking every millisecond, each open association's reactor would take the GIL
a thousand times a second. Only threads that carry a wake-up (:func:`attach`) are affected; every other
sleep in those modules is the plain ``time.sleep``.
"""

from __future__ import annotations

import contextlib
import os
import queue
import select
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

import pynetdicom.association
import pynetdicom.dul
from pynetdicom.association import Association
from pynetdicom.dul import DULServiceProvider

#: The attribute on an association (reactor thread) or DUL thread that holds its wake-up.
_ATTRIBUTE = "_noctis_wakeup"
#: pynetdicom's reactor loop sleeps this long between looks at its queue.
_REACTOR_TICK = 0.001
#: The longest wait of an acceptor's reactor with nothing to do (see the module text).
REACTOR_IDLE = 0.05


class _Doorbell:
    """A flag that ``select()`` can wait on (an eventfd, or a pipe where there is none)."""

    def __init__(self) -> None:
        if hasattr(os, "eventfd"):
            fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
            self.read_fd, self._write_fd = fd, fd
        else:  # pragma: no cover - non-Linux
            self.read_fd, self._write_fd = os.pipe()
            os.set_blocking(self.read_fd, False)
            os.set_blocking(self._write_fd, False)
        self._closed = False

    def ring(self) -> None:
        with contextlib.suppress(OSError):  # full (already rung) or closed
            os.write(self._write_fd, (1).to_bytes(8, "little"))

    def drain(self) -> None:
        with contextlib.suppress(OSError):
            os.read(self.read_fd, 4096)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        os.close(self.read_fd)
        if self._write_fd != self.read_fd:
            os.close(self._write_fd)


class RingingQueue(queue.Queue[Any]):
    """A queue that calls ``ring`` after every put (``put_nowait`` goes through ``put``).

    As an association's DIMSE message queue it also keeps a response for the thread
    that asked for it: while the reactor's pause checkpoint is cleared (a thread is
    sending a request and awaits its response), the reactor's own non-blocking look
    finds nothing. pynetdicom relies on the reactor having reached its pause point
    instead, which a reactor preempted just after passing it can miss; waking on work
    makes that window far more frequent than its 1 ms sleep did.
    """

    def __init__(self, ring: Callable[[], None]) -> None:
        super().__init__()
        self._ring = ring
        self._checkpoint: threading.Event | None = None
        self._reactor: weakref.ref[Association] | None = None

    def guard(self, checkpoint: threading.Event, reactor: Association) -> None:
        self._checkpoint = checkpoint
        self._reactor = weakref.ref(reactor)

    #: Serves an item in the putting thread instead of queueing it (``dimse.fastpath.inline``).
    serve_inline: Callable[[Any], bool] | None = None

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        if self.serve_inline is not None and self.serve_inline(item):
            return
        super().put(item, block, timeout)
        self._ring()

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        if (
            not block
            and self._checkpoint is not None
            and not self._checkpoint.is_set()
            and self._reactor is not None
            and threading.current_thread() is self._reactor()
        ):
            raise queue.Empty
        item = super().get(block, timeout)
        if self.qsize():  # the reactor takes one item per turn: wake it for the next
            self._ring()
        return item


class _RingingEvent(threading.Event):
    """The reactor's pause checkpoint: a thread that clears it (to pause the reactor
    before sending a request) also wakes the reactor, so the pause is reached at
    once instead of after the reactor's current 1 ms sleep."""

    def __init__(self, ring: Callable[[], None]) -> None:
        super().__init__()
        self.set()
        self._ring = ring

    def clear(self) -> None:
        super().clear()
        self._ring()


class Wakeup:
    """The wake-ups of one association: an event for its reactor, a doorbell for its DUL.

    ``socket_lock`` lets another thread read the association's socket itself (the
    C-MOVE sender reads each C-STORE response): while it is held the DUL neither reads
    the socket nor waits on it (see :func:`attach`)."""

    def __init__(self) -> None:
        self.reactor = threading.Event()
        self.dul = _Doorbell()
        self.socket_lock = threading.Lock()
        #: How long the reactor loop's tick may last: ``REACTOR_IDLE`` once every
        #: primitive the reactor waits for rings it.
        self.reactor_tick = _REACTOR_TICK

    def reactor_sleep(self, seconds: float) -> None:
        if seconds == _REACTOR_TICK:
            seconds = self.reactor_tick
        if self.reactor.wait(seconds):
            # Cleared before the reactor looks at its queue, so a message queued
            # after this point rings again: no wake-up is lost.
            self.reactor.clear()

    def dul_sleep(self, dul: DULServiceProvider, seconds: float) -> None:
        sock = getattr(getattr(dul, "socket", None), "socket", None)
        if sock is None:
            time.sleep(seconds)
            return
        pending = getattr(sock, "pending", None)  # TLS: bytes already decrypted
        if pending is not None and pending():
            return
        # The socket's reader is another thread: waiting on it would spin on its data.
        watched = [self.dul.read_fd] if self.socket_lock.locked() else [sock, self.dul.read_fd]
        try:
            ready = select.select(watched, [], [], seconds)[0]
        except (OSError, ValueError):  # the socket closed under us
            time.sleep(seconds)
            return
        if self.dul.read_fd in ready:  # drain only a rung bell: a read that finds none
            self.dul.drain()  # costs a system call and an exception each turn


class _Clock:
    """Stands in for the ``time`` module inside one pynetdicom module: ``sleep`` of a
    thread carrying a wake-up ends early when there is work; the rest is ``time``."""

    def __init__(self, sleep: Callable[[float], None]) -> None:
        self.sleep = sleep

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


def _association_sleep(seconds: float) -> None:
    wakeup = getattr(threading.current_thread(), _ATTRIBUTE, None)
    if wakeup is None:
        time.sleep(seconds)
    else:
        wakeup.reactor_sleep(seconds)


def _dul_sleep(seconds: float) -> None:
    thread = threading.current_thread()
    wakeup = getattr(thread, _ATTRIBUTE, None)
    if wakeup is None:
        time.sleep(seconds)
    else:
        wakeup.dul_sleep(thread, seconds)


_install_lock = threading.Lock()
#: The name under which both pynetdicom modules import the ``time`` module.
_TIME = "time"


def install() -> None:
    """Route the sleeps of pynetdicom's association and DUL modules through the clocks
    above (once per process; threads without a wake-up sleep as before)."""
    with _install_lock:
        for module, sleep in (
            (pynetdicom.association, _association_sleep),
            (pynetdicom.dul, _dul_sleep),
        ):
            if not isinstance(getattr(module, _TIME), _Clock):
                setattr(module, _TIME, _Clock(sleep))


def _unless_owned(wakeup: Wakeup, look: Callable[[], bool]) -> Callable[[], bool]:
    """The DUL's look at its socket, skipped while another thread holds the socket."""

    def is_transport_event() -> bool:
        if not wakeup.socket_lock.acquire(blocking=False):
            return False
        try:
            return look()
        finally:
            wakeup.socket_lock.release()

    return is_transport_event


def of(assoc: Association) -> Wakeup | None:
    """The wake-ups :func:`attach` gave this association, if any."""
    found = getattr(assoc, _ATTRIBUTE, None)
    return found if isinstance(found, Wakeup) else None


def attach(assoc: Association) -> Wakeup:
    """Give an association its wake-ups: its DIMSE message queue and its pause
    checkpoint set the reactor's event, its DUL's send queue rings the DUL's doorbell.

    Call it before the association's loops have work: on an acceptor before it is
    started, on a requestor from its ``EVT_ACCEPTED`` handler (negotiation done,
    nothing queued, reactor not yet running). An acceptor's queue of received
    primitives rings its reactor too, and its reactor idles up to ``REACTOR_IDLE``.
    """
    install()
    wakeup = Wakeup()
    messages = RingingQueue(wakeup.reactor.set)
    checkpoint = _RingingEvent(wakeup.reactor.set)
    messages.guard(checkpoint, assoc)
    assoc.dimse.msg_queue = messages
    assoc.dul.to_provider_queue = RingingQueue(wakeup.dul.ring)
    if assoc.is_acceptor and not assoc.is_alive():
        # Received A-RELEASE / A-ABORT primitives ring the reactor (PS3.8 7.2, 7.3):
        # with nothing left to poll for, its idle wait can be long.
        assoc.dul.to_user_queue = RingingQueue(wakeup.reactor.set)
        wakeup.reactor_tick = REACTOR_IDLE
    assoc._reactor_checkpoint = checkpoint
    assoc.dul._is_transport_event = _unless_owned(  # type: ignore[method-assign]
        wakeup, assoc.dul._is_transport_event
    )
    setattr(assoc, _ATTRIBUTE, wakeup)
    setattr(assoc.dul, _ATTRIBUTE, wakeup)
    # The DUL thread holds the association, so the descriptor outlives both loops.
    weakref.finalize(assoc.dul, wakeup.dul.close)
    return wakeup
