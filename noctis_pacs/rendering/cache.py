"""A memory-bounded, thread-safe LRU cache of volumes, keyed by series.

Building a volume decodes a whole series, so MPR and MIP requests share one
cache per process (built by the wiring code and passed in; there is no
module-level instance). The bound is on voxel bytes (:attr:`Volume.nbytes`,
which counts a layout a volume may add later): the arrays are nearly all of
a volume's memory. A cache is an optimisation only: every process can
rebuild any volume from the archive.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

from noctis_pacs.rendering.volume import Volume


class VolumeCache:
    """Least-recently-used volumes whose ``nbytes`` sum stays within ``max_bytes``.

    Keys are chosen by the caller, typically the Series Instance UID plus
    something that changes when the series does (e.g. its instance count).
    """

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError("max_bytes must be >= 0")
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._volumes: OrderedDict[str, Volume] = OrderedDict()
        self._nbytes = 0
        self._building: dict[str, threading.Lock] = {}

    @property
    def nbytes(self) -> int:
        """Voxel bytes currently held."""
        with self._lock:
            return self._nbytes

    def __len__(self) -> int:
        with self._lock:
            return len(self._volumes)

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._volumes

    def get(self, key: str) -> Volume | None:
        """The cached volume for ``key`` (now most recently used), or None."""
        with self._lock:
            volume = self._volumes.get(key)
            if volume is not None:
                self._volumes.move_to_end(key)
            return volume

    def put(self, key: str, volume: Volume) -> None:
        """Cache ``volume``, evicting least recently used ones to stay in bounds.

        A volume larger than the whole bound is not cached.
        """
        with self._lock:
            self._pop(key)
            if volume.nbytes > self.max_bytes:
                return
            while self._volumes and self._nbytes + volume.nbytes > self.max_bytes:
                self._pop(next(iter(self._volumes)))
            self._volumes[key] = volume
            self._nbytes += volume.nbytes

    def build_column_copy(self, key: str) -> None:
        """Build the column copy of the volume cached as ``key`` (see
        :meth:`Volume.build_column_copy`); nothing if it was evicted meanwhile.

        Its bytes were counted when the volume was cached, so the bound holds
        (a copy still being built when its volume is evicted lives until done)."""
        with self._lock:
            volume = self._volumes.get(key)
        if volume is not None:
            volume.build_column_copy()

    def discard(self, key: str) -> None:
        """Forget ``key`` (e.g. when its series changed)."""
        with self._lock:
            self._pop(key)

    def clear(self) -> None:
        """Forget every volume."""
        with self._lock:
            self._volumes.clear()
            self._nbytes = 0

    def _pop(self, key: str) -> None:
        volume = self._volumes.pop(key, None)
        if volume is not None:
            self._nbytes -= volume.nbytes

    def get_or_build(self, key: str, build: Callable[[], Volume]) -> Volume:
        """The cached volume for ``key``, else ``build()`` it once and cache it.

        Concurrent callers for the same key wait for one build instead of
        each decoding the series; builds of different keys run in parallel.
        """
        volume = self.get(key)
        if volume is not None:
            return volume
        with self._lock:
            key_lock = self._building.setdefault(key, threading.Lock())
        try:
            with key_lock:
                volume = self.get(key)
                if volume is None:
                    volume = build()
                    self.put(key, volume)
                return volume
        finally:
            with self._lock:
                if self._building.get(key) is key_lock and not key_lock.locked():
                    del self._building[key]
