"""Abuse limits over the wire: 429 with Retry-After under a burst, an address blocked
after repeated authentication failures, HTTP and DIMSE address lists."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest
from pynetdicom import build_context
from pynetdicom.sop_class import Verification

from noctis_pacs.core.tokens import SECRET_PREFIX
from tests.auth_support import create_token
from tests.conftest import RunningServer
from tests.test_dimse_support import associate, server_archive

pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=False)


def test_burst_gets_429_with_retry_after(server_factory: Callable[..., RunningServer]) -> None:
    """RFC 6585 4: 429 Too Many Requests with Retry-After, per principal and per address."""
    server = server_factory(
        '[auth]\nmode = "token"\n[http.limits]\nrequests_per_minute = 60\nburst = 5\n'
    )
    secret = create_token(server, "burst", "viewer")
    url = f"{server.dicomweb_url}/studies"
    with httpx.Client(headers={"Authorization": f"Bearer {secret}"}) as client:
        statuses = [client.get(url).status_code for _ in range(8)]
        # The readiness polls of the fixture came from the same address: they used part
        # of the address's burst of 5, so only the first few here are certain to pass.
        assert statuses[:3] == [200] * 3
        assert 429 in statuses[3:]
        limited = client.get(url)
        assert limited.status_code == 429
        assert 1 <= int(limited.headers["retry-after"]) <= 60
    assert httpx.get(f"{server.http_url}/healthz").status_code in (200, 429)
    assert server.alive()


def test_repeated_failures_block_the_address(server_factory: Callable[..., RunningServer]) -> None:
    server = server_factory(
        '[auth]\nmode = "token"\n[http.limits]\nauth_failures = 3\nblock_seconds = 120\n'
    )
    good = create_token(server, "good", "viewer")
    url = f"{server.dicomweb_url}/studies"
    bad = {"Authorization": f"Bearer {SECRET_PREFIX}{'z' * 43}"}
    assert [httpx.get(url, headers=bad).status_code for _ in range(3)] == [401] * 3
    blocked = httpx.get(url, headers={"Authorization": f"Bearer {good}"})
    assert blocked.status_code == 429
    assert 60 < int(blocked.headers["retry-after"]) <= 120
    log = server.log()
    assert "address-blocked" in log and good not in log and "z" * 43 not in log
    deadline = time.monotonic() + 10
    while True:
        with server_archive(server) as archive:
            blocks = archive.audit_records(action="access.denied")
        if any("address-blocked" in r.detail for r in blocks) or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert any("address-blocked" in r.detail and r.client == "127.0.0.1" for r in blocks)


def test_http_deny_list_refuses_the_address(server_factory: Callable[..., RunningServer]) -> None:
    server = server_factory("", env={"NOCTIS_HTTP_DENY": "127.0.0.0/8"}, wait_http=False)
    deadline = time.monotonic() + 30
    while True:
        try:
            response = httpx.get(f"{server.http_url}/dicom-web/studies")
            break
        except httpx.TransportError:
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.2)
    assert response.status_code == 403 and "address" in response.json()["detail"]
    allowed = server_factory("", env={"NOCTIS_HTTP_ALLOW": "127.0.0.1/32,::1"})
    assert httpx.get(f"{allowed.http_url}/dicom-web/studies").status_code == 200


def test_dimse_deny_list_rejects_the_association(
    server_factory: Callable[..., RunningServer],
) -> None:
    """PS3.8 9.3.4 Table 9-21: A-ASSOCIATE-RJ, rejected-permanent, service-user,
    no-reason-given for a peer outside [dimse] allow / inside deny."""
    server = server_factory("", dimse_extra='deny = ["127.0.0.0/8"]')
    assoc = associate(server.dimse_port, [build_context(Verification)])
    assert assoc.is_rejected
    rj = assoc.acceptor.primitive
    assert (rj.result, rj.result_source, rj.diagnostic) == (0x01, 0x01, 0x01)
    deadline = time.monotonic() + 10
    while True:
        with server_archive(server) as archive:
            rejected = archive.audit_records(action="association-rejected")
        if rejected or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert rejected and rejected[-1].client == "127.0.0.1" and rejected[-1].outcome == "denied"
    allowed = server_factory("", dimse_extra='allow = ["127.0.0.1/32"]')
    ok = associate(allowed.dimse_port, [build_context(Verification)])
    assert ok.is_established
    assert ok.send_c_echo().Status == 0x0000
    ok.release()
