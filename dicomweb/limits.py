"""Abuse limits: request rates per principal and per address, and blocking an address
after repeated authentication failures.

Token buckets (``burst`` requests at once, refilled at ``requests_per_minute``).
Counts live in each HTTP process: they protect the process, and with
``http.workers`` > 1 the effective limit is that many times higher (documented
in docs/security.md).  Memory is bounded: idle entries are dropped first.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

#: Entries kept per table before idle ones are dropped.
MAX_KEYS = 50_000


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    def __init__(
        self,
        *,
        per_minute: int,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self.clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def take(self, key: str) -> float:
        """0 when ``key`` may proceed now; else the seconds until it may (Retry-After)."""
        if not self.enabled:
            return 0.0
        now = self.clock()
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                if len(self._buckets) >= MAX_KEYS:
                    self._prune(now)
                bucket = self._buckets[key] = _Bucket(self.burst, now)
            else:
                bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
                bucket.updated = now
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return 0.0
            return (1.0 - bucket.tokens) / self.rate

    def _prune(self, now: float) -> None:
        full = [
            k
            for k, b in self._buckets.items()
            if b.tokens + (now - b.updated) * self.rate >= self.burst
        ]
        for key in full or list(self._buckets)[: len(self._buckets) // 2]:
            del self._buckets[key]


class FailureTracker:
    """Blocks an address for ``block_seconds`` after ``limit`` failures within ``window``."""

    def __init__(
        self,
        *,
        limit: int,
        window: float,
        block_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window = window
        self.block_seconds = block_seconds
        self.clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._blocked: dict[str, float] = {}
        self._lock = threading.Lock()

    def blocked(self, address: str) -> float:
        """Seconds the address stays blocked; 0 when it is not."""
        if not self.limit:
            return 0.0
        with self._lock:
            until = self._blocked.get(address)
            if until is None:
                return 0.0
            left = until - self.clock()
            if left <= 0:
                del self._blocked[address]
                return 0.0
            return left

    def failed(self, address: str) -> bool:
        """Count a failure; True when this one blocks the address."""
        if not self.limit:
            return False
        now = self.clock()
        with self._lock:
            if len(self._failures) >= MAX_KEYS:
                self._failures = {
                    k: v for k, v in self._failures.items() if v and v[-1] > now - self.window
                }
            times = self._failures.setdefault(address, deque())
            times.append(now)
            while times and times[0] <= now - self.window:
                times.popleft()
            if len(times) < self.limit:
                return False
            del self._failures[address]
            self._blocked[address] = now + self.block_seconds
            return True


def retry_after(seconds: float) -> str:
    """A ``Retry-After`` value (RFC 9110 10.2.3): whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))
