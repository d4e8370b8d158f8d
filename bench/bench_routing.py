"""Routing benchmark (issue 17): routing throughput against a direct C-MOVE of the same
series, and ingest with a 10,000-item routing queue against ingest with none.

    .venv/bin/python bench/bench_routing.py [--ct 128] [--small 500] [--queue 10000] [--repeat 3]

Noctis runs on SQLite with fsync never (as bench_dimse.py), DIMSE and HTTP.

1. Throughput: a CT series (--ct slices, 512x512) is stored while the router is off
   (``routing.enabled = false``) with a rule routing everything to a dcmtk storescp
   that discards (``--ignore``); the series is also moved there with movescu (C-MOVE,
   the direct path). The server is restarted with the router on, and the time from
   its start until the queue and inbox are empty gives routing's instances/s. Both
   send each instance as stored over one association.
2. Ingest: storescu sends --small 64x64 instances on one association, (a) with no
   rule and an empty queue, (b) with a rule active and --queue items already queued
   for a destination that is down (the router retrying them all the while).
Medians of --repeat runs; JSON to bench/results/, a table to stdout.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import httpx  # noqa: E402
from bench_dimse import (  # noqa: E402
    ct_corpus,
    free_port,
    movescu,
    small_corpus,
    start_dest,
    storescu,
    wait_echo,
    wait_layout,
)


class Server:
    def __init__(self, work: Path, dest_port: int, *, router: bool, extra: str = "") -> None:
        self.port, self.http = free_port(), free_port()
        self.data = work / "noctis"
        self.config = work / f"noctis-{self.http}.toml"
        self.config.write_text(
            f'[storage]\ndata_dir = "{self.data}"\nfsync = "never"\n'
            f'[http]\nhost = "127.0.0.1"\nport = {self.http}\n'
            f'[dimse]\nhost = "127.0.0.1"\nport = {self.port}\nae_title = "NOCTIS"\n'
            f'[dimse.remotes.dest]\nae_title = "DEST"\nhost = "127.0.0.1"\nport = {dest_port}\n'
            f"[routing]\nenabled = {'true' if router else 'false'}\n"
            "poll_interval_seconds = 0.05\n[query]\nmax_results = 100000\n"
            '[logging]\nlevel = "WARNING"\n' + extra
        )
        self.log = work / f"noctis-{self.http}.log"
        self.process = subprocess.Popen(
            [str(Path(sys.executable).parent / "noctis-pacs"), "serve", "--config", str(self.config)],
            stdout=open(self.log, "wb"), stderr=subprocess.STDOUT,  # noqa: SIM115
        )  # fmt: skip
        self.name, self.aet = "noctis", "NOCTIS"
        wait_echo(self.port, "NOCTIS", self.process, self.log)  # type: ignore[arg-type]
        wait_layout(self.data)
        self.url = f"http://127.0.0.1:{self.http}/api"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(f"{self.url}/statistics", timeout=2)
                break
            except httpx.HTTPError:
                time.sleep(0.1)

    def queue(self) -> dict[str, float]:
        return dict(httpx.get(f"{self.url}/routing/queue", timeout=10).json())

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def routing_throughput(work: Path, slices: int) -> dict[str, float]:
    folder = work / "ct"
    _parts, study, series = ct_corpus(folder, slices)
    dest_port = free_port()
    dest = start_dest(work, dest_port)
    try:
        server = Server(work, dest_port, router=False)
        rule = {"name": "all", "destinations": ["dest"], "max_attempts": 3}
        assert httpx.post(f"{server.url}/routing/rules", json=rule, timeout=10).status_code == 201
        time.sleep(2.5)  # ingest sees a new rule within 2 s
        storescu(server, [folder])  # type: ignore[arg-type]
        move = min(movescu(server, study, series) for _ in range(2))  # type: ignore[arg-type]
        inbox = server.queue()["inbox"]
        server.stop()
        started = time.perf_counter()
        server = Server(work, dest_port, router=True)
        boot = time.perf_counter() - started
        while True:
            queue = server.queue()
            if queue["inbox"] == 0 and queue["queued"] == 0:
                break
            time.sleep(0.02)
        routed = time.perf_counter() - started - boot
        dead = server.queue()["dead"]
        server.stop()
    finally:
        dest.terminate()
        dest.wait()
    return {
        "instances": slices,
        "inbox": inbox,
        "dead": dead,
        "move_per_s": slices / move,
        "route_per_s": slices / routed,
        "ratio": move / routed,
    }


def ingest_with_queue(work: Path, small: int, queue: int, repeat: int) -> dict[str, float]:
    from storage.db import open_database
    from storage.routing import R
    from storage.workflow_events import now_iso

    folder = work / "small"
    small_corpus(folder, small)
    rates: dict[str, list[float]] = {"empty": [], "queued": []}
    for run in range(repeat):
        for case in ("empty", "queued"):
            run_dir = work / f"ingest-{case}-{run}"
            run_dir.mkdir()
            server = Server(run_dir, free_port(), router=True)
            if case == "queued":
                rule = {"name": "all", "destinations": ["dest"], "max_attempts": 1000}
                httpx.post(f"{server.url}/routing/rules", json=rule, timeout=10)
                db = open_database(f"sqlite:///{server.data / 'index.sqlite3'}")
                rows = [
                    {"rule_name": "all", "destination": "dest", "study_uid": f"1.2.{i % 100}",
                     "sop_uid": f"1.2.3.{i}", "max_attempts": 1000, "now": now_iso()}
                    for i in range(queue)
                ]  # fmt: skip
                db.transaction(lambda conn, rows=rows: conn.executemany(R("queue_insert"), rows))
                db.close()
                time.sleep(2.5)
            elapsed = storescu(server, [folder])  # type: ignore[arg-type]
            rates[case].append(small / elapsed)
            server.stop()
    empty, queued = statistics.median(rates["empty"]), statistics.median(rates["queued"])
    return {"empty_per_s": empty, "queued_per_s": queued, "ratio": queued / empty, "runs": rates}  # type: ignore[dict-item]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ct", type=int, default=128)
    parser.add_argument("--small", type=int, default=500)
    parser.add_argument("--queue", type=int, default=10000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    results: dict[str, object] = {"machine": platform.platform(), "args": vars(args)}
    with tempfile.TemporaryDirectory(prefix="noctis-bench-routing-") as tmp:
        work = Path(tmp)
        throughput = []
        for run in range(args.repeat):
            run_dir = work / f"route-{run}"
            run_dir.mkdir()
            throughput.append(routing_throughput(run_dir, args.ct))
        results["routing"] = {
            "runs": throughput,
            "median_move_per_s": statistics.median(r["move_per_s"] for r in throughput),
            "median_route_per_s": statistics.median(r["route_per_s"] for r in throughput),
            "median_ratio": statistics.median(r["ratio"] for r in throughput),
        }
        results["ingest"] = ingest_with_queue(work, args.small, args.queue, args.repeat)
    out = ROOT / "bench" / "results" / f"routing-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    routing, ingest = results["routing"], results["ingest"]
    print(
        f"routing: C-MOVE {routing['median_move_per_s']:.0f}/s, routed "  # type: ignore[index]
        f"{routing['median_route_per_s']:.0f}/s, ratio {routing['median_ratio']:.2f}x"
    )  # type: ignore[index]
    print(
        f"ingest: empty queue {ingest['empty_per_s']:.0f}/s, {args.queue} queued "  # type: ignore[index]
        f"{ingest['queued_per_s']:.0f}/s, ratio {ingest['ratio']:.2f}x"
    )  # type: ignore[index]
    print(f"results: {out}")


if __name__ == "__main__":
    main()
