"""Modify the attributes of a study / series / instance over the admin API, on both
index backends: PS3.3 C.12.1.1.1 (a changed instance is a new SOP Instance: new UIDs,
mapped consistently, unless keep_uids; never keep_uids for a change of how the pixel
data are interpreted, C.7.6.3), the old version removed or kept as configured or
asked, pixel data copied as stored, a malformed request changes nothing, audited."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pydicom import dcmread

from tests.conftest import BACKENDS, RunningServer, db_url_for, start_server
from tests.factory import ct_series, to_bytes, uid
from tests.test_dimse_support import server_archive


@pytest.fixture(scope="module", params=BACKENDS)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    base = tmp_path_factory.mktemp(f"modify-{request.param}")
    running = start_server(base / "data", db_url_for(str(request.param), base / "data"))
    yield running
    running.stop()


def _store(server: RunningServer, series_count: int = 2, slices: int = 3) -> str:
    from storage.ingest import Origin

    study = uid()
    with server_archive(server) as archive:
        for _ in range(series_count):
            for ds in ct_series(slices, 16, study_uid=study, series_uid=uid()):
                ds.PatientName = "Before^Name"
                ds.InstitutionName = "General Hospital"
                assert archive.store_bytes(to_bytes(ds), Origin("test")).ok
    return study


def _instances(server: RunningServer, study: str) -> list[Any]:
    """Every stored instance of ``study`` read back from its blob."""
    with server_archive(server) as archive:
        out = []
        for location in archive.locate_uids(study):
            with archive.open_blob(location) as fh:
                out.append(dcmread(fh))
        return out


def _post(server: RunningServer, path: str, body: Any) -> httpx.Response:
    return httpx.post(f"{server.http_url}/api/studies/{path}/modify", json=body, timeout=60)


def _snapshot(server: RunningServer) -> list[tuple[str, str, int, str]]:
    with server_archive(server) as archive:
        return sorted(archive.indexed_blobs())


def test_modify_a_study_makes_new_uids_and_removes_the_original(server: RunningServer) -> None:
    study = _store(server)
    before = {str(ds.SOPInstanceUID): ds for ds in _instances(server, study)}
    answer = _post(
        server,
        study,
        {"replace": {"PatientName": "After^Name", "00081030": "Corrected"},
         "remove": ["InstitutionName"]},
    )  # fmt: skip
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert result["level"] == "study" and result["instances"] == 6
    new_study = result["new_uid"]
    assert new_study != study and result["study_uid"] == new_study
    assert _instances(server, study) == []  # the original is removed (the default)
    after = _instances(server, new_study)
    assert len(after) == 6
    old_series = {str(ds.SeriesInstanceUID) for ds in before.values()}
    new_series = {str(ds.SeriesInstanceUID) for ds in after}
    assert len(new_series) == 2 and not new_series & old_series
    assert not {str(ds.SOPInstanceUID) for ds in after} & set(before)
    originals = sorted(
        before.values(), key=lambda ds: (str(ds.SeriesInstanceUID), ds.InstanceNumber)
    )
    for ds in after:
        assert str(ds.PatientName) == "After^Name"
        assert ds.StudyDescription == "Corrected"
        assert "InstitutionName" not in ds
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        # The pixel data are copied as stored, in the stored transfer syntax.
        twin = next(o for o in originals if o.InstanceNumber == ds.InstanceNumber
                    and o.PixelData == ds.PixelData)  # fmt: skip
        assert ds.file_meta.TransferSyntaxUID == twin.file_meta.TransferSyntaxUID
    # Instances of one old series share one new series (the mapping is consistent).
    by_new_series: dict[str, set[str]] = {}
    for ds in after:
        by_new_series.setdefault(str(ds.SeriesInstanceUID), set()).add(str(ds.SeriesDescription))
    assert all(len(v) == 1 for v in by_new_series.values())
    with server_archive(server) as archive:
        records = [r for r in archive.audit_records(action="admin.modify") if study in r.study_uids]
    assert records and records[-1].outcome == "success"
    assert new_study in records[-1].study_uids
    assert "PatientName" in records[-1].detail and "After^Name" not in records[-1].detail


def test_keep_original_keeps_both_versions(server: RunningServer) -> None:
    study = _store(server, 1, 2)
    answer = _post(server, study, {"replace": {"PatientID": "NEW-ID"}, "keep_original": True})
    assert answer.status_code == 200, answer.text
    assert answer.json()["kept_original"] is True
    assert len(_instances(server, study)) == 2
    assert {ds.PatientID for ds in _instances(server, answer.json()["new_uid"])} == {"NEW-ID"}


def test_keep_uids_corrects_in_place(server: RunningServer) -> None:
    study = _store(server, 1, 3)
    series = str(_instances(server, study)[0].SeriesInstanceUID)
    sops = {str(ds.SOPInstanceUID) for ds in _instances(server, study)}
    answer = _post(
        server, f"{study}/series/{series}",
        {"replace": {"PatientName": "Corrected^Name"}, "keep_uids": True},
    )  # fmt: skip
    assert answer.status_code == 200, answer.text
    assert answer.json()["new_uid"] == series
    after = _instances(server, study)
    assert {str(ds.SOPInstanceUID) for ds in after} == sops
    assert {str(ds.PatientName) for ds in after} == {"Corrected^Name"}


def test_modify_an_instance_gives_it_a_new_sop_instance_uid(server: RunningServer) -> None:
    study = _store(server, 1, 2)
    first = _instances(server, study)[0]
    series, sop = str(first.SeriesInstanceUID), str(first.SOPInstanceUID)
    answer = _post(server, f"{study}/series/{series}/instances/{sop}",
                   {"replace": {"ImageComments": "checked"}})  # fmt: skip
    assert answer.status_code == 200, answer.text
    new_sop = answer.json()["new_uid"]
    assert new_sop != sop
    after = {str(ds.SOPInstanceUID): ds for ds in _instances(server, study)}
    assert sop not in after and after[new_sop].ImageComments == "checked"
    assert str(after[new_sop].SeriesInstanceUID) == series and len(after) == 2


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"replace": {"NoSuchKeyword": "x"}}, "not a DICOM attribute"),
        ({"replace": {"StudyInstanceUID": "1.2.3"}}, "not modified by a request"),
        ({"remove": ["PixelData"]}, "not modified by a request"),
        ({"replace": {"PatientBirthDate": "yesterday"}}, "Invalid value for VR DA"),
        ({"replace": {"PatientName": "A" * 70}}, "exceeds"),
        ({"replace": {"Rows": 8}, "keep_uids": True}, "keep_uids is refused: Rows"),
        ({"replace": {"ReferencedSeriesSequence": "x"}}, "cannot be set"),
        ({"replace": {"PatientID": "X"}, "remove": ["PatientID"]}, "both replaced and removed"),
        ({"replace": {"PatientID": "X"}, "colour": "red"}, "unknown field"),
        ({"replace": {"00020010": "1.2"}}, "File Meta"),
        ({}, "nothing to modify"),
        ([1, 2], "JSON object"),
    ],
)  # fmt: skip
def test_a_malformed_modify_request_changes_nothing(
    server: RunningServer, body: Any, reason: str
) -> None:
    study = _store(server, 1, 2)
    before = _snapshot(server)
    answer = _post(server, study, body)
    assert answer.status_code == 400, answer.text
    assert reason in answer.json()["detail"]
    assert _snapshot(server) == before


def test_modify_of_a_missing_study_is_404(server: RunningServer) -> None:
    answer = _post(server, uid(), {"replace": {"PatientID": "X"}})
    assert answer.status_code == 404
    assert _post(server, "not-a-uid", {"replace": {"PatientID": "X"}}).status_code == 400
