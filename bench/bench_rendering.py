"""Rendering benchmark: frame render+encode, volume build, MPR and MIP latency.

Run: ``.venv/bin/python bench/bench_rendering.py`` (``--slices N`` for a
smaller volume). Prints a table and writes bench/results/rendering.json.
All data is synthetic and in memory, so the figures measure the rendering
code, not the disk.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from noctis_pacs.rendering import (  # noqa: E402
    PLANE_NORMALS,
    Window,
    apply_modality_lut,
    apply_voi,
    decode_frame,
    encode_jpeg,
    encode_png,
    mip,
    mpr,
    render_frame,
    volume_from_frames,
)

EXPLICIT_LE = "1.2.840.10008.1.2.1"
SIZE = 512


def ct_header(index: int, *, spacing: float = 0.7, thickness: float = 1.0) -> Dataset:
    ds = Dataset()
    ds.Rows = ds.Columns = SIZE
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.RescaleSlope, ds.RescaleIntercept = "1", "-1024"
    ds.WindowCenter, ds.WindowWidth = "40", "400"
    ds.ImagePositionPatient = ["-179.2", "-179.2", f"{index * thickness:.3f}"]
    ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    ds.PixelSpacing = [str(spacing), str(spacing)]
    return ds


def ct_frame(index: int, rng: np.random.Generator) -> bytes:
    """A body-like ellipse of soft tissue with bone, air around, noise (stored values)."""
    y, x = np.mgrid[-1 : 1 : SIZE * 1j, -1 : 1 : SIZE * 1j]
    body = (x / 0.85) ** 2 + (y / 0.65) ** 2 < 1
    hu = np.full((SIZE, SIZE), -1000.0)
    hu[body] = 40.0
    radius = 0.12 + 0.04 * np.sin(index / 20)
    hu[(x - 0.3) ** 2 + y**2 < radius**2] = 700.0
    hu += rng.normal(0, 15, size=hu.shape)
    return (hu + 1024).astype("<i2").tobytes()


def timed(function: Callable[[], object], repeat: int) -> dict[str, float]:
    """Cold (first call) and warm p50/p95 of ``repeat`` further calls, in ms."""
    start = time.perf_counter()
    function()
    cold = (time.perf_counter() - start) * 1000
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    p95 = samples[min(len(samples) - 1, round(0.95 * (len(samples) - 1)))]
    return {"cold_ms": cold, "p50_ms": statistics.median(samples), "p95_ms": p95, "n": repeat}


def once(function: Callable[[], object]) -> float:
    start = time.perf_counter()
    function()
    return (time.perf_counter() - start) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--slices", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--output", type=Path, default=Path("bench/results/rendering.json"))
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    results: dict[str, Any] = {
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "numpy": np.__version__,
        },
        "corpus": f"synthetic CT, {SIZE}x{SIZE} int16, rescale -1024; volume {args.slices} slices",
    }
    header, frame = ct_header(0), ct_frame(0, rng)
    window = Window(40, 400)
    image = render_frame(header, frame, EXPLICIT_LE)
    frame_rows = {
        "frame render (decode+LUT+VOI)": timed(
            lambda: render_frame(header, frame, EXPLICIT_LE), args.repeat
        ),
        "frame render+JPEG q90": timed(
            lambda: encode_jpeg(render_frame(header, frame, EXPLICIT_LE), 90), args.repeat
        ),
        "frame render+PNG": timed(
            lambda: encode_png(render_frame(header, frame, EXPLICIT_LE)), args.repeat
        ),
        "encode JPEG q90 only": timed(lambda: encode_jpeg(image, 90), args.repeat),
        "encode PNG only": timed(lambda: encode_png(image), args.repeat),
        "encode PNG only (zlib level 6)": timed(
            lambda: encode_png(image, compress_level=6), args.repeat
        ),
    }
    results["frame"] = frame_rows

    headers = [ct_header(index) for index in range(args.slices)]
    frames = [ct_frame(index, rng) for index in range(args.slices)]

    def decode_all() -> list[tuple[Dataset, np.ndarray]]:
        return [
            (ds, apply_modality_lut(decode_frame(ds, data, EXPLICIT_LE), ds))
            for ds, data in zip(headers, frames, strict=True)
        ]

    def decode_only() -> None:
        for ds, data in zip(headers, frames, strict=True):
            decode_frame(ds, data, EXPLICIT_LE)

    decode_ms = once(decode_all)
    volume_holder: list[Any] = []

    def build() -> None:
        volume_holder.append(
            volume_from_frames(
                ((ds, data, EXPLICIT_LE) for ds, data in zip(headers, frames, strict=True)),
                column_copy=True,
            )
        )

    build_ms = once(build)
    volume_holder.clear()  # as the cache does when it evicts: the memory is recycled
    rebuild_ms = once(build)
    volume = volume_holder[0]
    results["volume"] = {
        "slices": args.slices,
        "decode_all_frames_ms": decode_ms,
        "decode_only_not_kept_ms": once(decode_only),
        "target_2x_decode_ms": 2 * decode_ms,
        "build_volume_total_ms": build_ms,
        "rebuild_volume_total_ms": rebuild_ms,
        "voxel_dtype": str(volume.voxels.dtype),
        "voxel_bytes": volume.voxels.nbytes,
        "cached_bytes_with_column_copy": volume.nbytes,
    }

    def plane_then_jpeg(**kwargs: Any) -> Callable[[], object]:
        def run() -> object:
            plane = mpr(volume, **kwargs)
            return encode_jpeg(apply_voi(plane.pixels, volume.header, window), 90)

        return run

    repeat = max(5, args.repeat // 3)
    planes = {
        "sagittal plane, before the column copy": timed(
            lambda: mpr(volume, normal="sagittal"), repeat
        ),
    }
    results["volume"]["column_copy_ms"] = once(volume.build_column_copy)
    orthogonal = {}
    for name in ("axial", "coronal", "sagittal"):
        plane_ms = timed(lambda n=name: mpr(volume, normal=n), args.repeat)
        # Scrolling: each request a new plane, through 80% of the volume in 96 steps, so
        # that the voxels read are rarely still in the CPU caches.
        normal = np.array(PLANE_NORMALS[name])
        reach = 0.4 * float(np.max(np.abs((volume.corners() - volume.centre) @ normal)))
        points = itertools.cycle(
            [volume.centre + offset * normal for offset in np.linspace(-reach, reach, 97)]
        )
        scroll_ms = timed(
            lambda n=name, p=points: mpr(volume, normal=n, point=next(p)), args.repeat
        )
        image = apply_voi(mpr(volume, normal=name).pixels, volume.header, window)
        encode_ms = timed(lambda i=image: encode_jpeg(i, 90), args.repeat)
        planes[f"{name} plane"] = plane_ms
        planes[f"{name} plane, scrolling"] = scroll_ms
        planes[f"encode JPEG of the {name} plane {image.shape[0]}x{image.shape[1]}"] = encode_ms
        orthogonal[name] = {
            "plane_p50_ms": plane_ms["p50_ms"],
            "scrolling_p50_ms": scroll_ms["p50_ms"],
            "encode_jpeg_p50_ms": encode_ms["p50_ms"],
            "plane_over_encode": plane_ms["p50_ms"] / encode_ms["p50_ms"],
            "scrolling_over_encode": scroll_ms["p50_ms"] / encode_ms["p50_ms"],
        }
    results["orthogonal_vs_encode"] = orthogonal
    planes |= {
        "oblique plane (trilinear)": timed(lambda: mpr(volume, normal=(0.3, 0.4, 0.87)), repeat),
        "axial plane + VOI + JPEG": timed(plane_then_jpeg(normal="axial"), repeat),
        "oblique plane + VOI + JPEG": timed(plane_then_jpeg(normal=(0.3, 0.4, 0.87)), repeat),
    }
    results["planes"] = planes
    results["mip"] = {
        "MIP axial whole volume": timed(lambda: mip(volume, normal="axial"), 3),
        "MIP coronal whole volume": timed(lambda: mip(volume, normal="coronal"), 3),
        "MIP axial 20 mm slab": timed(lambda: mip(volume, normal="axial", thickness=20), 5),
        "MIP oblique 20 mm slab": timed(
            lambda: mip(volume, normal=(0.3, 0.4, 0.87), thickness=20), 2
        ),
        "MIP oblique whole volume": {"cold_ms": once(lambda: mip(volume, normal=(0.3, 0.4, 0.87)))},
    }
    print_table(results)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2))
    print(f"\nwrote {args.output}")


def print_table(results: dict[str, Any]) -> None:
    print(f"machine: {results['machine']}")
    print(f"corpus:  {results['corpus']}\n")
    print(f"{'measurement':44} {'cold ms':>10} {'p50 ms':>10} {'p95 ms':>10}")
    for section in ("frame", "planes", "mip"):
        for name, row in results[section].items():
            cells = [row.get(key) for key in ("cold_ms", "p50_ms", "p95_ms")]
            text = " ".join(f"{cell:10.2f}" if cell is not None else f"{'':>10}" for cell in cells)
            print(f"{name:44} {text}")
    volume = results["volume"]
    print(
        f"\nvolume {volume['slices']} x {SIZE} x {SIZE}: decode all frames "
        f"{volume['decode_all_frames_ms']:.0f} ms (target 2x = {volume['target_2x_decode_ms']:.0f}"
        f" ms; decode only, not kept: {volume['decode_only_not_kept_ms']:.0f} ms); volume build"
        f" incl. decode {volume['build_volume_total_ms']:.0f} ms first in the process,"
        f" {volume['rebuild_volume_total_ms']:.0f} ms the next time;"
        f" {volume['voxel_bytes'] / 2**20:.0f} MiB of {volume['voxel_dtype']} voxels;"
        f" column copy (after the first response) {volume['column_copy_ms']:.0f} ms,"
        f" {volume['cached_bytes_with_column_copy'] / 2**20:.0f} MiB counted by the cache"
    )
    for name, row in results["orthogonal_vs_encode"].items():
        print(
            f"{name}: plane {row['plane_p50_ms']:.3f} ms (scrolling {row['scrolling_p50_ms']:.3f})"
            f" / JPEG encode of it {row['encode_jpeg_p50_ms']:.3f} ms ="
            f" {row['plane_over_encode']:.2f} ({row['scrolling_over_encode']:.2f}) (target < 1)"
        )


if __name__ == "__main__":
    main()
