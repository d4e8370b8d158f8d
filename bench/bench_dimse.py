"""DIMSE benchmark (issue 3): Noctis PACS against Orthanc and a no-op pynetdicom SCP,
same run, same corpus, same clients (dcmtk with TCP_NODELAY=1).

    .venv/bin/python bench/bench_dimse.py [--small 1000] [--ct 256] [--find 10000] [--repeat 3]
    .venv/bin/python bench/bench_dimse.py --defaults [--repeat 3]

``--defaults`` (issue 15) measures what a site runs: Noctis as shipped (``fsync =
"always"``, ``dimse.workers = "auto"``, nothing tuned) against Orthanc at its own defaults
(``SyncStorageArea`` on, 4 DICOM threads; only its access rules opened so that C-GET
and C-MOVE are answered), both on SQLite: the four C-STORE cases, C-GET of the CT
series with dcmtk's getscu (``--ignore``), C-ECHO p50 on one association and C-ECHO
with a new association each time (one presentation context, and 120 as a
modality's storescu proposes), timed with ``bench/echo_client.py`` on a plain socket.
``--db postgresql`` puts both indexes in PostgreSQL (Noctis ``storage.db``; Orthanc's
PostgreSQL index plugin, files still on disk), a fresh database for every start.
Case ``small x4 indexed`` sends ``--big`` small instances (10 per study) over four
associations into an archive already holding ``--preload`` instances (not timed).

Each store measurement starts the target afresh on an empty store (Noctis: SQLite,
fsync never; Orthanc: SQLite, SyncStorageArea false, no compression).  Measured:
C-STORE instances/s with storescu on one association and on four concurrent ones, for
--small 64x64 instances and a --ct slice 512x512 CT series; C-FIND study-level latency
p50/p95 at --find instances (PatientName wildcard, StudyDate range, ModalitiesInStudy)
over one pynetdicom association; C-MOVE instances/s of the CT series to a storescp that
discards (``--ignore``).  JSON goes to bench/results/, a table to stdout.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
warnings.simplefilter("ignore")

from pydicom.dataset import Dataset  # noqa: E402
from pynetdicom import AE  # noqa: E402
from pynetdicom.sop_class import (  # noqa: E402
    StudyRootQueryRetrieveInformationModelFind as StudyRootFind,
)

from tests.factory import ct_series, make_dataset, to_bytes, uid  # noqa: E402

ORTHANC = "/usr/sbin/Orthanc"
ORTHANC_PG_PLUGIN = "/usr/share/orthanc/plugins/libOrthancPostgreSQLIndex.so"
ENV = {**os.environ, "TCP_NODELAY": "1"}
MODALITIES = ["CT", "MR", "US", "CR", "DX", "MG", "NM", "PT", "XA", "OT"]
FAMILIES = ["SMITH", "JONES", "BROWN", "TAYLOR", "WILSON", "DAVIES", "EVANS", "THOMAS"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_echo(port: int, aet: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited:\n{log.read_text(errors='replace')[-3000:]}")
        done = subprocess.run(
            ["echoscu", "-to", "2", "-aec", aet, "127.0.0.1", str(port)],
            env=ENV, capture_output=True,
        )  # fmt: skip
        if done.returncode == 0:
            return
        time.sleep(0.2)
    raise RuntimeError(f"server not answering C-ECHO on {port}")


@dataclass
class Target:
    name: str
    process: subprocess.Popen[bytes]
    port: int
    aet: str
    log: Path | None = None

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()


def start_noctis(
    work: Path,
    dest_port: int,
    *,
    workers: int = 1,
    defaults: bool = False,
    extra: str = "",
    source: str = "",
    name: str = "noctis",
    pg: str = "",
) -> Target:
    """With ``defaults`` the shipped configuration: nothing but where and who; with
    ``source`` the code of another checkout (an A/B run against a baseline commit)."""
    port = free_port()
    data = work / "noctis"
    config = work / "noctis.toml"
    tuned = "" if defaults else 'fsync = "never"\n'
    dimse_tuned = "" if defaults else f"workers = {workers}\n"
    db = f'db = "{fresh_database(pg, "bench_noctis")}"\n' if pg else ""
    config.write_text(
        f'[storage]\ndata_dir = "{data}"\n{db}{tuned}'
        f'[dimse]\nhost = "127.0.0.1"\nport = {port}\nae_title = "NOCTIS"\n'
        f"{dimse_tuned}{extra}"
        f'[dimse.remotes.dest]\nae_title = "DEST"\nhost = "127.0.0.1"\nport = {dest_port}\n'
        '[query]\nmax_results = 100000\n[logging]\nlevel = "WARNING"\n'
    )
    log = work / "noctis.log"
    command = [str(Path(sys.executable).parent / "noctis-pacs")]
    if source:
        # A baseline from before the core/app split has its CLI at noctis_pacs.cli (and
        # an ImportError cannot tell: the editable install maps noctis_pacs.app to ours).
        cli = "app.cli" if (Path(source) / "noctis_pacs" / "app").is_dir() else "cli"
        command = [sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv.pop(1)); "
                   f"from noctis_pacs.{cli} import main; sys.exit(main())", source]  # fmt: skip
    process = subprocess.Popen(
        [*command, "serve", "--dimse-only", "--config", str(config)],
        stdout=open(log, "wb"), stderr=subprocess.STDOUT,  # noqa: SIM115
    )  # fmt: skip
    wait_echo(port, "NOCTIS", process, log)
    wait_layout(data)
    return Target(name, process, port, "NOCTIS", log)


def wait_layout(data: Path) -> None:
    """Let a fresh store's one-time layout (serve creates its 4,096 blob folders in the
    background, once per archive lifetime) finish before measuring, so that each run
    measures a store's steady state rather than its first second."""
    blobs = data / "blobs"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if blobs.is_dir() and sum(1 for _ in blobs.iterdir()) >= 4096:
            return
        time.sleep(0.1)


