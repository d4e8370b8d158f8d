"""Ingest benchmark (issue 2): local import of a generated corpus, SQLite and PostgreSQL.

    .venv/bin/python bench/bench_ingest.py [--small 5000] [--ct 256] [--fsync never|always]

Corpus: ``--small`` 64x64 instances over ``--small/10`` studies, and one ``--ct``-slice
512x512 CT series, generated once under bench/.corpus.  Each run imports through the
same path as ``noctis-pacs import`` (``Archive.store_path`` from a thread pool) into a
fresh index, and reports instances/s, MB/s and the median of ``--repeat`` runs.
``--profile`` adds a cProfile summary of one small-corpus run.

``--audit both`` measures the audit trail's cost (issue 13: ingest with audit on keeps
>= 0.9x of off): runs with the trail off and on are interleaved (off, on, on, off, ...)
so that a change in the machine's load touches both alike, and their medians compared.
``--audit-records per-study`` (the default) queues one record per study, as the protocols
do (C-STORE: per study and association; STOW-RS: per request); ``per-instance`` one per
stored instance, the worst case.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import platform
import pstats
import shutil
import statistics
import sys
import tempfile
import time
import uuid
import warnings
from concurrent.futures import ThreadPoolExecutor
from io import StringIO
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
warnings.simplefilter("ignore")

from noctis_pacs.core.audit import AuditAction, AuditEvent  # noqa: E402
from noctis_pacs.core.settings import load_settings  # noqa: E402
from storage.archive import Archive, Origin, StoreOutcome  # noqa: E402
from tests.factory import ct_series, make_dataset, uid  # noqa: E402

PG_URL = os.environ.get("NOCTIS_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
CORPUS = ROOT / "bench" / ".corpus"


def build_corpus(small: int, ct: int) -> tuple[list[Path], list[Path]]:
    small_dir = CORPUS / f"small-{small}"
    ct_dir = CORPUS / f"ct-{ct}"
    if not small_dir.exists():
        tmp = small_dir.with_suffix(".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        studies = max(1, small // 10)
        for s in range(studies):
            study, series = uid(), uid()
            for n in range(small // studies):
                ds = make_dataset(
                    study_uid=study,
                    series_uid=series,
                    instance_number=n,
                    patient_id=f"P{s:05d}",
                    patient_name=f"Bench^{s:05d}",
                    modality=("CT", "MR", "US", "CR")[s % 4],
                    study_date=f"2024{1 + s % 12:02d}{1 + s % 28:02d}",
                    accession=f"A{s:06d}",
                    pixel_seed=n,
                )
                ds.save_as(tmp / f"{s:05d}-{n:03d}.dcm", enforce_file_format=True)
        tmp.rename(small_dir)
    if not ct_dir.exists():
        tmp = ct_dir.with_suffix(".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for n, ds in enumerate(ct_series(ct, 512)):
            ds.save_as(tmp / f"ct-{n:04d}.dcm", enforce_file_format=True)
        tmp.rename(ct_dir)
    return sorted(small_dir.iterdir()), sorted(ct_dir.iterdir())


def pg_schema_url() -> str:
    import psycopg

    name = f"noctis_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{name}"')
    return f"{PG_URL}?schema={name}"


def drop_pg_schema(url: str) -> None:
    import psycopg

    name = url.rsplit("schema=", 1)[1]
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{name}" CASCADE')


def run_import(
    files: list[Path],
    backend: str,
    fsync: str,
    jobs: int,
    profile: cProfile.Profile | None = None,
    *,
    audit: bool = False,
    per_instance: bool = False,
) -> dict[str, float]:
    work = Path(tempfile.mkdtemp(prefix="noctis-bench-", dir=ROOT / "bench"))
    url = f"sqlite:///{work / 'index.sqlite3'}" if backend == "sqlite" else pg_schema_url()
    settings = load_settings(
        environ={},
        overrides={
            "storage": {"data_dir": str(work), "db": url, "fsync": fsync},
            "audit": {"enabled": audit},
        },
    )
    archive = Archive(settings)
    origin = Origin("import", host="bench")

    recorded: set[str] = set()

    def store(path: Path) -> StoreOutcome:
        outcome = archive.store_path(path, origin)
        if audit and (per_instance or outcome.study_uid not in recorded):
            recorded.add(outcome.study_uid)
            archive.audit_later(
                AuditEvent(
                    action=AuditAction.C_STORE,
                    principal="BENCH",
                    principal_kind="ae",
                    client="127.0.0.1",
                    study_uids=(outcome.study_uid,),
                    sop_uids=(outcome.sop_instance_uid,),
                    detail="1 stored, 0 failed",
                )
            )
        return outcome

    size = sum(p.stat().st_size for p in files)
    try:
        if profile:
            profile.enable()
        started = time.perf_counter()
        if jobs == 1:  # in this thread, so that a profile sees the work
            outcomes = [store(p) for p in files]
        else:
            with ThreadPoolExecutor(max_workers=jobs) as pool:
                outcomes = list(pool.map(store, files))
        if audit:
            archive.flush_audit()  # the trail's writes count: every record is in
        elapsed = time.perf_counter() - started
        if profile:
            profile.disable()
        assert all(o.ok for o in outcomes), [o.reason for o in outcomes if not o.ok][:3]
        assert archive.stats()["instances"] == len(files)
        if audit:
            assert len(archive.audit_records()) == (len(files) if per_instance else len(recorded))
            assert archive.verify_audit().ok
    finally:
        archive.close()
        shutil.rmtree(work, ignore_errors=True)
        if backend != "sqlite":
            drop_pg_schema(url)
    return {
        "seconds": elapsed,
        "instances_per_s": len(files) / elapsed,
        "mb_per_s": size / elapsed / 1e6,
    }


def compare_audit(args: argparse.Namespace) -> None:
    """Ingest with the audit trail off and on, interleaved; medians and their ratio."""
    small, ct = build_corpus(args.small, args.ct)
    corpora = {"small": small, "ct": ct}
    results: dict[str, object] = {"fsync": args.fsync, "jobs": args.jobs, "runs": {}}
    print(
        f"audit off vs on ({args.audit_records} records), interleaved;"
        f" fsync={args.fsync} jobs={args.jobs}"
    )
    results["records"] = args.audit_records
    print(f"{'backend':<11} {'corpus':<6} {'off inst/s':>11} {'on inst/s':>10} {'on/off':>7}")
    for backend in args.backends.split(","):
        for label in args.corpora.split(","):
            files = corpora[label]
            off: list[float] = []
            on: list[float] = []
            for n in range(args.repeat):
                order = (False, True) if n % 2 == 0 else (True, False)
                for audit in order:
                    rate = run_import(
                        files,
                        backend,
                        args.fsync,
                        args.jobs,
                        audit=audit,
                        per_instance=args.audit_records == "per-instance",
                    )
                    (on if audit else off).append(rate["instances_per_s"])
            ratio = statistics.median(on) / statistics.median(off)
            results["runs"][f"{backend}/{label}"] = {  # type: ignore[index]
                "off": off,
                "on": on,
                "median_off": statistics.median(off),
                "median_on": statistics.median(on),
                "ratio": ratio,
            }
            print(
                f"{backend:<11} {label:<6} {statistics.median(off):>11.0f}"
                f" {statistics.median(on):>10.0f} {ratio:>7.2f}"
                f"   off {[round(r) for r in off]} on {[round(r) for r in on]}"
            )
    target = ROOT / "bench" / "results"
    target.mkdir(exist_ok=True)
    (target / "ingest-audit.json").write_text(json.dumps(results, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--small", type=int, default=5000)
    parser.add_argument("--ct", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=4)
    parser.add_argument("--fsync", default="always", choices=["always", "never"])
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--corpora", default="small,ct", help="small, ct or both")
    parser.add_argument(
        "--audit",
        default="off",
        choices=["off", "on", "both"],
        help="audit trail off, on (one record per instance), or both interleaved",
    )
    parser.add_argument(
        "--audit-records",
        default="per-study",
        choices=["per-study", "per-instance"],
        help="per-study: one record per study, as C-STORE associations and STOW-RS requests"
        " give; per-instance: one per stored instance (the worst case)",
    )
    args = parser.parse_args()
    if args.audit == "both":
        compare_audit(args)
        return

    small, ct = build_corpus(args.small, args.ct)
    results: dict[str, object] = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "corpus": {
            "small": len(small),
            "small_bytes": sum(p.stat().st_size for p in small),
            "ct": len(ct),
            "ct_bytes": sum(p.stat().st_size for p in ct),
        },
        "fsync": args.fsync,
        "jobs": args.jobs,
        "runs": {},
    }
    print(f"corpus: {len(small)} small, {len(ct)} CT slices; fsync={args.fsync} jobs={args.jobs}")
    print(f"{'backend':<11} {'corpus':<6} {'inst/s (median)':>16} {'MB/s':>8}  runs")
    for backend in args.backends.split(","):
        for label, files in (("small", small), ("ct", ct)):
            runs = [
                run_import(files, backend, args.fsync, args.jobs, audit=args.audit == "on")
                for _ in range(args.repeat)
            ]
            rate = statistics.median(r["instances_per_s"] for r in runs)
            mbps = statistics.median(r["mb_per_s"] for r in runs)
            results["runs"][f"{backend}/{label}"] = {  # type: ignore[index]
                "median_instances_per_s": rate,
                "median_mb_per_s": mbps,
                "runs": runs,
            }
            print(
                f"{backend:<11} {label:<6} {rate:>16.0f} {mbps:>8.1f}  "
                + ", ".join(f"{r['instances_per_s']:.0f}" for r in runs)
            )
    if args.profile:
        profile = cProfile.Profile()
        run_import(small, "sqlite", args.fsync, 1, profile)
        out = StringIO()
        pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(30)
        results["profile"] = out.getvalue()
        print(out.getvalue())
    target = ROOT / "bench" / "results"
    target.mkdir(exist_ok=True)
    (target / "ingest.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
