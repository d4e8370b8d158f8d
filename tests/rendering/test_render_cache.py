"""VolumeCache: LRU order, byte bound (by count and by traced memory), threads."""

from __future__ import annotations

import gc
import threading
import time
import tracemalloc

import numpy as np
from pydicom.dataset import Dataset

from noctis_pacs.rendering import Volume, VolumeCache

UNIT = 256 * 256 * 4  # one unit of make_volume


def make_volume(megabytes: int) -> Volume:
    voxels = np.ones((megabytes, 256, 256), dtype=np.float32)  # 256 KiB per unit
    axis = np.eye(3)
    return Volume(
        voxels=voxels,
        origin=np.zeros(3),
        row_cosines=axis[0],
        column_cosines=axis[1],
        slice_step=axis[2],
        row_spacing=1.0,
        column_spacing=1.0,
        header=Dataset(),
    )


def test_lru_eviction_and_bound() -> None:
    cache = VolumeCache(max_bytes=3 * UNIT)
    for name in "abc":
        cache.put(name, make_volume(1))
    assert cache.get("a") is not None  # a is now the most recent
    cache.put("d", make_volume(1))
    assert "b" not in cache and {"a", "c", "d"} <= {k for k in "abcd" if k in cache}
    cache.put("big", make_volume(2))
    assert cache.nbytes <= 3 * UNIT and "big" in cache and "d" in cache
    cache.put("huge", make_volume(4))
    assert "huge" not in cache and cache.nbytes <= 3 * UNIT
    cache.discard("big")
    assert cache.nbytes == UNIT
    cache.clear()
    assert len(cache) == 0 and cache.nbytes == 0


def test_memory_held_stays_within_the_bound() -> None:
    cache = VolumeCache(max_bytes=4 * UNIT)
    gc.collect()
    tracemalloc.start()
    try:
        baseline, _ = tracemalloc.get_traced_memory()
        for index in range(20):
            cache.put(f"series-{index}", make_volume(1))
            assert cache.nbytes <= 4 * UNIT
        gc.collect()
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(cache) == 4
    assert held - baseline < 4 * UNIT + UNIT // 2


def test_get_or_build_builds_once_under_concurrency() -> None:
    cache = VolumeCache(max_bytes=8 * UNIT)
    calls = []

    def build() -> Volume:
        calls.append(1)
        time.sleep(0.05)
        return make_volume(1)

    results: list[Volume] = []
    threads = [
        threading.Thread(target=lambda: results.append(cache.get_or_build("s", build)))
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1
    assert all(result is results[0] for result in results)
