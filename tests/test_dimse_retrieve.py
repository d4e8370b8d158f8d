"""C-MOVE (PS3.4 C.4.2) and C-GET (PS3.4 C.4.3) SCPs over real associations."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, build_context, build_role, evt
from pynetdicom.presentation import StoragePresentationContexts
from pynetdicom.sop_class import (
    PatientRootQueryRetrieveInformationModelGet as PatientRootGet,
)
from pynetdicom.sop_class import (
    PatientRootQueryRetrieveInformationModelMove as PatientRootMove,
)
from pynetdicom.sop_class import (
    StudyRootQueryRetrieveInformationModelGet as StudyRootGet,
)
from pynetdicom.sop_class import (
    StudyRootQueryRetrieveInformationModelMove as StudyRootMove,
)

from tests.conftest import BACKENDS, RunningServer, db_url_for, free_port, start_server
from tests.factory import bundled_files, ct_series, to_bytes, uid
from tests.test_dimse_support import associate, dcmtk, scraped_metric, server_archive, storescp

COMPRESSED = ("SC_rgb_dcmtk_+eb+cr.dcm", "MR_small_jp2klossless.dcm")  # JPEG baseline, J2K


@dataclass
class Destination:
    """An in-test Storage SCP accepting only uncompressed syntaxes."""

    port: int
    received: list[Dataset] = field(default_factory=list)
    fail_uids: set[str] = field(default_factory=set)
    delay: float = 0.0
    #: Abort the association instead of answering the C-STORE of this instance.
    abort_uid: str = ""


@dataclass
class Corpus:
    server: RunningServer
    study: str
    series: str
    sops: list[str]
    compressed_study: str
    dest_folder: Path
    dest_port: int
    py: Destination


def _handle(event: Any, dest: Destination) -> int:
    if dest.delay:
        time.sleep(dest.delay)
    ds = event.dataset
    ds.file_meta = event.file_meta
    if str(ds.SOPInstanceUID) in dest.fail_uids:
        return 0xA700
    if str(ds.SOPInstanceUID) == dest.abort_uid:
        event.assoc.abort()
        return 0x0000
    dest.received.append(ds)
    return 0x0000


@pytest.fixture(scope="module", params=BACKENDS)
def corpus(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Corpus]:
    base = tmp_path_factory.mktemp(f"retrieve-{request.param}")
    dest_port, py_port = free_port(), free_port()
    config = (
        f'[dimse.remotes.dest]\nae_title = "DEST"\nhost = "127.0.0.1"\nport = {dest_port}\n'
        f'[dimse.remotes.py]\nae_title = "PYDEST"\nhost = "127.0.0.1"\nport = {py_port}\n'
    )
    server = start_server(
        base / "data", db_url_for(str(request.param), base / "data"), config=config
    )
    py = Destination(py_port)
    ae = AE(ae_title="PYDEST")
    for cx in StoragePresentationContexts:
        ae.add_supported_context(
            cx.abstract_syntax, [ExplicitVRLittleEndian, ImplicitVRLittleEndian]
        )
    scp = ae.start_server(
        ("127.0.0.1", py_port), block=False, evt_handlers=[(evt.EVT_C_STORE, _handle, [py])]
    )
    study, series = uid(), uid()
    datasets = list(ct_series(12, 64, study_uid=study, series_uid=series))
    compressed_study = ""
    with server_archive(server) as archive:
        from storage.ingest import Origin

        for ds in datasets:
            assert archive.store_bytes(to_bytes(ds), Origin("test")).ok
        for path in bundled_files():
            if path.name in COMPRESSED:
                outcome = archive.store_bytes(path.read_bytes(), Origin("test"))
                assert outcome.ok, outcome.reason
                compressed_study = outcome.study_uid
    yield Corpus(
        server, study, series, [str(d.SOPInstanceUID) for d in datasets],
        compressed_study, base / "dest", dest_port, py,
    )  # fmt: skip
    scp.shutdown()
    server.stop()


@pytest.fixture
def dest_folder(corpus: Corpus) -> Iterator[Path]:
    """dcmtk storescp as the configured destination ``DEST``, writing into the folder."""
    with storescp(corpus.dest_port, corpus.dest_folder):
        yield corpus.dest_folder


def _move(
    corpus: Corpus, identifier: Dataset, destination: str, model: str = StudyRootMove
) -> list[tuple[Dataset, Dataset | None]]:
    assoc = associate(corpus.server.dimse_port, [build_context(model)])
    assert assoc.is_established
    try:
        return list(assoc.send_c_move(identifier, destination, model))
    finally:
        assoc.release()


def _series_identifier(corpus: Corpus) -> Dataset:
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "SERIES"
    identifier.StudyInstanceUID = corpus.study
    identifier.SeriesInstanceUID = corpus.series
    return identifier


@pytest.mark.dcmtk
def test_movescu_to_storescp(corpus: Corpus, dest_folder: Path, tmp_path: Path) -> None:
    """PS3.4 C.4.2: movescu moves a series to a configured destination (storescp); the
    data sets arrive as stored (sent from the stored files, dimse/sender.py)."""
    for old in corpus.dest_folder.iterdir():
        old.unlink()
    result = dcmtk(
        "movescu", "-S", "-aec", corpus.server.ae_title, "-aem", "DEST",
        "-k", "QueryRetrieveLevel=SERIES", "-k", f"StudyInstanceUID={corpus.study}",
        "-k", f"SeriesInstanceUID={corpus.series}",
        "127.0.0.1", str(corpus.server.dimse_port),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    received = {str(ds.SOPInstanceUID): ds for ds in map(dcmread, corpus.dest_folder.iterdir())}
    assert set(received) == set(corpus.sops)
    with server_archive(corpus.server) as archive:
        for sop, ds in received.items():
            (location,) = archive.locate_uids(sop_uid=sop)
            with archive.open_blob(location) as fh:
                stored = dcmread(fh)
            assert ds == stored  # every element of the data set, pixel data included


def test_move_counts_and_failed_uid_list(corpus: Corpus) -> None:
    """PS3.4 C.4.2.1.5 / C.4.2.3.1: pending responses count remaining, completed, failed
    and warning sub-operations; a partial failure ends with B000 and the Failed SOP
    Instance UID List."""
    corpus.py.received.clear()
    corpus.py.fail_uids = {corpus.sops[3]}
    try:
        responses = _move(corpus, _series_identifier(corpus), "PYDEST")
    finally:
        corpus.py.fail_uids = set()
    pending = [s for s, _ in responses[:-1]]
    # The first sub-operation is reported at once, the others at most every
    # dimse.pending_interval (optional reports, PS3.4 C.4.2.3.1); each adds up to all 12.
    assert pending and all(s.Status == 0xFF00 for s in pending)
    assert pending[0].NumberOfRemainingSuboperations == 11
    remaining = [s.NumberOfRemainingSuboperations for s in pending]
    assert remaining == sorted(remaining, reverse=True) and len(set(remaining)) == len(remaining)
    for s in pending:
        counts = (
            s.NumberOfRemainingSuboperations, s.NumberOfCompletedSuboperations,
            s.NumberOfFailedSuboperations, s.NumberOfWarningSuboperations,
        )  # fmt: skip
        assert sum(counts) == 12
    final, identifier = responses[-1]
    assert final.Status == 0xB000
    assert final.NumberOfCompletedSuboperations == 11
    assert final.NumberOfFailedSuboperations == 1
    assert identifier is not None
    assert identifier.FailedSOPInstanceUIDList == corpus.sops[3]
    assert len(corpus.py.received) == 11


def test_destination_abort_fails_the_remaining_sub_operations(corpus: Corpus) -> None:
    """PS3.4 C.4.2.3.1: a destination that aborts mid-move fails that sub-operation and
    the remaining ones (final B000 with their UIDs); the next C-MOVE works."""
    corpus.py.received.clear()
    corpus.py.abort_uid = corpus.sops[4]
    try:
        responses = _move(corpus, _series_identifier(corpus), "PYDEST")
    finally:
        corpus.py.abort_uid = ""
    final, identifier = responses[-1]
    assert final.Status == 0xB000
    assert final.NumberOfCompletedSuboperations == 4
    assert final.NumberOfFailedSuboperations == 8
    assert identifier is not None
    assert sorted(identifier.FailedSOPInstanceUIDList) == sorted(corpus.sops[4:])
    corpus.py.received.clear()
    final, _ = _move(corpus, _series_identifier(corpus), "PYDEST")[-1]
    assert final.Status == 0x0000
    assert final.NumberOfCompletedSuboperations == 12


def test_move_unknown_destination(corpus: Corpus) -> None:
    """PS3.4 C.4.2.1.5: A801 Refused: Move Destination unknown."""
    ((status, _),) = _move(corpus, _series_identifier(corpus), "NOBODY")
    assert status.Status == 0xA801


def test_move_converts_to_uncompressed_when_not_accepted(corpus: Corpus) -> None:
    """PS3.4 C.4.2.3.1 / PS3.5 10.1: a destination that accepts only Explicit/Implicit
    VR Little Endian receives compressed instances decompressed."""
    corpus.py.received.clear()
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.StudyInstanceUID = corpus.compressed_study
    responses = _move(corpus, identifier, "PYDEST")
    assert responses[-1][0].Status == 0x0000
    assert responses[-1][0].NumberOfCompletedSuboperations >= 1
    for ds in corpus.py.received:
        assert ds.file_meta.TransferSyntaxUID in (ExplicitVRLittleEndian, ImplicitVRLittleEndian)
        frame_bytes = ds.Rows * ds.Columns * ds.SamplesPerPixel * (ds.BitsAllocated // 8)
        assert len(ds.PixelData) >= frame_bytes * int(ds.get("NumberOfFrames", 1) or 1)


def test_cancel_stops_move(corpus: Corpus) -> None:
    """PS3.4 C.4.2.3.2 / PS3.7 9.3.4.3: C-CANCEL stops the sub-operations with FE00."""
    corpus.py.delay = 0.05
    try:
        assoc = associate(corpus.server.dimse_port, [build_context(StudyRootMove)])
        responses = assoc.send_c_move(_series_identifier(corpus), "PYDEST", StudyRootMove, msg_id=9)
        first, _ = next(responses)
        assert first.Status == 0xFF00
        assoc.send_c_cancel(9, assoc.accepted_contexts[0].context_id)
        rest = [s for s, _ in responses]
        assoc.release()
    finally:
        corpus.py.delay = 0.0
    assert rest[-1].Status == 0xFE00
    assert rest[-1].NumberOfRemainingSuboperations > 0


def test_patient_root_move(corpus: Corpus) -> None:
    """PS3.4 C.6.1.2: Patient Root C-MOVE at IMAGE level with a list of UIDs."""
    corpus.py.received.clear()
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "IMAGE"
    identifier.PatientID = "CT001"
    identifier.StudyInstanceUID = corpus.study
    identifier.SeriesInstanceUID = corpus.series
    identifier.SOPInstanceUID = corpus.sops[:2]
    responses = _move(corpus, identifier, "PYDEST", PatientRootMove)
    assert responses[-1][0].Status == 0x0000
    assert {str(d.SOPInstanceUID) for d in corpus.py.received} == set(corpus.sops[:2])


@pytest.mark.dcmtk
def test_getscu(corpus: Corpus, tmp_path: Path) -> None:
    """PS3.4 C.4.3: getscu retrieves a series over its own association."""
    out = tmp_path / "get"
    out.mkdir()
    result = dcmtk(
        "getscu", "-S", "-aec", corpus.server.ae_title, "-od", str(out),
        "-k", "QueryRetrieveLevel=SERIES", "-k", f"StudyInstanceUID={corpus.study}",
        "-k", f"SeriesInstanceUID={corpus.series}",
        "127.0.0.1", str(corpus.server.dimse_port),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert {str(dcmread(p).SOPInstanceUID) for p in out.iterdir()} == set(corpus.sops)


def test_get_with_role_selection_and_conversion(corpus: Corpus) -> None:
    """PS3.4 C.4.3.3 / PS3.7 D.3.3.4: C-GET sub-operations use the storage contexts the
    requestor offered with SCP role selection; compressed instances are decompressed
    when only Implicit VR Little Endian was offered."""
    received: list[Dataset] = []
    lock = threading.Lock()

    def on_store(event: Any) -> int:
        with lock:
            ds = event.dataset
            ds.file_meta = event.file_meta
            received.append(ds)
        return 0x0000

    ae = AE(ae_title="GETTER")
    ae.add_requested_context(StudyRootGet)
    sop_classes = {"1.2.840.10008.5.1.4.1.1.7", "1.2.840.10008.5.1.4.1.1.4"}
    for sop in sop_classes:
        ae.add_requested_context(sop, [ImplicitVRLittleEndian])
    roles = [build_role(sop, scp_role=True) for sop in sop_classes]
    assoc = ae.associate(
        "127.0.0.1", corpus.server.dimse_port, ae_title="NOCTIS", ext_neg=roles,
        evt_handlers=[(evt.EVT_C_STORE, on_store)],
    )  # fmt: skip
    assert assoc.is_established
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.StudyInstanceUID = corpus.compressed_study
    responses = list(assoc.send_c_get(identifier, StudyRootGet))
    assoc.release()
    final = responses[-1][0]
    assert final.Status == 0x0000, final
    assert final.NumberOfCompletedSuboperations == len(received) >= 1
    for ds in received:
        assert ds.file_meta.TransferSyntaxUID == ImplicitVRLittleEndian
        assert ds.pixel_array.size > 0


def _get(corpus: Corpus, identifier: Dataset, model: str = StudyRootGet) -> list[Any]:
    assoc = associate(corpus.server.dimse_port, [build_context(model)])
    assert assoc.is_established
    try:
        return list(assoc.send_c_get(identifier, model))
    finally:
        assoc.release()


def test_move_and_get_with_a_bad_identifier_fail(corpus: Corpus) -> None:
    """PS3.4 C.4.2.1.5 / C.4.3.1.4: an identifier that does not match the SOP class (no
    Query/Retrieve Level) is A900 with an Error Comment for C-MOVE and C-GET; nothing
    is sent."""
    bad = Dataset()
    bad.StudyInstanceUID = corpus.compressed_study
    before = len(corpus.py.received)
    final = _move(corpus, bad, "PYDEST")[-1][0]
    assert final.Status == 0xA900
    assert "Query/Retrieve Level" in final.ErrorComment
    final = _get(corpus, bad)[-1][0]
    assert final.Status == 0xA900
    assert "Query/Retrieve Level" in final.ErrorComment
    assert len(corpus.py.received) == before


def _identifier(level: str, **keys: str) -> Dataset:
    identifier = Dataset()
    identifier.QueryRetrieveLevel = level
    for keyword, value in keys.items():
        setattr(identifier, keyword, value)
    return identifier


#: (model, identifier keys, the key the Error Comment names) of retrieves without the
#: unique key of their level or of a level above (PS3.4 C.4.2.2.1).
_WIDENING = [
    (StudyRootMove, StudyRootGet, "STUDY", {}, "StudyInstanceUID"),
    (StudyRootMove, StudyRootGet, "STUDY", {"StudyInstanceUID": "*"}, "StudyInstanceUID"),
    (StudyRootMove, StudyRootGet, "STUDY", {"PatientID": "CT001"}, "StudyInstanceUID"),
    (StudyRootMove, StudyRootGet, "SERIES", {"SeriesInstanceUID": "SERIES"}, "StudyInstanceUID"),
    (StudyRootMove, StudyRootGet, "IMAGE", {"StudyInstanceUID": "STUDY"}, "SeriesInstanceUID"),
    (PatientRootMove, PatientRootGet, "PATIENT", {}, "PatientID"),
    (PatientRootMove, PatientRootGet, "STUDY", {"StudyInstanceUID": "STUDY"}, "PatientID"),
    (PatientRootMove, PatientRootGet, "STUDY", {"PatientID": "CT001"}, "StudyInstanceUID"),
]


@pytest.mark.parametrize(("move_model", "get_model", "level", "keys", "named"), _WIDENING)
def test_retrieve_without_its_unique_keys_moves_nothing(
    corpus: Corpus, move_model: str, get_model: str, level: str, keys: dict[str, str],
    named: str,
) -> None:  # fmt: skip
    """Issue 14 defect 3, PS3.4 C.4.2.2.1 (C-MOVE) and C.4.3.2.1 (C-GET): a hierarchical
    retrieve names the unique key of its level and of every level above (Patient ID
    first in the Patient Root model); without one it was widened to the whole archive.
    It is refused with A900 and an Error Comment naming the key; nothing is sent."""
    values = {"STUDY": corpus.study, "SERIES": corpus.series}
    keys = {k: values.get(v, v) for k, v in keys.items()}
    corpus.py.received.clear()
    final = _move(corpus, _identifier(level, **keys), "PYDEST", move_model)[-1][0]
    assert final.Status == 0xA900, final
    assert named in final.ErrorComment
    assert final.get("NumberOfCompletedSuboperations", 0) == 0
    final = _get(corpus, _identifier(level, **keys), get_model)[-1][0]
    assert final.Status == 0xA900, final
    assert named in final.ErrorComment
    assert final.get("NumberOfCompletedSuboperations", 0) == 0
    assert corpus.py.received == []


def test_series_level_retrieve_takes_a_list_of_series(corpus: Corpus) -> None:
    """PS3.4 C.4.2.2.1: the unique key of the retrieve level may be a list of UIDs."""
    corpus.py.received.clear()
    identifier = _identifier(
        "SERIES", StudyInstanceUID=corpus.study, SeriesInstanceUID=[corpus.series, uid()]
    )
    final = _move(corpus, identifier, "PYDEST")[-1][0]
    assert final.Status == 0x0000
    assert len(corpus.py.received) == len(corpus.sops)


@pytest.mark.dcmtk
def test_movescu_and_getscu_without_a_study_uid_move_nothing(
    corpus: Corpus, dest_folder: Path, tmp_path: Path
) -> None:
    """The issue's case with dcmtk: ``movescu -S -k QueryRetrieveLevel=STUDY`` without a
    Study Instance UID moved every instance of the archive; now nothing arrives and the
    failure is reported (PS3.4 C.4.2.2.1). The same for getscu and for Patient Root
    (``-P``) at PATIENT level without a Patient ID."""
    for old in dest_folder.iterdir():
        old.unlink()
    for model in ("-S", "-P"):
        level = "STUDY" if model == "-S" else "PATIENT"
        result = dcmtk(
            "movescu", "-v", model, "-aec", corpus.server.ae_title, "-aem", "DEST",
            "-k", f"QueryRetrieveLevel={level}", "127.0.0.1", str(corpus.server.dimse_port),
        )  # fmt: skip
        output = (result.stdout + result.stderr).lower()
        assert "datasetdoesnotmatchsopclass" in output, output
    assert list(dest_folder.iterdir()) == []
    out = tmp_path / "get"
    out.mkdir()
    result = dcmtk(
        "getscu", "-v", "-S", "-aec", corpus.server.ae_title, "-od", str(out),
        "-k", "QueryRetrieveLevel=STUDY", "127.0.0.1", str(corpus.server.dimse_port),
    )  # fmt: skip
    output = (result.stdout + result.stderr).lower()
    assert "datasetdoesnotmatchsopclass" in output, output
    assert list(out.iterdir()) == []


def test_failed_sub_operations_are_counted_and_logged(corpus: Corpus) -> None:
    """Issue 14 defect 7: a C-MOVE whose sub-operations fail is counted with the status
    of its final response (B000 some failed, A702 all failed, PS3.4 C.4.2.1.5), never as
    Success; each failed sub-operation is counted in noctis_dimse_suboperations and
    logged with its reason (the destination's status)."""
    server = corpus.server
    before_b000 = scraped_metric(
        server, "noctis_dimse_operations_total", operation="C-MOVE", status="0xB000"
    )
    before_a702 = scraped_metric(
        server, "noctis_dimse_operations_total", operation="C-MOVE", status="0xA702"
    )
    before_failed = scraped_metric(
        server, "noctis_dimse_suboperations_total", operation="C-MOVE", outcome="failed"
    )
    corpus.py.fail_uids = {corpus.sops[0]}
    try:
        assert _move(corpus, _series_identifier(corpus), "PYDEST")[-1][0].Status == 0xB000
        corpus.py.fail_uids = set(corpus.sops)
        assert _move(corpus, _series_identifier(corpus), "PYDEST")[-1][0].Status == 0xA702
    finally:
        corpus.py.fail_uids = set()
    after = scraped_metric(
        server, "noctis_dimse_operations_total", operation="C-MOVE", status="0xB000"
    )
    assert after == before_b000 + 1
    after = scraped_metric(
        server, "noctis_dimse_operations_total", operation="C-MOVE", status="0xA702"
    )
    assert after == before_a702 + 1
    failed = scraped_metric(
        server, "noctis_dimse_suboperations_total", operation="C-MOVE", outcome="failed"
    )
    assert failed == before_failed + 1 + len(corpus.sops)
    log = server.log()
    assert "C-MOVE sub-operation failed: the destination answered 0xA700" in log
    assert f"{len(corpus.sops)} failed" in log


def test_failed_get_sub_operations_are_counted(corpus: Corpus) -> None:
    """The same for C-GET (PS3.4 C.4.3.1.4): a requestor refusing its C-STORE
    sub-operations makes the C-GET end A702, counted and logged with the reason."""
    server = corpus.server
    before = scraped_metric(
        server, "noctis_dimse_operations_total", operation="C-GET", status="0xA702"
    )
    before_failed = scraped_metric(
        server, "noctis_dimse_suboperations_total", operation="C-GET", outcome="failed"
    )
    ae = AE(ae_title="GETTER")
    ae.add_requested_context(StudyRootGet)
    ae.add_requested_context("1.2.840.10008.5.1.4.1.1.2", [ExplicitVRLittleEndian])
    assoc = ae.associate(
        "127.0.0.1", server.dimse_port, ae_title="NOCTIS",
        ext_neg=[build_role("1.2.840.10008.5.1.4.1.1.2", scp_role=True)],
        evt_handlers=[(evt.EVT_C_STORE, lambda event: 0xA700)],
    )  # fmt: skip
    assert assoc.is_established
    try:
        responses = list(assoc.send_c_get(_series_identifier(corpus), StudyRootGet))
    finally:
        assoc.release()
    assert responses[-1][0].Status == 0xA702
    after = scraped_metric(
        server, "noctis_dimse_operations_total", operation="C-GET", status="0xA702"
    )
    assert after == before + 1
    failed = scraped_metric(
        server, "noctis_dimse_suboperations_total", operation="C-GET", outcome="failed"
    )
    assert failed == before_failed + len(corpus.sops)
    assert "C-GET sub-operation failed: the destination answered 0xA700" in server.log()
