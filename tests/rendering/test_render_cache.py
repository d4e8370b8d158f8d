"""VolumeCache: LRU order, byte bound (by count, traced and resident memory), threads."""

from __future__ import annotations

import gc
import os
import threading
import time
import tracemalloc

import numpy as np
import pytest
from pydicom.dataset import Dataset

from noctis_pacs.rendering import Volume, VolumeCache, volume_from_frames

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


def resident_bytes() -> int:
    """Resident set size of this process (Linux), which sees the voxels' own mappings."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs Linux /proc")
def test_resident_memory_of_real_volumes_stays_within_the_bound() -> None:
    """Volumes as the routes build them (stored integers in their own mappings, plus the
    column copy), measured as resident memory: the cache holds no more than its bound."""
    frames = []
    for index in range(16):
        ds = Dataset()
        ds.Rows = ds.Columns = 256
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleSlope, ds.RescaleIntercept = "1", "-1024"
        ds.ImagePositionPatient = ["0", "0", str(index)]
        ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
        ds.PixelSpacing = ["1", "1"]
        pixels = np.full((256, 256), index + 1, dtype="<i2").tobytes()
        frames.append((ds, pixels, "1.2.840.10008.1.2.1"))
    one = volume_from_frames(frames, column_copy=True)
    one.build_column_copy()
    per_volume = one.nbytes  # 2 MiB of voxels + 2 MiB of copy
    assert per_volume == 2 * 16 * 256 * 256 * 2
    del one
    cache = VolumeCache(max_bytes=3 * per_volume)
    gc.collect()
    baseline = resident_bytes()
    for index in range(12):
        key = f"series-{index}"
        cache.get_or_build(key, lambda: volume_from_frames(frames, column_copy=True))
        cache.build_column_copy(key)
        assert cache.nbytes <= 3 * per_volume
    gc.collect()
    held = resident_bytes() - baseline
    assert len(cache) == 3
    assert held < 3 * per_volume + per_volume // 2