def fresh_database(server: str, name: str) -> str:
    """An empty PostgreSQL database ``name`` on ``server`` (a URL without a database)."""
    import psycopg

    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")
    return f"{server}/{name}"


def orthanc_postgresql(url: str, plugins: tuple[str, ...] = ()) -> dict[str, object]:
    """Orthanc configuration keys for its index in the PostgreSQL database ``url`` (Debian's
    index plugin; files stay in the storage directory), after ``plugins``."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return {
        "Plugins": [*plugins, ORTHANC_PG_PLUGIN],
        "PostgreSQL": {
            "EnableIndex": True, "EnableStorage": False, "Host": parts.hostname,
            "Port": parts.port or 5432, "Database": parts.path.lstrip("/"),
            "Username": parts.username or "postgres", "Password": parts.password or "",
            "Lock": False,
        },
    }  # fmt: skip


def start_orthanc(work: Path, dest_port: int, *, defaults: bool = False, pg: str = "") -> Target:
    """With ``defaults`` Orthanc's own storage settings (``SyncStorageArea`` on); with
    ``pg`` (a server URL) its index in PostgreSQL through Debian's index plugin."""
    port = free_port()
    storage = work / "orthanc"
    storage.mkdir()
    config: dict[str, object] = {
        "Name": "BENCH",
        "StorageDirectory": str(storage),
        "IndexDirectory": str(storage),
        "HttpPort": free_port(),
        "DicomPort": port,
        "DicomAet": "ORTHANC",
        "RemoteAccessAllowed": True,
        "AuthenticationEnabled": False,
        "SyncStorageArea": False,
        "StorageCompression": False,
        "DicomModalities": {"dest": ["DEST", "127.0.0.1", dest_port]},
        "DicomAlwaysAllowMove": True,
        "DicomAlwaysAllowFind": True,
        "DicomAlwaysAllowGet": True,
    }
    if defaults:
        del config["SyncStorageArea"], config["StorageCompression"]
    if pg:
        config.update(orthanc_postgresql(fresh_database(pg, "bench_orthanc")))
    path = work / "orthanc.json"
    path.write_text(json.dumps(config))
    log = work / "orthanc.log"
    process = subprocess.Popen(
        [ORTHANC, str(path)],
        stdout=open(log, "wb"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
        env=ENV,
    )
    wait_echo(port, "ORTHANC", process, log)
    return Target("orthanc", process, port, "ORTHANC")


def start_noop(work: Path, dest_port: int, *, wakeup: bool = False) -> Target:
    port = free_port()
    log = work / "noop.log"
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "noop_scp.py"), str(port),
         *(["wakeup"] if wakeup else [])],
        stdout=open(log, "wb"), stderr=subprocess.STDOUT,  # noqa: SIM115
    )  # fmt: skip
    wait_echo(port, "NOOP", process, log)
    return Target("noop-wakeup" if wakeup else "noop-pynetdicom", process, port, "NOOP")


