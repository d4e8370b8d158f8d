"""C-FIND SCP (PS3.4 C.4.1) over real associations with findscu and pynetdicom."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from pynetdicom import build_context
from pynetdicom.sop_class import (
    PatientRootQueryRetrieveInformationModelFind as PatientRootFind,
)
from pynetdicom.sop_class import (
    StudyRootQueryRetrieveInformationModelFind as StudyRootFind,
)

from tests.conftest import BACKENDS, RunningServer, db_url_for, start_server
from tests.factory import make_dataset, to_bytes, uid
from tests.test_dimse_support import associate, dcmtk, read_responses, server_archive

TAG = uuid.uuid4().hex[:8].upper()
PID_A, PID_B, PID_C = f"A{TAG}", f"B{TAG}", f"C{TAG}"


@pytest.fixture(scope="module", params=BACKENDS)
def corpus(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RunningServer, dict[str, str]]]:
    """A server holding three patients, four studies, with known attributes."""
    base = tmp_path_factory.mktemp(f"find-{request.param}")
    server = start_server(base / "data", db_url_for(str(request.param), base / "data"))
    ids = {name: uid() for name in ("st1", "st2", "st3", "st4", "se1", "se2", "se3", "se4")}
    ids.update({f"sop{n}": uid() for n in range(7)})
    specs = [
        ("Müller^Hans", PID_A, "st1", "se1", "CT", "20240110", ["sop0", "sop1", "sop2"]),
        ("Müller^Hans", PID_A, "st2", "se2", "MR", "20240220", ["sop3", "sop4"]),
        ("Smith^Anna", PID_B, "st3", "se3", "CT", "20230505", ["sop5"]),
        ("Ελληνικό^Όνομα", PID_C, "st4", "se4", "US", "20220101", ["sop6"]),
    ]
    with server_archive(server) as archive:
        for name, pid, study, series, modality, date, sops in specs:
            for number, sop in enumerate(sops, 1):
                ds = make_dataset(
                    patient_name=name, patient_id=pid, study_uid=ids[study],
                    series_uid=ids[series], sop_uid=ids[sop], modality=modality,
                    study_date=date, instance_number=number, accession=f"ACC{study}",
                )  # fmt: skip
                ds.SpecificCharacterSet = "ISO_IR 192"
                if study == "st3":
                    item = Dataset()
                    item.RequestedProcedureID = "RP42"
                    item.ScheduledProcedureStepID = "SPS1"
                    ds.RequestAttributesSequence = [item]
                outcome = archive.store_bytes(to_bytes(ds), origin=_origin())
                assert outcome.ok, outcome.reason
    yield server, ids
    server.stop()


def _origin() -> object:
    from storage.ingest import Origin

    return Origin("test")


def _findscu(server: RunningServer, tmp_path: Path, root: str, *keys: str) -> list[Dataset]:
    out = tmp_path / f"rsp-{uuid.uuid4().hex[:6]}"
    out.mkdir()
    args = [root, "-aec", server.ae_title, "-X", "-od", str(out)]
    for key in keys:
        args += ["-k", key]
    result = dcmtk("findscu", *args, "127.0.0.1", str(server.dimse_port))
    assert result.returncode == 0, result.stderr
    return read_responses(out)


CASES = [
    # (root, level, keys, expected unique values of the level's key, which key)
    ("-P", "PATIENT", [f"PatientID={PID_A}", "PatientName"], "PatientID", {PID_A}),
    ("-P", "STUDY", [f"PatientID={PID_A}", "StudyDate=20240201-", "StudyInstanceUID"],
     "StudyInstanceUID", {"st2"}),
    ("-P", "SERIES", [f"PatientID={PID_A}", "StudyInstanceUID=@st1", "Modality",
                      "SeriesInstanceUID"], "SeriesInstanceUID", {"se1"}),
    ("-P", "IMAGE", [f"PatientID={PID_A}", "StudyInstanceUID=@st1", "SeriesInstanceUID=@se1",
                     "SOPInstanceUID=@sop0\\@sop2"], "SOPInstanceUID", {"sop0", "sop2"}),
    ("-S", "STUDY", [f"PatientID={PID_A}", "PatientName=M*ller*", "StudyInstanceUID"],
     "StudyInstanceUID", {"st1", "st2"}),
    ("-S", "STUDY", [f"PatientID={PID_A}\\{PID_B}", "ModalitiesInStudy=CT", "StudyInstanceUID"],
     "StudyInstanceUID", {"st1", "st3"}),
    ("-S", "STUDY", [f"PatientID={PID_B}", "RequestAttributesSequence[0].RequestedProcedureID=RP42",
                     "StudyInstanceUID"], "StudyInstanceUID", {"st3"}),
    ("-S", "STUDY", [f"PatientID={PID_B}", "StudyDate=-20231231", "AccessionNumber",
                     "StudyInstanceUID"], "StudyInstanceUID", {"st3"}),
    ("-S", "SERIES", ["StudyInstanceUID=@st2", "Modality=MR", "SeriesInstanceUID"],
     "SeriesInstanceUID", {"se2"}),
    ("-S", "IMAGE", ["StudyInstanceUID=@st1", "SeriesInstanceUID=@se1", "SOPInstanceUID",
                     "InstanceNumber=2"], "SOPInstanceUID", {"sop1"}),
]  # fmt: skip


@pytest.mark.dcmtk
@pytest.mark.parametrize(("root", "level", "keys", "key", "expected"), CASES)
def test_findscu_levels_roots_and_matching_types(
    corpus: tuple[RunningServer, dict[str, str]],
    tmp_path: Path,
    root: str,
    level: str,
    keys: list[str],
    key: str,
    expected: set[str],
) -> None:
    """PS3.4 C.4.1.2 (hierarchical search) at each level of Patient Root (C.6.1) and
    Study Root (C.6.2), with single value, list of UID, wildcard, range, universal and
    sequence matching (C.2.2.2.1-6)."""
    server, ids = corpus
    resolved = []
    for text in keys:
        for name, value in sorted(ids.items(), key=lambda kv: -len(kv[0])):
            text = text.replace(f"@{name}", value)
        resolved.append(text)
    responses = _findscu(server, tmp_path, root, f"QueryRetrieveLevel={level}", *resolved)
    want = {ids.get(v, v) for v in expected}
    assert {str(r.get(key)) for r in responses} == want
    for rsp in responses:
        assert rsp.QueryRetrieveLevel == level


def _find(server: RunningServer, identifier: Dataset, model: str = StudyRootFind) -> list:
    assoc = associate(server.dimse_port, [build_context(model)])
    assert assoc.is_established
    try:
        return list(assoc.send_c_find(identifier, model))
    finally:
        assoc.release()


def test_return_keys_unknown_keys_empty_and_charset(
    corpus: tuple[RunningServer, dict[str, str]],
) -> None:
    """PS3.4 C.4.1.1.3.2: exactly the requested keys come back, keys the archive does not
    keep come back empty, and the response's Specific Character Set can express its
    values (the request's when possible, else ISO_IR 192)."""
    server, ids = corpus
    query = Dataset()
    query.SpecificCharacterSet = "ISO_IR 100"
    query.QueryRetrieveLevel = "STUDY"
    query.PatientID = PID_A
    query.PatientName = "Müller*"
    query.StudyInstanceUID = ""
    query.PatientComments = ""  # not kept by the index: returned empty
    query.NumberOfStudyRelatedInstances = ""
    query.ModalitiesInStudy = ""
    responses = _find(server, query)
    statuses = [s.Status for s, _ in responses]
    assert statuses[-1] == 0x0000 and statuses[:-1] == [0xFF00, 0xFF00]
    found = {str(i.StudyInstanceUID): i for _, i in responses[:-1]}
    assert set(found) == {ids["st1"], ids["st2"]}
    rsp = found[ids["st1"]]
    assert rsp.SpecificCharacterSet == "ISO_IR 100"
    assert str(rsp.PatientName) == "Müller^Hans"
    assert rsp.PatientComments in ("", None)
    assert int(rsp.NumberOfStudyRelatedInstances) == 3
    assert rsp.ModalitiesInStudy == "CT"
    assert "StudyDate" not in rsp  # not requested: not returned
    greek = Dataset()
    greek.SpecificCharacterSet = "ISO_IR 100"
    greek.QueryRetrieveLevel = "PATIENT"
    greek.PatientID = PID_C
    greek.PatientName = ""
    (_, rsp), (final, _) = _find(server, greek, PatientRootFind)
    assert final.Status == 0x0000
    assert rsp.SpecificCharacterSet == "ISO_IR 192"
    assert str(rsp.PatientName) == "Ελληνικό^Όνομα"


def test_bad_identifier_and_unsupported_key(
    corpus: tuple[RunningServer, dict[str, str]],
) -> None:
    """PS3.4 C.4.1.1.4: A900 when the identifier does not fit the model (Study Root has
    no PATIENT level), FF01 pending when an optional key cannot be matched."""
    server, ids = corpus
    query = Dataset()
    query.QueryRetrieveLevel = "PATIENT"
    query.PatientID = PID_A
    ((status, _),) = _find(server, query, StudyRootFind)
    assert status.Status == 0xA900
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = ids["st3"]
    query.PatientComments = "something"
    responses = _find(server, query)
    assert [s.Status for s, _ in responses] == [0xFF01, 0x0000]


def test_cancel_stops_find(corpus: tuple[RunningServer, dict[str, str]]) -> None:
    """PS3.4 C.4.1.3.2 / PS3.7 9.3.2.3: C-CANCEL ends the matches early with FE00."""
    server, _ = corpus
    study, series = uid(), uid()
    with server_archive(server) as archive:
        for number in range(300):
            ds = make_dataset(study_uid=study, series_uid=series, instance_number=number)
            assert archive.store_bytes(to_bytes(ds), origin=_origin()).ok
    query = Dataset()
    query.QueryRetrieveLevel = "IMAGE"
    query.StudyInstanceUID = study
    query.SOPInstanceUID = ""
    assoc = associate(server.dimse_port, [build_context(StudyRootFind)])
    responses = assoc.send_c_find(query, StudyRootFind, msg_id=7)
    cx_id = assoc.accepted_contexts[0].context_id
    first_status, _ = next(responses)
    assert first_status.Status == 0xFF00
    assoc.send_c_cancel(7, cx_id)
    rest = [s.Status for s, _ in responses]
    assoc.release()
    assert rest[-1] == 0xFE00
    assert len(rest) < 300
