"""The fast path's gate, switch and counters (issue 12).

The server of this module runs as the environment says: with the fast path (the
default) a plain C-STORE, C-FIND and C-MOVE are each served by their fast path, never
handed back to pynetdicom (a silent fallback, after a pynetdicom upgrade say, fails
here); with ``NOCTIS_DIMSE_FAST_PATH=0`` (``make test-stock-dimse``) no fast path
serves anything and the same exchanges succeed on stock pynetdicom.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pynetdicom
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE, build_context, build_role, evt
from pynetdicom.sop_class import (
    SecondaryCaptureImageStorage,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

from dimse import fastpath
from dimse.fastpath.privates import VALIDATED_VERSION
from noctis_pacs.core.settings import load_settings
from storage.part10 import data_set_offset
from tests.conftest import RunningServer, db_url_for, free_port, start_server
from tests.factory import make_dataset, uid
from tests.test_dimse_support import (
    FAST_PATH,
    ON_PYNETDICOM,
    associate,
    dcmtk,
    server_archive,
    storescp,
    write_files,
)

FAST = FAST_PATH
_SAMPLE = re.compile(r"^noctis_dimse_fast_path_total\{([^}]*)\} ([0-9.e+]+)$")


def _counts(server: RunningServer) -> dict[tuple[str, str], float]:
    text = httpx.get(f"{server.http_url}/metrics", timeout=10).text
    found: dict[tuple[str, str], float] = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match:
            labels = dict(re.findall(r'(\w+)="(\w*)"', match[1]))
            found[(labels["path"], labels["outcome"])] = float(match[2])
    return found


def _delta(
    before: dict[tuple[str, str], float], after: dict[tuple[str, str], float], path: str
) -> tuple[float, float]:
    return tuple(  # type: ignore[return-value]
        after.get((path, outcome), 0.0) - before.get((path, outcome), 0.0)
        for outcome in ("hit", "fallback")
    )


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, int, Path]]:
    base = tmp_path_factory.mktemp("fastpath")
    dest_port = free_port()
    config = f'[dimse.remotes.dest]\nae_title = "DEST"\nhost = "127.0.0.1"\nport = {dest_port}\n'
    server = start_server(base / "data", db_url_for("sqlite", base / "data"), config=config)
    # Explicit VR little endian preferred: the syntax the C-MOVE test stores in, so its
    # sub-operations go out as stored (``+xa`` would choose deflated, a conversion).
    # ``--fork``: each association in its own child, so that one left hanging (a failed
    # attempt waiting out its time-out) does not refuse the next (a rerun: A801).
    with storescp(dest_port, base / "dest", "+xe", "--fork"):
        yield server, dest_port, base / "dest"
    server.stop()


@pytest.mark.dcmtk
def test_the_server_says_which_mode_it_runs(served: tuple[RunningServer, int, Path]) -> None:
    server = served[0]
    assert ("DIMSE fast paths off" in server.log()) is not FAST


@pytest.mark.dcmtk
def test_a_plain_c_store_is_served_by_the_fast_path(
    served: tuple[RunningServer, int, Path], tmp_path: Path
) -> None:
    """PS3.4 B.2: storescu and pynetdicom SCUs store; with the fast path each C-STORE is
    served by it, none handed to pynetdicom: on a storage association by the direct path
    (``direct``; one that has not arrived within its peek budget on a loaded machine by
    pynetdicom's layer with the receive and store paths instead), on an association that
    proposes a query context too by pynetdicom's layer with those paths."""
    server = served[0]
    files = write_files(tmp_path / "in", [make_dataset(study_uid=uid()) for _ in range(3)])
    for send in ("storescu", "scu"):
        before = _counts(server)
        if send == "storescu":
            done = dcmtk(
                "storescu", "-aec", "NOCTIS", "127.0.0.1", str(server.dimse_port), *map(str, files)
            )
            assert done.returncode == 0, done.stderr
        else:
            assoc = associate(server.dimse_port, [build_context(SecondaryCaptureImageStorage)])
            assert assoc.send_c_store(make_dataset(study_uid=uid())).Status == 0x0000
            assoc.release()
        stores = 3 if send == "storescu" else 1
        after = _counts(server)
        direct, declined = _delta(before, after, "storage")
        assert declined == 0
        assert direct == (1.0 if FAST else 0.0) or (FAST and direct == 0.0)
        for path in ("receive", "store"):
            hits, fallbacks = _delta(before, after, path)
            assert fallbacks == 0, path
            assert hits == (stores * (1 - direct) if FAST else 0), path
    before = _counts(server)
    both = [build_context(SecondaryCaptureImageStorage), build_context(ON_PYNETDICOM)]
    assoc = associate(server.dimse_port, both)
    assert assoc.send_c_store(make_dataset(study_uid=uid())).Status == 0x0000
    assoc.release()
    after = _counts(server)
    assert _delta(before, after, "storage") == (0.0, 0.0)
    for path in ("receive", "store"):
        assert _delta(before, after, path) == ((1.0, 0.0) if FAST else (0.0, 0.0)), path


@pytest.mark.dcmtk
def test_c_find_responses_and_c_move_sub_operations_use_the_fast_path(
    served: tuple[RunningServer, int, Path],
) -> None:
    """PS3.4 C.4.1 / C.4.2: C-FIND pending responses are written directly, C-MOVE
    sub-operations sent from the stored files (with the fast path)."""
    server, _, dest = served
    study = uid()
    # Stored in a syntax storescp accepts, so that each instance goes out as stored.
    storage = build_context(SecondaryCaptureImageStorage, [ExplicitVRLittleEndian])
    assoc = associate(server.dimse_port, [storage])
    for n in range(3):
        assert assoc.send_c_store(make_dataset(study_uid=study, instance_number=n)).Status == 0
    assoc.release()
    before = _counts(server)
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = study
    contexts = [
        build_context(StudyRootQueryRetrieveInformationModelFind),
        build_context(StudyRootQueryRetrieveInformationModelMove),
    ]
    assoc = associate(server.dimse_port, contexts)
    answers = list(assoc.send_c_find(query, StudyRootQueryRetrieveInformationModelFind))
    assert [int(status.Status) for status, _ in answers] == [0xFF00, 0x0000]
    found = _counts(server)
    moved = list(assoc.send_c_move(query, "DEST", StudyRootQueryRetrieveInformationModelMove))
    assoc.release()
    final = moved[-1][0]
    assert int(final.Status) == 0x0000 and int(final.NumberOfCompletedSuboperations) == 3
    after = _counts(server)
    assert _delta(before, found, "response") == ((2.0 if FAST else 0.0), 0.0)
    assert _delta(before, after, "move") == ((3.0 if FAST else 0.0), 0.0)


def test_the_gate_passes_only_the_validated_version_with_the_switch_on() -> None:
    assert fastpath.gate(enabled=True, version=VALIDATED_VERSION) is None
    assert fastpath.gate(enabled=False, version=VALIDATED_VERSION) == "dimse.fast_path is off"
    reason = fastpath.gate(enabled=True, version="3.1.0")
    assert reason is not None and "3.1.0" in reason and "stock pynetdicom" in reason
    assert pynetdicom.__version__ == VALIDATED_VERSION  # the pin of pyproject.toml


def test_the_switch_is_a_setting_and_an_environment_variable() -> None:
    assert load_settings(environ={}).dimse.fast_path is True
    assert load_settings(environ={"NOCTIS_DIMSE_FAST_PATH": "0"}).dimse.fast_path is False


def test_another_pynetdicom_version_runs_stock_with_one_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from tests.test_dimse_support import in_process_dimse

    monkeypatch.setattr(pynetdicom, "__version__", "3.0.5")
    caplog.set_level(logging.WARNING, logger="noctis.dimse.fastpath")
    with in_process_dimse(tmp_path) as (server, _archive):
        assoc = associate(server.port, [build_context(Verification)])
        assert assoc.send_c_echo().Status == 0x0000
        (accepted,) = server._server.active_associations
        assert fastpath.of(accepted) is None
        assoc.release()
    warnings = [r for r in caplog.records if r.name == "noctis.dimse.fastpath"]
    assert len(warnings) == 1 and "3.0.5" in warnings[0].getMessage()


@pytest.mark.dcmtk
def test_c_get_sub_operations_are_sent_from_the_stored_files(
    served: tuple[RunningServer, int, Path], tmp_path: Path
) -> None:
    """PS3.4 C.4.3: C-GET sub-operations on the requestor's association (SCP role, PS3.7
    D.3.3.4) are sent from the stored files with the fast path; dcmtk's getscu receives
    every instance with the stored data set byte for byte, and its pending C-GET
    responses arrive intact between the sub-operations."""
    server, _, _ = served
    study = uid()
    storage = build_context(SecondaryCaptureImageStorage, [ExplicitVRLittleEndian])
    assoc = associate(server.dimse_port, [storage])
    sent = [make_dataset(study_uid=study, instance_number=n, pixel_seed=n) for n in range(5)]
    for ds in sent:
        assert assoc.send_c_store(ds).Status == 0
    assoc.release()
    before = _counts(server)
    out = tmp_path / "got"
    out.mkdir()
    done = dcmtk(
        "getscu", "-S", "-aec", "NOCTIS", "+B", "-od", str(out),
        "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study}",
        "127.0.0.1", str(server.dimse_port),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    after = _counts(server)
    received = {dcmread(p).SOPInstanceUID: p for p in out.iterdir()}
    assert set(received) == {ds.SOPInstanceUID for ds in sent}
    with server_archive(server) as archive:
        for location in archive.locate_uids(study):
            got = received[location.sop_uid].read_bytes()
            with archive.open_blob(location) as fh:
                want = fh.read()
            assert got[data_set_offset(got) or 0 :] == want[data_set_offset(want) or 0 :]
    assert _delta(before, after, "get") == ((5.0 if FAST else 0.0), 0.0)


def test_c_cancel_during_a_c_get_sent_from_files(
    served: tuple[RunningServer, int, Path],
) -> None:
    """PS3.4 C.4.3.3.1 / PS3.7 9.3.3.3: a C-CANCEL-RQ the requestor sends while it holds
    a sub-operation's C-STORE (so that it reaches the sender before the C-STORE-RSP) stops
    the C-GET with Cancel (FE00) and the association goes on."""
    server, _, _ = served
    study = uid()
    storage = build_context(SecondaryCaptureImageStorage, [ExplicitVRLittleEndian])
    assoc = associate(server.dimse_port, [storage])
    for n in range(8):
        assert assoc.send_c_store(make_dataset(study_uid=study, instance_number=n)).Status == 0
    assoc.release()
    received: list[str] = []
    get_context: list[int] = []

    def on_store(event: Any) -> int:
        received.append(str(event.request.AffectedSOPInstanceUID))
        if len(received) == 2:
            event.assoc.send_c_cancel(7, get_context[0])
        return 0x0000

    ae = AE(ae_title="GETTER")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    ae.add_requested_context(Verification)
    ae.add_requested_context(SecondaryCaptureImageStorage, [ExplicitVRLittleEndian])
    role = build_role(SecondaryCaptureImageStorage, scp_role=True)
    assoc = ae.associate(
        "127.0.0.1",
        server.dimse_port,
        ae_title="NOCTIS",
        ext_neg=[role],
        evt_handlers=[(evt.EVT_C_STORE, on_store)],
    )
    assert assoc.is_established
    get_context.append(
        next(
            cx.context_id
            for cx in assoc.accepted_contexts
            if cx.abstract_syntax == StudyRootQueryRetrieveInformationModelGet
        )
    )
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = study
    answers = list(assoc.send_c_get(query, StudyRootQueryRetrieveInformationModelGet, msg_id=7))
    final = answers[-1][0]
    assert int(final.Status) == 0xFE00
    assert 2 <= len(received) < 8
    assert assoc.send_c_echo().Status == 0x0000  # still serving
    assoc.release()


@pytest.mark.dcmtk
def test_c_echo_is_answered_on_the_network_thread(
    served: tuple[RunningServer, int, Path],
) -> None:
    """PS3.4 A / PS3.7 9.3.5: C-ECHO answered Success with the response written directly
    (with the fast path), several on one association with their Message IDs: on an
    association that proposes a query context too (pynetdicom) by the network thread of pynetdicom's association (``inline``);
    on a Verification-only one (echoscu) by the Verification path."""
    server, _, _ = served
    before = _counts(server)
    port = str(server.dimse_port)
    done = dcmtk("echoscu", "-aec", "NOCTIS", "--repeat", "3", "127.0.0.1", port)
    assert done.returncode == 0, done.stderr
    both = [build_context(Verification), build_context(ON_PYNETDICOM)]
    assoc = associate(server.dimse_port, both)
    for message_id in (5, 6, 7):
        assert assoc.send_c_echo(msg_id=message_id).Status == 0x0000
    assoc.release()
    after = _counts(server)
    hits, fallbacks = _delta(before, after, "echo")
    # The first request of an association can reach the server before it has marked the
    # association established; that one is the reactor's (inline.py), the others inline.
    assert fallbacks == 0.0
    assert (2.0 <= hits <= 3.0) if FAST else hits == 0.0
    served_here, declined = _delta(before, after, "verification")
    assert (served_here, declined) == ((1.0, 0.0) if FAST else (0.0, 0.0))
