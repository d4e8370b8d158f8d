"""DICOMweb benchmark (issue 4): Noctis PACS against Orthanc + its DICOMweb plugin, same run,
same corpus, same client.

    .venv/bin/python bench/bench_dicomweb.py [--small 10000] [--ct 256] [--repeat 30]
                                             [--stow-rounds 5] [--defaults]

Both servers run locally on free ports with fresh storage (Noctis: SQLite, fsync never;
Orthanc: SQLite, SyncStorageArea false, no gzip), side by side for the whole run, and
every phase is measured on both before the next starts.  ``--defaults`` (issue 15)
runs both as shipped instead: Noctis with nothing tuned (``fsync = "always"``, the
default ``http.workers``), Orthanc with its own storage settings (``SyncStorageArea``
on, its default compression setting), both still on SQLite.  ``--db postgresql`` puts
both indexes in PostgreSQL (Orthanc through its PostgreSQL index plugin), a fresh
database each.  Measured over one keep-alive
httpx connection per server:

- QIDO-RS p50/p95 at 1,000 and at --small instances (PatientName wildcard, StudyDate
  range, ModalitiesInStudy, AccessionNumber, paging), with each server's match count;
  the --repeat repetitions interleaved over cases and servers.
  Query strings are sent as written (``*`` and ``^`` literally, not percent-encoded):
  Orthanc 1.10.1's DICOMweb plugin does not decode ``%2A`` in query values, so an
  encoded wildcard there matches nothing and the two servers would not do the same work.
- STOW-RS instances/s in batches of 1, 16, 64 (64x64 and 512x512 instances), into the
  archive already holding the --small corpus: in ``--stow-rounds`` rounds, each case on
  one server right after the other (the order alternating between rounds), ``sync``
  before each timed run so neither pays for the other's write-back; the median round
  is reported.
- WADO-RS series retrieve MB/s of the --ct slice 512x512 CT; series metadata latency;
  one-frame latency.

JSON goes to bench/results/, a table to stdout.
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
warnings.simplefilter("ignore")

from bench_dimse import fresh_database, orthanc_postgresql  # noqa: E402

from tests.factory import ct_series, make_dataset, uid  # noqa: E402

ORTHANC = "/usr/sbin/Orthanc"
ORTHANC_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
MODALITIES = ["CT", "MR", "US", "CR", "DX", "MG", "NM", "PT", "XA", "OT"]
FAMILIES = ["SMITH", "JONES", "BROWN", "TAYLOR", "WILSON", "DAVIES", "EVANS", "THOMAS"]
DICOM_ANY = 'multipart/related; type="application/dicom"; transfer-syntax=*'
FRAME_ANY = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def to_bytes(ds: object) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)  # type: ignore[attr-defined]
    return buffer.getvalue()


# -- corpus ----------------------------------------------------------------------------


def small_corpus(count: int) -> list[bytes]:
    """``count`` 64x64 instances, 3 per study (one series), varied names/dates/modalities."""
    out: list[bytes] = []
    study_index = 0
    while len(out) < count:
        study_uid, series_uid = uid(), uid()
        family = FAMILIES[study_index % len(FAMILIES)] + f"{study_index % 97:02d}"
        modality = MODALITIES[study_index % len(MODALITIES)]
        day = study_index % 3650
        date = time.strftime("%Y%m%d", time.gmtime(946684800 + day * 86400))
        for n in range(3):
            if len(out) >= count:
                break
            out.append(
                to_bytes(
                    make_dataset(
                        study_uid=study_uid,
                        series_uid=series_uid,
                        patient_name=f"{family}^Pat{study_index}",
                        patient_id=f"PID{study_index:06d}",
                        accession=f"ACC{study_index:07d}",
                        modality=modality,
                        study_date=date,
                        instance_number=n + 1,
                        pixel_seed=n,
                    )
                )
            )
        study_index += 1
    return out


# -- servers ---------------------------------------------------------------------------


@dataclass
class Server:
    name: str
    process: subprocess.Popen[bytes]
    root: str  # DICOMweb root URL

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()


def wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"server not ready: {url}")


def start_noctis(
    work: Path, http_workers: int = 1, *, defaults: bool = False, pg: str = ""
) -> Server:
    """With ``defaults`` the shipped configuration: nothing but where to listen; with
    ``pg`` (a server URL) the index in a fresh PostgreSQL database there."""
    port, dimse = free_port(), free_port()
    data = work / "noctis"
    data.mkdir()
    config = work / "noctis.toml"
    tuned_storage = "" if defaults else 'fsync = "never"\n'
    tuned_http = "" if defaults else f"workers = {http_workers}\n"
    db = f'db = "{fresh_database(pg, "bench_web_noctis")}"\n' if pg else ""
    config.write_text(
        f'[storage]\ndata_dir = "{data}"\n{db}{tuned_storage}'
        f'[http]\nhost = "127.0.0.1"\nport = {port}\n{tuned_http}'
        f'[dimse]\nhost = "127.0.0.1"\nport = {dimse}\n'
        '[query]\nmax_results = 10000\n[logging]\nlevel = "WARNING"\n'
    )
    log = work / "noctis.log"
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "noctis-pacs"), "serve", "--config", str(config)],
        stdout=open(log, "wb"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
    )
    wait_ready(f"http://127.0.0.1:{port}/readyz", process, log)
    return Server("noctis", process, f"http://127.0.0.1:{port}/dicom-web")


def start_orthanc(work: Path, *, defaults: bool = False, pg: str = "") -> Server:
    """With ``defaults`` Orthanc's own storage settings (``SyncStorageArea`` on); with
    ``pg`` its index in a fresh PostgreSQL database through its index plugin."""
    port, dimse = free_port(), free_port()
    storage = work / "orthanc"
    storage.mkdir()
    config = {
        "Name": "BENCH",
        "StorageDirectory": str(storage),
        "IndexDirectory": str(storage),
        "HttpPort": port,
        "DicomPort": dimse,
        "RemoteAccessAllowed": True,
        "AuthenticationEnabled": False,
        "HttpCompressionEnabled": False,
        "SyncStorageArea": False,
        "StorageCompression": False,
        "Plugins": [ORTHANC_PLUGIN],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": True},
    }
    if defaults:
        del config["SyncStorageArea"], config["StorageCompression"]
    if pg:
        config.update(
            orthanc_postgresql(fresh_database(pg, "bench_web_orthanc"), (ORTHANC_PLUGIN,))
        )
    path = work / "orthanc.json"
    path.write_text(json.dumps(config))
    log = work / "orthanc.log"
    process = subprocess.Popen(
        [ORTHANC, str(path)],
        stdout=open(log, "wb"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
    )
    wait_ready(f"http://127.0.0.1:{port}/system", process, log)
    return Server("orthanc", process, f"http://127.0.0.1:{port}/dicom-web")


# -- measurements ----------------------------------------------------------------------


def stow(client: httpx.Client, root: str, parts: list[bytes]) -> None:
    boundary = uuid.uuid4().hex

    def body() -> Iterator[bytes]:
        for part in parts:
            yield f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
            yield part
            yield b"\r\n"
        yield f"--{boundary}--\r\n".encode()

    response = client.post(
        f"{root}/studies",
        content=b"".join(body()),
        headers={
            "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
            "Accept": "application/dicom+json",
        },
    )
    if response.status_code != 200:
        raise RuntimeError(f"STOW {response.status_code}: {response.text[:300]}")


def stow_all(client: httpx.Client, root: str, items: list[bytes], batch: int) -> float:
    started = time.perf_counter()
    for start in range(0, len(items), batch):
        stow(client, root, items[start : start + batch])
    return len(items) / (time.perf_counter() - started)


def timings(fn: Callable[[], object], repeat: int) -> list[float]:
    fn()  # warm-up
    out = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        out.append((time.perf_counter() - started) * 1000)
    return out


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]
    return {"p50": round(statistics.median(ordered), 2), "p95": round(p95, 2)}


#: QIDO-RS cases: raw query strings (see the module docstring for why not percent-encoded).
QIDO_QUERIES = {
    "PatientName wildcard": "PatientName=SMITH1*",
    "StudyDate range": "StudyDate=20000201-20000430",
    "ModalitiesInStudy": "ModalitiesInStudy=MR",
    "AccessionNumber": "AccessionNumber=ACC0000123",
    "paging (limit 50, offset 100)": "limit=50&offset=100",
}


def qido_suite(
    clients: dict[str, httpx.Client], servers: list[Server], repeat: int
) -> dict[str, dict[str, dict[str, float]]]:
    """p50/p95 and match count of every QIDO case on every server.

    Repetitions are interleaved (each round runs every case on every server once, the
    server order alternating), so a burst of load from elsewhere on the machine lands
    on a few samples of every case rather than on all samples of one.
    """

    def run(server: Server, name: str) -> tuple[float, int]:
        started = time.perf_counter()
        response = clients[server.name].get(f"{server.root}/studies?{QIDO_QUERIES[name]}")
        elapsed = (time.perf_counter() - started) * 1000
        if response.status_code not in (200, 204):
            raise RuntimeError(f"QIDO {name}: {response.status_code} {response.text[:200]}")
        return elapsed, len(response.json()) if response.status_code == 200 else 0

    samples: dict[str, dict[str, list[float]]] = {s.name: {} for s in servers}
    counts: dict[str, dict[str, int]] = {s.name: {} for s in servers}
    for server in servers:
        for name in QIDO_QUERIES:
            counts[server.name][name] = run(server, name)[1]  # warm-up, and the match count
    for round_index in range(repeat):
        for server in servers if round_index % 2 == 0 else servers[::-1]:
            for name in QIDO_QUERIES:
                samples[server.name].setdefault(name, []).append(run(server, name)[0])
    return {
        server: {
            name: {**summary(values), "results": float(counts[server][name])}
            for name, values in cases.items()
        }
        for server, cases in samples.items()
    }


def retrieve_series(client: httpx.Client, url: str) -> int:
    total = 0
    with client.stream("GET", url, headers={"Accept": DICOM_ANY}) as response:
        if response.status_code != 200:
            raise RuntimeError(f"WADO-RS {response.status_code}")
        for chunk in response.iter_raw(1 << 20):
            total += len(chunk)
    return total


STOW_CASES = [(kind, batch) for batch in (1, 16, 64) for kind in ("small", "CT 512x512")]


def stow_rounds(
    clients: dict[str, httpx.Client], servers: list[Server], rounds: int
) -> dict[str, dict[str, object]]:
    """STOW-RS instances/s of every case on every server, in interleaved rounds.

    Each case runs on one server right after the other with fresh UIDs (the same
    bytes for both), the order alternating between rounds; ``os.sync`` before each
    timed run flushes the previous run's dirty pages so no server pays for another's
    write-back.  Returns, per server, the median and every round of each case.
    """
    corpus = {
        "small": small_corpus(64 * 4),
        "CT 512x512": [to_bytes(ds) for ds in ct_series(slices=64, size=512)],
    }
    samples: dict[str, dict[str, list[float]]] = {s.name: {} for s in servers}
    for round_index in range(rounds):
        order = servers if round_index % 2 == 0 else servers[::-1]
        for kind, batch in STOW_CASES:
            fresh = [_reuid(b) for b in corpus[kind]]
            for server in order:
                os.sync()
                rate = stow_all(clients[server.name], server.root, fresh, batch)
                samples[server.name].setdefault(f"{kind} x{batch}", []).append(round(rate, 1))
    return {
        name: {
            "median": {case: statistics.median(v) for case, v in cases.items()},
            "rounds": cases,
        }
        for name, cases in samples.items()
    }


def bench_reads(
    client: httpx.Client, server: Server, ct_uids: tuple[str, str, str], repeat: int
) -> dict[str, object]:
    """WADO-RS series MB/s, series metadata and one-frame latency of the stored CT."""
    out: dict[str, object] = {}
    study, series, sop = ct_uids
    series_url = f"{server.root}/studies/{study}/series/{series}"
    rates = []
    for _ in range(5):
        started = time.perf_counter()
        size = retrieve_series(client, series_url)
        rates.append(size / 2**20 / (time.perf_counter() - started))
    out["wado_series_MB_per_s"] = round(statistics.median(rates), 1)
    out["wado_series_bytes"] = size

    def metadata() -> object:
        response = client.get(
            f"{series_url}/metadata", headers={"Accept": "application/dicom+json"}
        )
        assert response.status_code == 200, response.status_code
        return response.content

    out["series_metadata_ms"] = summary(timings(metadata, repeat))
    frame_url = f"{series_url}/instances/{sop}/frames/1"
    accept = FRAME_ANY
    if client.get(frame_url, headers={"Accept": accept}).status_code != 200:
        accept = 'multipart/related; type="application/octet-stream"'

    def frame() -> object:
        response = client.get(frame_url, headers={"Accept": accept})
        assert response.status_code == 200, response.status_code
        return response.content

    out["one_frame_ms"] = summary(timings(frame, repeat * 3))
    return out


def settle() -> None:
    """Before latency phases: dirty pages written and the servers' own after-load work
    (index checkpoints) done, so that no phase measures the previous one's tail."""
    os.sync()
    time.sleep(2)


