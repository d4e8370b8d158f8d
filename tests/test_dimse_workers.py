"""``dimse.workers``: several listener processes share the DIMSE port (SO_REUSEPORT)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from pydicom.dataset import Dataset
from pynetdicom import build_context
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind as StudyRootFind

from tests.conftest import RunningServer
from tests.factory import make_dataset, uid
from tests.test_dimse_support import associate, dcmtk, server_archive, write_files


def _descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (from /proc)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier}
        found |= frontier
    return found


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


def test_workers_share_the_port_and_stop_with_the_server(
    server_factory: Callable[..., RunningServer], tmp_path: Path
) -> None:
    server = server_factory(dimse_extra="workers = 2")
    workers = _descendants(server.process.pid)
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

    # Two rounds of four concurrent associations, so that both listeners are likely used.
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
    # Queryable through whichever listener the kernel picks, several times over.
    for _ in range(4):
        assert _find_study_level(server.dimse_port, study) == len(sent)

    server.stop()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(_alive(pid) for pid in workers):
        time.sleep(0.1)
    assert not [pid for pid in workers if _alive(pid)], "worker processes outlived the server"
