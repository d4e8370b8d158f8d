"""Cost of authentication (issue 13): QIDO-RS and WADO-RS one-instance latency with
API-token auth on versus off, same run, same index, same client.

    .venv/bin/python bench/bench_auth.py [--instances 300] [--repeat 400]

Two ``noctis-pacs serve`` processes share one data directory and SQLite index (WAL):
one with ``auth.mode = "none"``, one with ``auth.mode = "token"`` (abuse limits
left at their defaults, so the rate limiter's cost is in the figure too).  Each is
driven over one keep-alive httpx connection; the token is sent as
``Authorization: Bearer``.  Repetitions alternate between the servers, so a burst
of load from elsewhere lands on both.  The token look-up is cached per process
(``auth.token_cache_seconds``): the figure is the steady state a viewer sees, with
one index read per token every few seconds.

Target: auth on p50 <= 1.05 x auth off p50.  JSON goes to bench/results/, a table
to stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
warnings.simplefilter("ignore")

from bench_dicomweb import free_port, small_corpus, stow, wait_ready  # noqa: E402

BIN = Path(sys.executable).parent
DICOM_ANY = 'multipart/related; type="application/dicom"; transfer-syntax=*'


def config(work: Path, name: str, mode: str) -> tuple[Path, int]:
    port = free_port()
    path = work / f"{name}.toml"
    path.write_text(
        f'[storage]\ndata_dir = "{work / "data"}"\nfsync = "never"\n'
        f'[http]\nhost = "127.0.0.1"\nport = {port}\n'
        f'[dimse]\nenabled = false\n[logging]\nlevel = "WARNING"\n[auth]\nmode = "{mode}"\n'
    )
    return path, port


def serve(path: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [str(BIN / "noctis-pacs"), "serve", "--config", str(path)],
        stdout=open(log, "wb"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
    )
    wait_ready(f"http://127.0.0.1:{port}/readyz", process, log)
    return process


def p50(values: list[float]) -> float:
    return round(statistics.median(values), 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=400)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="noctis-bench-auth-"))
    off_cfg, off_port = config(work, "off", "none")
    on_cfg, on_port = config(work, "on", "token")
    off = serve(off_cfg, off_port, work / "off.log")
    try:
        secret = subprocess.run(
            [str(BIN / "noctis-pacs"), "token", "create", "--config", str(on_cfg),
             "--name", "bench", "--role", "viewer"],
            check=True, capture_output=True, text=True,
        ).stdout.strip().splitlines()[-1]  # fmt: skip
        on = serve(on_cfg, on_port, work / "on.log")
    except BaseException:
        off.terminate()
        raise
    try:
        corpus = small_corpus(args.instances)
        root_off = f"http://127.0.0.1:{off_port}/dicom-web"
        root_on = f"http://127.0.0.1:{on_port}/dicom-web"
        with httpx.Client(timeout=60) as loader:
            for start in range(0, len(corpus), 50):
                stow(loader, root_off, corpus[start : start + 50])
        clients = {
            "off": httpx.Client(base_url=root_off, timeout=30),
            "on": httpx.Client(
                base_url=root_on, timeout=30, headers={"Authorization": f"Bearer {secret}"}
            ),
        }
        first = clients["off"].get("/instances", params={"limit": "1"}).json()[0]
        study = first["0020000D"]["Value"][0]
        series = first["0020000E"]["Value"][0]
        sop = first["00080018"]["Value"][0]
        cases = {
            "QIDO-RS studies (PatientName wildcard, limit 100)": (
                "/studies?PatientName=SMITH*&limit=100",
                {},
            ),
            "WADO-RS one instance": (
                f"/studies/{study}/series/{series}/instances/{sop}",
                {"Accept": DICOM_ANY},
            ),
        }
        samples: dict[str, dict[str, list[float]]] = {c: {"off": [], "on": []} for c in cases}
        for path, headers in cases.values():
            for side in ("off", "on"):
                for _ in range(20):  # warm-up: caches, connections, the token look-up
                    response = clients[side].get(path, headers=headers)
                    assert response.status_code == 200, (side, response.status_code)
        for round_index in range(args.repeat):
            order = ("off", "on") if round_index % 2 == 0 else ("on", "off")
            for name, (path, headers) in cases.items():
                for side in order:
                    started = time.perf_counter()
                    response = clients[side].get(path, headers=headers)
                    response.read()
                    samples[name][side].append((time.perf_counter() - started) * 1000)
                    assert response.status_code == 200
        results = {
            name: {
                "off_p50_ms": p50(sides["off"]),
                "on_p50_ms": p50(sides["on"]),
                "ratio": round(p50(sides["on"]) / p50(sides["off"]), 3),
            }
            for name, sides in samples.items()
        }
        meta = {
            "machine": f"{platform.machine()} {os.cpu_count()} CPUs, {platform.python_version()}",
            "load_average": os.getloadavg(),
            "instances": args.instances,
            "repeat": args.repeat,
        }
        out = ROOT / "bench" / "results"
        out.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        (out / f"auth-{stamp}.json").write_text(json.dumps({**meta, "results": results}, indent=2))
        print(f"{meta['machine']}; load average {meta['load_average']}")
        print(f"{'case':<52} {'off p50':>9} {'on p50':>9} {'ratio':>7}")
        for name, row in results.items():
            print(
                f"{name:<52} {row['off_p50_ms']:>7.2f}ms {row['on_p50_ms']:>7.2f}ms "
                f"{row['ratio']:>6.3f}x"
            )
    finally:
        for process in (off, on):
            process.terminate()
            process.wait(timeout=20)


if __name__ == "__main__":
    main()