def bench_all(
    servers: list[Server],
    small: list[bytes],
    ct: list[bytes],
    ct_uids: tuple[str, str, str],
    args: argparse.Namespace,
) -> dict[str, dict[str, object]]:
    """Every phase on every server before the next phase starts."""
    out: dict[str, dict[str, object]] = {s.name: {} for s in servers}
    clients = {s.name: httpx.Client(timeout=600) for s in servers}
    try:
        # QIDO at 1,000 then at the full corpus (nothing else stored yet).
        for chunk, label in ((small[:1000], "qido_1000"), (small[1000:], f"qido_{len(small)}")):
            for server in servers:
                stow_all(clients[server.name], server.root, chunk, 64)
            settle()
            for name, cases in qido_suite(clients, servers, args.repeat).items():
                out[name][label] = cases
        # STOW-RS throughput on separate instances, into the archive of the full corpus.
        for name, rates in stow_rounds(clients, servers, args.stow_rounds).items():
            out[name]["stow_instances_per_s"] = rates["median"]
            out[name]["stow_rounds"] = rates["rounds"]
        for server in servers:
            stow_all(clients[server.name], server.root, ct, 16)
        settle()
        for server in servers:
            out[server.name].update(bench_reads(clients[server.name], server, ct_uids, args.repeat))
    finally:
        for client in clients.values():
            client.close()
    return out