STARTERS: dict[str, Callable[[Path, int], Target]] = {
    "noctis": start_noctis,
    "orthanc": start_orthanc,
    "noop-pynetdicom": start_noop,
    # The same no-op SCP with Noctis's loop wake-ups and chunked receive: the
    # protocol layer's own cost as Noctis runs it (reported beside the stock one).
    "noop-wakeup": functools.partial(start_noop, wakeup=True),
}


# -- corpora ---------------------------------------------------------------------------


def write_corpus(folder: Path, datasets: object, parts: int = 4) -> list[Path]:
    """Files split round-robin into ``parts`` sub-folders (one per association)."""
    subs = [folder / f"part{n}" for n in range(parts)]
    for sub in subs:
        sub.mkdir(parents=True)
    for index, ds in enumerate(datasets):  # type: ignore[call-overload]
        (subs[index % parts] / f"{index:06d}.dcm").write_bytes(to_bytes(ds))
    return subs


def small_corpus(folder: Path, count: int) -> list[Path]:
    study = uid()
    return write_corpus(
        folder,
        (make_dataset(study_uid=study, instance_number=n, pixel_seed=n) for n in range(count)),
    )


def indexed_corpus(folder: Path, count: int) -> list[Path]:
    """``count`` small instances, ten per study."""
    studies = [uid() for _ in range(count // 10 + 1)]
    return write_corpus(
        folder,
        (make_dataset(study_uid=studies[n // 10], instance_number=n % 10 + 1, pixel_seed=n)
         for n in range(count)),
    )  # fmt: skip


def ct_corpus(folder: Path, slices: int) -> tuple[list[Path], str, str]:
    study, series = uid(), uid()
    return (
        write_corpus(folder, ct_series(slices, 512, study_uid=study, series_uid=series)),
        study,
        series,
    )


def find_corpus(folder: Path, count: int) -> list[Path]:
    """``count`` tiny instances: 5 per study, 2 studies per patient, varied keys."""
    rng = random.Random(7)

    def generate() -> object:
        for n in range(count // 5):
            patient = n // 2
            study, series = uid(), uid()
            modality = MODALITIES[n % len(MODALITIES)]
            date = f"20{10 + n % 14:02d}{1 + n % 12:02d}{1 + n % 28:02d}"
            for k in range(5):
                yield make_dataset(
                    study_uid=study, series_uid=series, modality=modality, study_date=date,
                    patient_name=f"{FAMILIES[patient % len(FAMILIES)]}{patient}^P{rng.randint(0, 99)}",
                    patient_id=f"P{patient:06d}", accession=f"A{n:07d}", rows=8, columns=8,
                    instance_number=k + 1,
                )  # fmt: skip

    return write_corpus(folder, generate())


# -- measurements ----------------------------------------------------------------------


def storescu(target: Target, folders: list[Path]) -> float:
    """Seconds to send every file of ``folders``, one association per folder, at once."""
    errors: list[str] = []

    def run(folder: Path) -> None:
        done = subprocess.run(
            ["storescu", "-aec", target.aet, "+sd", "+r", "127.0.0.1", str(target.port), str(folder)],
            env=ENV, capture_output=True, text=True,
        )  # fmt: skip
        if done.returncode != 0:
            errors.append(done.stderr[-500:])

    threads = [threading.Thread(target=run, args=(f,)) for f in folders]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"{target.name}: storescu failed: {errors[0]}")
    return elapsed


def movescu(target: Target, study: str, series: str) -> float:
    started = time.perf_counter()
    done = subprocess.run(
        ["movescu", "-S", "-aec", target.aet, "-aem", "DEST",
         "-k", "QueryRetrieveLevel=SERIES", "-k", f"StudyInstanceUID={study}",
         "-k", f"SeriesInstanceUID={series}", "127.0.0.1", str(target.port)],
        env=ENV, capture_output=True, text=True,
    )  # fmt: skip
    elapsed = time.perf_counter() - started
    if done.returncode != 0 or "Failed" in done.stderr:
        log = target.log.read_text(errors="replace")[-3000:] if target.log else ""
        raise RuntimeError(f"{target.name}: movescu failed: {done.stderr[-500:]}\n{log}")
    return elapsed


def getscu(target: Target, study: str, series: str) -> float:
    """Seconds for dcmtk's getscu to C-GET the series (received and discarded)."""
    started = time.perf_counter()
    done = subprocess.run(
        ["getscu", "-S", "--ignore", "-aec", target.aet,
         "-k", "QueryRetrieveLevel=SERIES", "-k", f"StudyInstanceUID={study}",
         "-k", f"SeriesInstanceUID={series}", "127.0.0.1", str(target.port)],
        env=ENV, capture_output=True, text=True,
    )  # fmt: skip
    elapsed = time.perf_counter() - started
    if done.returncode != 0 or "Failed" in done.stderr or "rror" in done.stderr:
        log = target.log.read_text(errors="replace")[-3000:] if target.log else ""
        raise RuntimeError(f"{target.name}: getscu failed: {done.stderr[-800:]}\n{log}")
    return elapsed


def echo_latencies(target: Target, repeat: int) -> dict[str, float]:
    """C-ECHO p50 (ms) on one association, and with a new association each time with one
    presentation context and with 120 (``bench/echo_client.py``)."""
    from bench import echo_client

    sock = echo_client.associate("127.0.0.1", target.port, called=target.aet)
    samples = []
    for n in range(repeat + 20):
        started = time.perf_counter()
        echo_client.echo(sock, n + 1)
        if n >= 20:  # warm-up
            samples.append(time.perf_counter() - started)
    echo_client.release(sock)
    out = {"echo_p50_ms": statistics.median(samples) * 1000}
    for contexts in (1, 120):
        samples = []
        for n in range(max(20, repeat // 4) + 5):
            started = time.perf_counter()
            sock = echo_client.associate(
                "127.0.0.1", target.port, called=target.aet, contexts=contexts
            )
            echo_client.echo(sock, 1)
            echo_client.release(sock)
            if n >= 5:
                samples.append(time.perf_counter() - started)
        out[f"assoc_echo_{contexts}ctx_p50_ms"] = statistics.median(samples) * 1000
    return out


def load_average() -> float:
    return os.getloadavg()[0]


FIND_QUERIES = {
    "PatientName wildcard": {"PatientName": "SMITH1*"},
    "StudyDate range": {"StudyDate": "20150101-20150331"},
    "ModalitiesInStudy": {"ModalitiesInStudy": "MR"},
}


def find_latencies(target: Target, repeat: int) -> dict[str, dict[str, float]]:
    ae = AE(ae_title="BENCH")
    ae.add_requested_context(StudyRootFind)
    assoc = ae.associate("127.0.0.1", target.port, ae_title=target.aet)
    assoc.dul.socket.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    out = {}
    for name, keys in FIND_QUERIES.items():
        samples, matches = [], 0
        for _ in range(repeat):
            query = Dataset()
            query.QueryRetrieveLevel = "STUDY"
            for key in ("StudyInstanceUID", "PatientName", "PatientID", "StudyDate",
                        "ModalitiesInStudy", "AccessionNumber", "NumberOfStudyRelatedInstances"):  # fmt: skip
                setattr(query, key, "")
            for key, value in keys.items():
                setattr(query, key, value)
            started = time.perf_counter()
            matches = sum(
                1
                for status, _ in assoc.send_c_find(query, StudyRootFind)
                if status.Status in (0xFF00, 0xFF01)
            )
            samples.append(time.perf_counter() - started)
        samples.sort()
        out[name] = {
            "p50_ms": statistics.median(samples) * 1000,
            "p95_ms": samples[int(0.95 * (len(samples) - 1))] * 1000,
            "matches": matches,
        }
    assoc.release()
    return out


def warm_memory(work: Path, gib: float) -> None:
    """Write and delete ``gib`` GiB in the work folder before measuring.

    On a fresh VM the page cache grows into guest memory the host has never backed,
    and a first touch is about 10x slower (dd of 1,000 MiB: 504 MB/s fresh, 5.9 GB/s
    again). Whichever target ran first paid for it; freed pages are reused, so one
    pass at the start puts every target on warm memory."""
    if gib <= 0:
        return
    chunk = b"\0" * (4 << 20)
    path = work / "warm-up"
    with open(path, "wb") as fh:
        for _ in range(int(gib * 256)):
            fh.write(chunk)
    path.unlink()


def start_dest(work: Path, port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        ["storescp", "-aet", "DEST", "+xa", "--ignore", str(port)],
        env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    time.sleep(0.3)
    return process


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--ct", type=int, default=256)
    parser.add_argument("--find", type=int, default=10000)
    parser.add_argument("--repeat", type=int, default=3, help="store runs per case (median)")
    parser.add_argument("--find-repeat", type=int, default=30)
    parser.add_argument("--targets", default="noctis,orthanc,noop-pynetdicom,noop-wakeup")
    parser.add_argument("--no-move", dest="move", action="store_false")
    parser.add_argument("--cases", default="small x1,small x4,ct x1,ct x4")
    parser.add_argument(
        "--warm-gb",
        type=float,
        default=4.0,
        help="GiB written and deleted before measuring (first-touch memory, see warm_memory)",
    )
    parser.add_argument(
        "--noctis-workers", type=int, default=2, help="dimse.workers of the Noctis target"
    )
    parser.add_argument(
        "--defaults",
        action="store_true",
        help="both servers as shipped (issue 15): Noctis fsync always, dimse.workers auto; "
        "Orthanc SyncStorageArea on; adds C-GET and C-ECHO, targets noctis,orthanc",
    )
    parser.add_argument(
        "--noctis-extra", default="", help="TOML lines appended to Noctis's [dimse] table"
    )
    parser.add_argument("--echo-repeat", type=int, default=400)
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument(
        "--pg-server", default="postgresql://postgres@127.0.0.1:5432", help="for --db postgresql"
    )
    parser.add_argument("--big", type=int, default=9000, help="case 'small x4 indexed'")
    parser.add_argument("--preload", type=int, default=1300, help="case 'small x4 indexed'")
    parser.add_argument(
        "--baseline-src",
        default="",
        help="a checkout of another commit: adds target noctis-base running that code",
    )
    args = parser.parse_args()
    if args.defaults and args.targets == parser.get_default("targets"):
        args.targets = "noctis,orthanc"
    targets = [t for t in args.targets.split(",") if t]
    pg = args.pg_server if args.db == "postgresql" else ""
    starters = {
        **STARTERS,
        "noctis": functools.partial(
            start_noctis,
            workers=args.noctis_workers,
            defaults=args.defaults,
            extra=args.noctis_extra.replace("\\n", "\n") + "\n" if args.noctis_extra else "",
            pg=pg,
        ),
        "orthanc": functools.partial(start_orthanc, defaults=args.defaults, pg=pg),
    }
    if args.baseline_src:
        starters["noctis-base"] = functools.partial(
            starters["noctis"], source=args.baseline_src, name="noctis-base"
        )
    work = Path(tempfile.mkdtemp(prefix="bench-dimse-"))
    dest_port = free_port()
    dest = start_dest(work, dest_port)
    results: dict[str, object] = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version()},  # fmt: skip
        "corpus": {"small": args.small, "ct_slices": args.ct, "find_instances": args.find},
        "noctis_workers": "default" if args.defaults else args.noctis_workers,
        "defaults": args.defaults, "noctis_extra": args.noctis_extra, "db": args.db,
        "big": args.big, "preload": args.preload,
        "store": {}, "move": {}, "get": {}, "echo": {}, "find": {}, "load": [],
    }  # fmt: skip
    try:
        print("generating corpora ...", file=sys.stderr)
        small = small_corpus(work / "small", args.small)
        ct, ct_study, ct_series_uid = ct_corpus(work / "ct", args.ct)
        cases = {
            "small x1": ([d for d in small], 1, args.small),
            "small x4": (small, 4, args.small),
            "ct x1": (ct, 1, args.ct),
            "ct x4": (ct, 4, args.ct),
        }
        preload: list[Path] = []
        if "small x4 indexed" in args.cases.split(","):
            cases["small x4 indexed"] = (indexed_corpus(work / "big", args.big), 4, args.big)
            preload = find_corpus(work / "preload", args.preload)
        cases = {k: v for k, v in cases.items() if k in args.cases.split(",")}
        store: dict[str, dict[str, float]] = {}
        warm_memory(work, args.warm_gb)
        rates: dict[tuple[str, str], list[float]] = {}
        moves: dict[str, list[float]] = {}
        gets: dict[str, list[float]] = {}
        loads: list[float] = results["load"]  # type: ignore[assignment]
        for case, (folders, assocs, count) in cases.items():
            # Targets take turns within each repeat, so that a slow spell of the machine
            # (or its memory growing) does not fall on one target's runs only.
            for rep in range(args.repeat):
                for name in targets:
                    run_dir = work / f"{name}-{case.replace(' ', '')}-{rep}"
                    run_dir.mkdir()
                    target = starters[name](run_dir, dest_port)
                    try:
                        if case == "small x4 indexed":
                            storescu(target, preload)
                        # No run pays for the write-back of the one before it.
                        os.sync()
                        if assocs == 1:
                            # One association sends everything: a folder of all the parts.
                            elapsed = storescu(target, [folders[0].parent])
                        else:
                            elapsed = storescu(target, folders)
                        rates.setdefault((name, case), []).append(count / elapsed)
                        if case == "ct x1" and not name.startswith("noop") and args.move:
                            seconds = movescu(target, ct_study, ct_series_uid)
                            moves.setdefault(name, []).append(count / seconds)
                        if case == "ct x1" and not name.startswith("noop") and args.defaults:
                            seconds = getscu(target, ct_study, ct_series_uid)
                            gets.setdefault(name, []).append(count / seconds)
                    finally:
                        target.stop()
                        shutil.rmtree(run_dir, ignore_errors=True)
                loads.append(load_average())
            for name in targets:
                median = statistics.median(rates[(name, case)])
                store.setdefault(name, {})[case] = median
                print(f"{name:16s} {case:9s} {median:8.1f} inst/s", file=sys.stderr)
        results["store"] = store
        results["move"] = {k: statistics.median(v) for k, v in moves.items()}
        results["get"] = {k: statistics.median(v) for k, v in gets.items()}
        results["rates"] = {f"{n} {c}": v for (n, c), v in rates.items()}
        if args.defaults:
            echoes: dict[str, list[dict[str, float]]] = {}
            for rep in range(args.repeat):
                for name in (t for t in targets if not t.startswith("noop")):
                    run_dir = work / f"{name}-echo-{rep}"
                    run_dir.mkdir()
                    target = starters[name](run_dir, dest_port)
                    try:
                        echoes.setdefault(name, []).append(echo_latencies(target, args.echo_repeat))
                    finally:
                        target.stop()
                        shutil.rmtree(run_dir, ignore_errors=True)
                loads.append(load_average())
            results["echo"] = {
                name: {key: statistics.median(r[key] for r in runs) for key in runs[0]}
                for name, runs in echoes.items()
            }
        if args.find:
            find_dirs = find_corpus(work / "find", args.find)
            for name in (t for t in targets if not t.startswith("noop")):
                run_dir = work / f"{name}-find"
                run_dir.mkdir()
                target = starters[name](run_dir, dest_port)
                try:
                    storescu(target, find_dirs)
                    results["find"][name] = find_latencies(target, args.find_repeat)  # type: ignore[index]
                finally:
                    target.stop()
    finally:
        dest.terminate()
        shutil.rmtree(work, ignore_errors=True)
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    out_path = out_dir / f"dimse-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out_path.write_text(json.dumps(results, indent=2))
    print_table(results)
    print(f"\nwritten to {out_path}")


#: The C-STORE cases, in the order the tables list them.
STORE_CASES = ("small x1", "small x4", "ct x1", "ct x4", "small x4 indexed")


def paired(results: dict[str, object]) -> None:
    """Noctis over Orthanc within each repeat (the targets store one after the other in
    a repeat, so a slow spell of the machine that spans a repeat falls on both): a second
    reading of the table above, steadier than its ratio of medians on a noisy machine."""
    rates: dict[str, list[float]] = results.get("rates", {})  # type: ignore[assignment]
    lines = []
    for case in STORE_CASES:
        ours, theirs = rates.get(f"noctis {case}"), rates.get(f"orthanc {case}")
        if ours and theirs:
            ratios = [a / b for a, b in zip(ours, theirs, strict=False)]
            each = " ".join(f"{r:.2f}" for r in ratios)
            lines.append(f"  {case:27s} {statistics.median(ratios):5.2f}   ({each})")
    if lines:
        print("\nC-STORE noctis/orthanc within each repeat: median (each repeat)")
        print("\n".join(lines))


def print_table(results: dict[str, object]) -> None:
    store: dict[str, dict[str, float]] = results["store"]  # type: ignore[assignment]
    print(
        "\nC-STORE instances/s (median)   noctis   orthanc      noop noop-wake"
        "  /orthanc  /noop  /noop-wake"
    )
    for case in STORE_CASES:
        n, o, p, w = (
            store.get(t, {}).get(case, float("nan"))
            for t in ("noctis", "orthanc", "noop-pynetdicom", "noop-wakeup")
        )
        print(f"  {case:27s} {n:8.1f} {o:9.1f} {p:9.1f} {w:9.1f} "
              f"{n / o:9.2f} {n / p:6.2f} {n / w:10.2f}")  # fmt: skip
    paired(results)
    if "noctis-base" in store:
        print(
            "\nA/B against --baseline-src (instances/s, ratio new/base, new/orthanc, base/orthanc)"
        )
        for case in STORE_CASES:
            n, b, o = (
                store.get(t, {}).get(case, float("nan"))
                for t in ("noctis", "noctis-base", "orthanc")
            )
            print(f"  {case:10s} new {n:7.1f} base {b:7.1f} orthanc {o:7.1f}  "
                  f"{n / b:5.2f} {n / o:5.2f} {b / o:5.2f}")  # fmt: skip
    get: dict[str, float] = results.get("get", {})  # type: ignore[assignment]
    if get:
        n, o = get.get("noctis", float("nan")), get.get("orthanc", float("nan"))
        print(
            f"\nC-GET CT series instances/s         noctis {n:8.1f}  orthanc {o:8.1f}  ratio {n / o:.2f}"
        )
    echo: dict[str, dict[str, float]] = results.get("echo", {})  # type: ignore[assignment]
    for key in ("echo_p50_ms", "assoc_echo_1ctx_p50_ms", "assoc_echo_120ctx_p50_ms"):
        if echo:
            n = echo.get("noctis", {}).get(key, float("nan"))
            o = echo.get("orthanc", {}).get(key, float("nan"))
            print(f"{key:34s}  noctis {n:8.2f}  orthanc {o:8.2f}  ratio {n / o:.2f}")
    loads: list[float] = results.get("load", [])  # type: ignore[assignment]
    if loads:
        print(f"load average (1 min) during the run: {min(loads):.1f}-{max(loads):.1f}")
    move: dict[str, float] = results["move"]  # type: ignore[assignment]
    if move:
        n, o = move.get("noctis", float("nan")), move.get("orthanc", float("nan"))
        print(
            f"\nC-MOVE CT series instances/s        noctis {n:8.1f}  orthanc {o:8.1f}  ratio {n / o:.2f}"
        )
    find: dict[str, dict[str, dict[str, float]]] = results["find"]  # type: ignore[assignment]
    if find:
        print("\nC-FIND study level (ms)             noctis p50/p95     orthanc p50/p95   matches")
        for query in FIND_QUERIES:
            n = find.get("noctis", {}).get(query, {})
            o = find.get("orthanc", {}).get(query, {})
            print(f"  {query:32s} {n.get('p50_ms', 0):7.1f}/{n.get('p95_ms', 0):7.1f}"
                  f"   {o.get('p50_ms', 0):7.1f}/{o.get('p95_ms', 0):7.1f}   "
                  f"{n.get('matches', '-')}/{o.get('matches', '-')}")  # fmt: skip


if __name__ == "__main__":
    main()
