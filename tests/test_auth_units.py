"""Pure pieces of authentication: the Authorization header, rate limits, failure
blocking, address lists, the token cache."""

from __future__ import annotations

import base64

import pytest

from dicomweb.credentials import BadCredentials, credentials_of
from dicomweb.limits import FailureTracker, RateLimiter, retry_after
from noctis_pacs.core.auth import Role
from noctis_pacs.core.netfilter import AddressFilter, is_loopback_host
from noctis_pacs.core.tokens import MAX_SECRET_LENGTH, ApiToken
from storage.tokens import TokenCache


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_bearer_and_basic_are_read() -> None:
    """RFC 6750 2.1 (Bearer) and RFC 7617 2 (Basic user-id:password; any user id)."""
    assert credentials_of(None) is None
    assert credentials_of("Bearer abc.def").secret == "abc.def"  # type: ignore[union-attr]
    assert credentials_of("bearer  abc").secret == "abc"  # type: ignore[union-attr]
    assert credentials_of(f"Basic {b64('ohif:s3cret')}").secret == "s3cret"  # type: ignore[union-attr]
    assert credentials_of(f"Basic {b64(':s3:cret')}").secret == "s3:cret"  # type: ignore[union-attr]
    assert "s3cret" not in repr(credentials_of("Bearer s3cret"))


@pytest.mark.parametrize(
    "header",
    [
        "",
        "Bearer",
        "Bearer ",
        "Digest abc",
        "Basic",
        "Basic !!!notbase64",
        f"Basic {b64('no-colon')}",
        f"Basic {b64('user:')}",
        "Basic " + base64.b64encode(b"\xff\xfe:\xff").decode(),
        "Bearer a b",
        "Bearer \x00abc",
        "Bearer " + "a" * (MAX_SECRET_LENGTH + 1),
        "Basic " + "A" * (MAX_SECRET_LENGTH * 3),
    ],
)
def test_malformed_headers_are_refused(header: str) -> None:
    with pytest.raises(BadCredentials) as info:
        credentials_of(header)
    assert "a" * 20 not in str(info.value)


def test_rate_limiter_allows_a_burst_then_refills() -> None:
    clock = Clock()
    limiter = RateLimiter(per_minute=60, burst=3, clock=clock)
    assert [limiter.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = limiter.take("a")
    assert 0.9 < wait <= 1.0 and retry_after(wait) == "1"
    assert limiter.take("b") == 0.0
    clock.now += 1.0
    assert limiter.take("a") == 0.0
    assert RateLimiter(per_minute=0, burst=0).take("x") == 0.0


def test_failures_block_an_address_for_a_while() -> None:
    clock = Clock()
    tracker = FailureTracker(limit=3, window=60, block_seconds=300, clock=clock)
    assert not tracker.failed("10.9.9.9") and not tracker.failed("10.9.9.9")
    clock.now += 61  # the window slides: old failures are forgotten
    assert not tracker.failed("10.9.9.9") and not tracker.failed("10.9.9.9")
    assert tracker.failed("10.9.9.9")
    assert tracker.blocked("10.9.9.9") == 300 and tracker.blocked("10.9.9.8") == 0
    clock.now += 301
    assert tracker.blocked("10.9.9.9") == 0


def test_address_lists() -> None:
    lists = AddressFilter.from_lists(["10.0.0.0/8", "::1"], ["10.6.0.0/16"])
    assert lists.admits("10.1.2.3") and lists.admits("::ffff:10.1.2.3") and lists.admits("::1")
    assert not lists.admits("10.6.1.1") and not lists.admits("192.0.2.1")
    assert not lists.admits("garbage") and AddressFilter().admits("garbage")
    assert AddressFilter.from_lists([], ["127.0.0.0/8"]).admits("192.0.2.1")
    assert is_loopback_host("127.0.0.1") and is_loopback_host("localhost")
    assert is_loopback_host("::1") and not is_loopback_host("0.0.0.0")
    assert not is_loopback_host("::") and not is_loopback_host("192.0.2.7")


def test_token_cache_expires_entries_and_misses() -> None:
    clock = Clock()
    token, _ = ApiToken.issue("a", Role.VIEWER)
    answers: dict[str, ApiToken | None] = {"d": token}
    reads: list[str] = []

    def lookup(key: str) -> ApiToken | None:
        reads.append(key)
        return answers.get(key)

    cache = TokenCache(lookup, ttl=5, size=2, clock=clock)
    assert cache.get("d") is token and cache.get("d") is token and reads == ["d"]
    answers["d"] = None  # revoked elsewhere
    clock.now += 5
    assert cache.cached("d") == (False, None)
    assert cache.get("d") is None and reads == ["d", "d"]
    cache.get("x")
    cache.get("y")
    assert cache.cached("d") == (False, None)  # evicted: size 2