def _reuid(data: bytes) -> bytes:
    from pydicom import dcmread

    ds = dcmread(io.BytesIO(data))
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = uid(), uid(), uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return to_bytes(ds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", type=int, default=10000)
    parser.add_argument("--ct", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument(
        "--stow-rounds", type=int, default=5, help="interleaved STOW-RS rounds (median reported)"
    )
    parser.add_argument("--only", choices=["noctis", "orthanc"], default=None)
    parser.add_argument(
        "--noctis-http-workers", type=int, default=1, help="http.workers of the Noctis target"
    )
    parser.add_argument(
        "--defaults",
        action="store_true",
        help="both servers as shipped (issue 15): Noctis fsync always and default "
        "http.workers; Orthanc SyncStorageArea on",
    )
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument(
        "--pg-server", default="postgresql://postgres@127.0.0.1:5432", help="for --db postgresql"
    )
    args = parser.parse_args()
    print(f"generating {args.small} small instances and a {args.ct}-slice CT ...", flush=True)
    small = small_corpus(args.small)
    ct_datasets = list(ct_series(slices=args.ct, size=512))
    ct = [to_bytes(ds) for ds in ct_datasets]
    middle = ct_datasets[len(ct_datasets) // 2]
    ct_uids = (middle.StudyInstanceUID, middle.SeriesInstanceUID, middle.SOPInstanceUID)
    results: dict[str, object] = {
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "corpus": {"small": args.small, "ct_slices": args.ct, "ct_bytes": sum(map(len, ct))},
    }
    pg = args.pg_server if args.db == "postgresql" else ""
    noctis = functools.partial(
        start_noctis, http_workers=args.noctis_http_workers, defaults=args.defaults, pg=pg
    )
    orthanc = functools.partial(start_orthanc, defaults=args.defaults, pg=pg)
    results["defaults"], results["db"] = args.defaults, args.db
    results["noctis_http_workers"] = "default" if args.defaults else args.noctis_http_workers
    results["stow_rounds"] = args.stow_rounds
    servers: list[Server] = []
    works: list[Path] = []
    try:
        for name, starter in (("noctis", noctis), ("orthanc", orthanc)):
            if args.only and name != args.only:
                continue
            works.append(Path(tempfile.mkdtemp(prefix=f"bench-{name}-")))
            servers.append(starter(works[-1]))
        print(f"benchmarking {', '.join(s.name for s in servers)} ...", flush=True)
        results.update(bench_all(servers, small, ct, ct_uids, args))
    finally:
        for server in servers:
            server.stop()
        for work in works:
            shutil.rmtree(work, ignore_errors=True)
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    out_path = out_dir / f"dicomweb-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out_path.write_text(json.dumps(results, indent=2))
    print_table(results, args.small)
    print(f"\nresults: {out_path}")


def _ratio(noctis: object, orthanc: object) -> str:
    if isinstance(noctis, int | float) and isinstance(orthanc, int | float) and orthanc:
        return f"{noctis / orthanc:.2f}x"
    return "-"


def print_table(results: dict[str, object], big: int) -> None:
    """One row per measure: Noctis, Orthanc, Noctis / Orthanc (throughput: higher is
    better; latency: lower is better); QIDO rows show each server's match count and
    flag a difference, then the p50 growth from 1,000 to ``big`` instances."""
    noctis = results.get("noctis", {})
    orthanc = results.get("orthanc", {})
    assert isinstance(noctis, dict) and isinstance(orthanc, dict)
    rows: list[tuple[str, object, object, str]] = []
    key = "stow_instances_per_s"
    for name in noctis.get(key) or orthanc.get(key) or {}:
        n_rate = (noctis.get(key) or {}).get(name)
        o_rate = (orthanc.get(key) or {}).get(name)
        rows.append((f"STOW-RS {name} (inst/s)", n_rate, o_rate, _ratio(n_rate, o_rate)))
    for size in ("qido_1000", f"qido_{big}"):
        for name in noctis.get(size) or orthanc.get(size) or {}:
            n = (noctis.get(size) or {}).get(name, {})
            o = (orthanc.get(size) or {}).get(name, {})
            flag = "" if not (n and o) or n["results"] == o["results"] else " COUNTS DIFFER"
            rows.append(
                (
                    f"QIDO {size[5:]} {name} p50/p95 ms (n)",
                    f"{n.get('p50')}/{n.get('p95')} ({n.get('results', 0):.0f})",
                    f"{o.get('p50')}/{o.get('p95')} ({o.get('results', 0):.0f})",
                    _ratio(n.get("p50"), o.get("p50")) + flag,
                )
            )
    n_rate, o_rate = noctis.get("wado_series_MB_per_s"), orthanc.get("wado_series_MB_per_s")
    rows.append(("WADO-RS series MB/s", n_rate, o_rate, _ratio(n_rate, o_rate)))
    for key, label in (
        ("series_metadata_ms", "series metadata p50/p95 ms"),
        ("one_frame_ms", "one frame p50/p95 ms"),
    ):
        n, o = noctis.get(key) or {}, orthanc.get(key) or {}
        rows.append(
            (
                label,
                f"{n.get('p50')}/{n.get('p95')}",
                f"{o.get('p50')}/{o.get('p95')}",
                _ratio(n.get("p50"), o.get("p50")),
            )
        )
    width = max(len(r[0]) for r in rows)
    print(f"\n{'measure'.ljust(width)}  {'noctis':>20}  {'orthanc':>20}  noctis/orthanc")
    for label, n_text, o_text, ratio in rows:
        print(f"{label.ljust(width)}  {str(n_text):>20}  {str(o_text):>20}  {ratio}")
    print(f"\nQIDO p50 growth 1000 -> {big} instances (noctis / orthanc):")
    for name in QIDO_QUERIES:
        growth = []
        for server in (noctis, orthanc):
            small_p50 = (server.get("qido_1000") or {}).get(name, {}).get("p50")
            big_p50 = (server.get(f"qido_{big}") or {}).get(name, {}).get("p50")
            growth.append(f"{big_p50 / small_p50:.2f}x" if small_p50 and big_p50 else "-")
        print(f"  {name}: {growth[0]} / {growth[1]}")


if __name__ == "__main__":
    main()
