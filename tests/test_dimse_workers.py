"""``dimse.workers``: the serving process hands accepted connections to worker
processes, each to the process with the fewest open associations."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from pynetdicom import build_context
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind as StudyRootFind

from noctis_pacs.core.settings import auto_workers
from tests.conftest import RunningServer
from tests.factory import make_dataset, uid
from tests.test_dimse_support import (
    FAST_PATH,
    RawEchoAssociation,
    associate,
    connections_by_process,
    dcmtk,
    process_tree,
    scraped_metric,
    server_archive,
    write_files,
)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _find_study_level(port: int, study: str) -> int:
    assoc = associate(port, [build_context(StudyRootFind)])
    assert assoc.is_established
    try:
        query = Dataset()
        query.QueryRetrieveLevel = "IMAGE"
        query.StudyInstanceUID = study
        query.SeriesInstanceUID = ""
        query.SOPInstanceUID = ""
        return sum(
            1
            for status, identifier in assoc.send_c_find(query, StudyRootFind)
            if status and status.Status in (0xFF00, 0xFF01) and identifier is not None
        )
    finally:
        assoc.release()


@pytest.mark.dcmtk
def test_workers_share_the_port_and_stop_with_the_server(
    server_factory: Callable[..., RunningServer], tmp_path: Path
) -> None:
    server = server_factory(dimse_extra="workers = 2")
    workers = process_tree(server.process.pid) - {server.process.pid}
    assert workers, "no DIMSE worker process was started"

    study = uid()
    folders, sent = [], []
    for n in range(4):
        datasets = [make_dataset(study_uid=study, instance_number=k) for k in range(12)]
        sent += [str(ds.SOPInstanceUID) for ds in datasets]
        folders.append(tmp_path / f"assoc{n}")
        write_files(folders[-1], datasets)
    results: list[int] = []

    def run(folder: Path) -> None:
        out = dcmtk(
            "storescu", "-aec", server.ae_title, "127.0.0.1", str(server.dimse_port),
            "+sd", str(folder),
        )  # fmt: skip
        results.append(out.returncode)

    # Two rounds of four concurrent associations.
    for _ in range(2):
        threads = [threading.Thread(target=run, args=(f,)) for f in folders]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    assert results == [0] * 8

    with server_archive(server) as archive:
        located = archive.locate_uids(study_uid=study)
        assert sorted(loc.sop_uid for loc in located) == sorted(sent)  # each stored once
        assert archive.stats()["instances"] == len(sent)
    # Queryable whichever process serves the association, several times over.
    for _ in range(4):
        assert _find_study_level(server.dimse_port, study) == len(sent)

    server.stop()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(_alive(pid) for pid in workers):
        time.sleep(0.1)
    assert not [pid for pid in workers if _alive(pid)], "worker processes outlived the server"


def _open_echo_associations(port: int, count: int) -> list[RawEchoAssociation]:
    opened = [RawEchoAssociation(port) for _ in range(count)]
    assert all(assoc.is_established for assoc in opened)
    return opened


def _spread(server: RunningServer, expected_total: int) -> list[int]:
    """Open DIMSE connections per process of the server, waiting until all are seen."""
    deadline = time.monotonic() + 10
    while True:
        counts = connections_by_process(process_tree(server.process.pid), server.dimse_port)
        if sum(counts.values()) == expected_total or time.monotonic() > deadline:
            return sorted(counts.values())
        time.sleep(0.05)


def test_connections_are_spread_evenly_and_a_dead_worker_is_bypassed(
    server_factory: Callable[..., RunningServer],
) -> None:
    """Six associations held open on three processes: two each (the hand-off goes by
    open association count, never by address hash). A worker killed outright is
    bypassed: later associations are served, and nothing else stops."""
    server = server_factory(dimse_extra="workers = 3")
    processes = process_tree(server.process.pid)
    assert len(processes) >= 3, "expected the serving process and two workers"

    held = _open_echo_associations(server.dimse_port, 6)
    try:
        assert _spread(server, 6)[-3:] == [2, 2, 2]
        for assoc in held:
            assert assoc.send_c_echo() == 0x0000
    finally:
        for assoc in held:
            assoc.release()
    assert sum(_spread(server, 0)) == 0

    # Released associations are counted as closed: another six spread evenly again.
    held = _open_echo_associations(server.dimse_port, 6)
    try:
        assert _spread(server, 6)[-3:] == [2, 2, 2]
    finally:
        for assoc in held:
            assoc.release()

    victim = max(pid for pid in processes if pid != server.process.pid)
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _alive(victim):
        time.sleep(0.05)
    for _ in range(6):
        assoc = associate(server.dimse_port)
        assert assoc.is_established
        assert assoc.send_c_echo().Status == 0x0000
        assoc.release()
    assert server.process.poll() is None


def _echo_counts(server: RunningServer) -> tuple[float, float]:
    """C-ECHO successes and timed C-ECHO operations as /metrics reports them."""
    return (
        scraped_metric(
            server, "noctis_dimse_operations_total", operation="C-ECHO", status="0x0000"
        ),
        scraped_metric(server, "noctis_dimse_duration_seconds_count", operation="C-ECHO"),
    )


def test_metrics_count_the_associations_every_worker_served(
    server_factory: Callable[..., RunningServer],
) -> None:
    """/metrics of the serving process adds the workers' counters and histograms to
    its own: six associations spread over three processes, two C-ECHOs each, are
    twelve. A worker that has died is counted as it last answered."""
    server = server_factory(dimse_extra="workers = 3")
    assert _echo_counts(server) == (0.0, 0.0)
    held = _open_echo_associations(server.dimse_port, 6)
    try:
        assert _spread(server, 6)[-3:] == [2, 2, 2]
        for assoc in held:
            for _ in range(2):
                assert assoc.send_c_echo() == 0x0000
    finally:
        for assoc in held:
            assoc.release()
    assert _echo_counts(server) == (12.0, 12.0)

    victim = max(pid for pid in process_tree(server.process.pid) if pid != server.process.pid)
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _alive(victim):
        time.sleep(0.05)
    assoc = associate(server.dimse_port)
    assert assoc.send_c_echo().Status == 0x0000
    assoc.release()
    assert _echo_counts(server) == (13.0, 13.0)


def test_the_default_runs_one_dimse_process_per_usable_cpu(
    server_factory: Callable[..., RunningServer],
) -> None:
    """``dimse.workers = "auto"`` (the shipped default; the suite's other servers run one
    process unless they say otherwise): the serving process and auto_workers() - 1
    workers, every one serving."""
    server = server_factory(dimse_extra='workers = "auto"')
    expected = auto_workers()
    assert len(process_tree(server.process.pid)) >= expected
    held = _open_echo_associations(server.dimse_port, 2 * expected)
    try:
        assert _spread(server, 2 * expected)[-expected:] == [2] * expected
        for assoc in held:
            assert assoc.send_c_echo() == 0x0000
    finally:
        for assoc in held:
            assoc.release()
    assert _echo_counts(server) == (2.0 * expected, 2.0 * expected)


@pytest.mark.skipif(
    not FAST_PATH,
    reason="stock pynetdicom: an association counts as ended at EVT_CONN_CLOSE, after its "
    "teardown, so a back-to-back client may be handed to a worker (served all the same)",
)
def test_a_lone_client_is_served_by_the_serving_process_without_hand_off(
    server_factory: Callable[..., RunningServer],
) -> None:
    """Bare TCP probes, then one association after another, each opened the moment the
    last was released: each finds the serving process idle (an association counts as
    ended when it is released or its connection closes, not once pynetdicom's teardown
    sleeps or the ACSE time-out are over), so none pays a hand-off to a worker."""
    from bench import echo_client

    server = server_factory(dimse_extra="workers = 2")
    # A bare TCP probe (closed before any A-ASSOCIATE-RQ, as start_server's readiness
    # check and a load balancer's health check do) counts as ended when it closes, not
    # after the ACSE time-out (30 s).
    for _ in range(3):
        socket.create_connection(("127.0.0.1", server.dimse_port)).close()
    time.sleep(0.3)
    serving = server.process.pid
    held_by: list[int] = []
    for number in range(30):
        sock = echo_client.associate("127.0.0.1", server.dimse_port, called="NOCTIS")
        counts = connections_by_process(process_tree(serving), server.dimse_port)
        held_by.extend(pid for pid, held in counts.items() if held)
        echo_client.echo(sock, number + 1)
        echo_client.release(sock)
    assert held_by == [serving] * 30
