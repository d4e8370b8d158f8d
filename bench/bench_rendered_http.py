"""Rendered-frame latency over HTTP (issue 5): Noctis against Orthanc's DICOMweb /rendered,
same run, same 512x512 CT frames, same client; plus MPR/MIP over HTTP on a 256-slice series.

    .venv/bin/python bench/bench_rendered_http.py [--repeat 50] [--slices 256]

Cold = the first request for an instance (nothing cached: header read, decode, window,
encode); warm = repeated requests of the same frame.  JSON to bench/results/.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_dicomweb import (  # noqa: E402
    start_noctis,
    start_orthanc,
    stow_all,
    summary,
    timings,
    to_bytes,
)
from tests.factory import ct_series, uid  # noqa: E402


def rendered_urls(root: str, study: str, series: str, sops: list[str]) -> list[str]:
    return [f"{root}/studies/{study}/series/{series}/instances/{sop}/rendered" for sop in sops]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--slices", type=int, default=256)
    args = parser.parse_args()
    study, series = uid(), uid()
    datasets = list(ct_series(args.slices, 512, study_uid=study, series_uid=series))
    items = [to_bytes(ds) for ds in datasets]
    sops = [str(ds.SOPInstanceUID) for ds in datasets]
    results: dict[str, object] = {
        "machine": {"platform": platform.platform(), "python": platform.python_version()},
        "corpus": f"{args.slices} x 512x512 int16 CT (synthetic)",
    }
    work = Path(tempfile.mkdtemp(prefix="noctis-bench-render-", dir=ROOT / "bench"))
    try:
        for name, start in (("noctis", start_noctis), ("orthanc", start_orthanc)):
            server = start(work)
            try:
                with httpx.Client(timeout=120) as client:
                    stow_all(client, server.root, items, 16)
                    urls = rendered_urls(server.root, study, series, sops)
                    entry: dict[str, object] = {}
                    for media in ("image/jpeg", "image/png"):
                        headers = {"Accept": media}
                        cold = []
                        for url in urls[: min(len(urls), args.repeat)]:
                            started = time.perf_counter()
                            response = client.get(url, headers=headers)
                            cold.append((time.perf_counter() - started) * 1000)
                            if response.status_code != 200:
                                raise RuntimeError(f"{name} {media}: {response.status_code}")
                        warm = timings(
                            lambda u=urls[0], h=headers: client.get(u, headers=h), args.repeat
                        )
                        entry[media] = {"cold": summary(cold), "warm": summary(warm)}
                    if name == "noctis":
                        base = f"{server.root}/studies/{study}/series/{series}"
                        started = time.perf_counter()
                        first = client.get(f"{base}/mpr?plane=axial")
                        entry["volume_build_first_mpr_ms"] = round(
                            (time.perf_counter() - started) * 1000, 1
                        )
                        assert first.status_code == 200, first.text
                        # The column copy (sagittal planes contiguous) is built after the
                        # first response; measure one sagittal plane while it may still be
                        # building, then let it finish.
                        started = time.perf_counter()
                        client.get(f"{base}/mpr?plane=sagittal")
                        entry["sagittal_right_after_first_mpr_ms"] = round(
                            (time.perf_counter() - started) * 1000, 1
                        )
                        time.sleep(2)
                        for label, query in (
                            ("mpr axial", "mpr?plane=axial"),
                            ("mpr coronal", "mpr?plane=coronal"),
                            ("mpr sagittal", "mpr?plane=sagittal"),
                            ("mpr oblique", "mpr?normal=1,1,1"),
                            ("mip axial whole", "mip?plane=axial"),
                            ("mip axial 20 mm", "mip?plane=axial&thickness=20"),
                            ("mip coronal whole", "mip?plane=coronal"),
                        ):
                            entry[label] = summary(
                                timings(
                                    lambda q=query, b=base: client.get(f"{b}/{q}"),
                                    max(5, args.repeat // 5),
                                )
                            )
                    results[name] = entry
            finally:
                server.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "rendered-http.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
