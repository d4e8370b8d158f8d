"""Lease owners of this process (job runner, router) and whether another one lives.

An owner is ``host:pid:nonce``.  At start a worker releases the leases of owners of
this host whose process is gone (a crash, ``kill -9``), so their work resumes at
once rather than when the lease runs out; owners on other hosts keep their lease.
"""

from __future__ import annotations

import os
import socket
import uuid


def host_prefix() -> str:
    return f"{socket.gethostname()}:"


def new_owner() -> str:
    return f"{host_prefix()}{os.getpid()}:{uuid.uuid4().hex[:6]}"


def owner_alive(owner: str) -> bool:
    """Whether the process named in a lease owner of this host still runs."""
    try:
        pid = int(owner[len(host_prefix()) :].split(":", 1)[0])
    except ValueError:
        return True  # not ours to judge
    if pid == os.getpid():
        return owner.startswith(host_prefix())
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
