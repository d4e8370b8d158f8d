"""De-identification jobs over the admin API on both index backends, checked attribute
by attribute against PS3.15 Table E.1-1 (Basic Profile column, and the Retain
Longitudinal Temporal Information with Full Dates and Clean Descriptors Option
columns) for the attributes the profile here handles; UIDs replaced consistently
within one export (references too); pixel data unchanged; burned-in annotation
refused or warned (PS3.15 E.1.1); malformed requests queue nothing."""

from __future__ import annotations

import io
import time
import zipfile
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from tests.conftest import BACKENDS, RunningServer, db_url_for, start_server
from tests.factory import make_dataset, to_bytes, uid
from tests.test_dimse_support import server_archive

CONFIG = "[jobs]\npoll_interval_seconds = 0.2\n"

#: The identifying attributes the test study carries, with PS3.15 Table E.1-1's action
#: in the Basic Profile column (the first of a compound action is the one applied).
BASIC = {
    "PatientName": "Z", "PatientID": "Z", "PatientBirthDate": "Z", "PatientSex": "Z",
    "PatientAge": "X", "PatientWeight": "X", "PatientAddress": "X", "OtherPatientIDs": "X",
    "PatientComments": "X", "AccessionNumber": "Z", "StudyID": "Z",
    "StudyDate": "Z", "StudyTime": "Z", "SeriesDate": "X", "SeriesTime": "X",
    "AcquisitionDate": "X", "ContentDate": "Z", "ContentTime": "Z",
    "InstitutionName": "X", "InstitutionAddress": "X", "ReferringPhysicianName": "Z",
    "PerformingPhysicianName": "X", "OperatorsName": "X", "StationName": "X",
    "DeviceSerialNumber": "X", "StudyDescription": "X", "SeriesDescription": "X",
    "ImageComments": "X", "ProtocolName": "X",
    "StudyInstanceUID": "U", "SeriesInstanceUID": "U", "SOPInstanceUID": "U",
    "FrameOfReferenceUID": "U",
}  # fmt: skip
#: Where the two options' columns differ from the Basic Profile's.
RETAIN_DATES = {
    "StudyDate": "K", "StudyTime": "K", "SeriesDate": "K", "SeriesTime": "K",
    "AcquisitionDate": "K", "ContentDate": "K", "ContentTime": "K",
}  # fmt: skip
CLEAN = {
    "StudyDescription": "C", "SeriesDescription": "C", "ImageComments": "C",
    "ProtocolName": "C", "PatientComments": "C",
}  # fmt: skip
#: What a Z action may leave: zero length, or a dummy (PS3.15 E.1.1).
Z_DUMMIES = ("", "ANONYMOUS", "ANON", "19000101", "000000")
#: Values that identify the patient (what a cleaned descriptor must not keep).
IDENTIFYING = ("Jones^Harriet", "Jones", "Harriet", "HJ-4711", "ACC-99")
#: Never kept whatever the options: not attributes of a de-identified data set.
PRIVATE_CREATOR = "ACME 1.0"


@pytest.fixture(scope="module", params=BACKENDS)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    base = tmp_path_factory.mktemp(f"deid-{request.param}")
    running = start_server(
        base / "data", db_url_for(str(request.param), base / "data"), config=CONFIG
    )
    yield running
    running.stop()


def _study(server: RunningServer, *, burned_in: bool = False) -> tuple[str, list[Dataset]]:
    """Two series of two instances with every attribute of ``BASIC``, a private element
    and a reference from each second instance to the first of its series."""
    from storage.ingest import Origin

    study = uid()
    frame = uid()
    datasets = []
    for series_number in (1, 2):
        series = uid()
        first_sop = ""
        for number in (1, 2):
            ds = make_dataset(
                study_uid=study, series_uid=series, patient_name="Jones^Harriet",
                patient_id="HJ-4711", accession="ACC-99", instance_number=number,
                series_number=series_number, pixel_seed=series_number * 10 + number,
                modality="OT",
            )  # fmt: skip
            ds.PatientAge = "054Y"
            ds.PatientWeight = "71"
            ds.PatientAddress = "1 High Street"
            ds.OtherPatientIDs = "OLD-1"
            ds.PatientComments = "Harriet Jones prefers mornings"
            ds.StudyID = "S1"
            ds.SeriesDate, ds.SeriesTime = "20240115", "101600"
            ds.AcquisitionDate = "20240115"
            ds.ContentDate, ds.ContentTime = "20240115", "101700"
            ds.InstitutionName = "St Elsewhere"
            ds.InstitutionAddress = "2 Low Road"
            ds.PerformingPhysicianName = "Perf^Doc"
            ds.OperatorsName = "Op^Tech"
            ds.StationName = "CT01"
            ds.DeviceSerialNumber = "SN-1"
            ds.StudyDescription = "Head CT for Jones^Harriet"
            ds.SeriesDescription = f"Axial {series_number} HJ-4711"
            ds.ImageComments = "follow-up ACC-99 stable"
            ds.ProtocolName = "HEAD ROUTINE"
            ds.FrameOfReferenceUID = frame
            ds.private_block(0x0009, PRIVATE_CREATOR, create=True).add_new(0x01, "LO", "Jones")
            if burned_in:
                ds.BurnedInAnnotation = "YES"
            if number == 1:
                first_sop = str(ds.SOPInstanceUID)
            else:
                ref = Dataset()
                ref.ReferencedSOPClassUID = ds.SOPClassUID
                ref.ReferencedSOPInstanceUID = first_sop
                ds.ReferencedImageSequence = Sequence([ref])
            datasets.append(ds)
    with server_archive(server) as archive:
        for ds in datasets:
            assert archive.store_bytes(to_bytes(ds), Origin("test")).ok
    return study, datasets


def _job(server: RunningServer, body: dict[str, Any]) -> dict[str, Any]:
    answer = httpx.post(f"{server.http_url}/api/jobs/deidentify", json=body, timeout=30)
    assert answer.status_code == 202, answer.text
    job_id = answer.json()["id"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        job = httpx.get(f"{server.http_url}/api/jobs/{job_id}", timeout=10).json()
        if job["state"] in ("succeeded", "failed"):
            return dict(job)
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish")


def _from_zip(server: RunningServer, job_id: int) -> list[Dataset]:
    answer = httpx.get(f"{server.http_url}/api/jobs/{job_id}/result", timeout=30)
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(answer.content)) as zf:
        names = zf.namelist()
        assert "DICOMDIR" in names  # PS3.10 media
        return [dcmread(io.BytesIO(zf.read(n))) for n in names if n != "DICOMDIR"]


def _check(original: Dataset, out: Dataset, actions: dict[str, str]) -> None:
    """Each attribute of ``actions`` in ``out`` as its Table E.1-1 action says."""
    for keyword, action in actions.items():
        before = original.get(keyword)
        after = out.get(keyword)
        where = f"{keyword} ({action})"
        if action == "X":
            assert keyword not in out, where
        elif action == "Z":
            # Zero length, or a dummy that is none of the patient's values.
            dummy = str(after or "") in Z_DUMMIES or str(after).startswith("ANON-")
            assert after is None or dummy, where
            assert str(after or "") != str(before), where
        elif action == "K":
            assert str(after) == str(before), where
        elif action == "C":
            assert keyword in out, where
            assert not any(value in str(after) for value in IDENTIFYING), (where, after)
        elif action == "U":
            assert str(after) != str(before) and str(after).replace(".", "").isdigit(), where
    assert out.get((0x0009, 0x0010)) is None and out.get((0x0009, 0x1001)) is None
    assert out.PatientIdentityRemoved == "YES"


def _pair(originals: list[Dataset], outs: list[Dataset]) -> list[tuple[Dataset, Dataset]]:
    """Each output with its original, by pixel data (which must be unchanged)."""
    by_pixels = {bytes(ds.PixelData): ds for ds in originals}
    pairs = [(by_pixels[bytes(out.PixelData)], out) for out in outs]
    assert len(pairs) == len(originals) == len({id(o) for o, _ in pairs})
    for original, out in pairs:
        assert out.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID
    return pairs


def test_basic_profile_zip_attribute_by_attribute(server: RunningServer) -> None:
    study, originals = _study(server)
    job = _job(server, {"study": study, "output": "zip"})
    assert job["state"] == "succeeded", job
    pairs = _pair(originals, _from_zip(server, job["id"]))
    uid_map: dict[str, str] = {}
    for original, out in pairs:
        _check(original, out, BASIC)
        for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
            old, new = str(original.get(keyword)), str(out.get(keyword))
            assert uid_map.setdefault(old, new) == new, f"{keyword} mapped twice"
        assert out.file_meta.MediaStorageSOPInstanceUID == out.SOPInstanceUID
        codes = [item.CodeValue for item in out.DeidentificationMethodCodeSequence]
        assert codes == ["113100"] and out.LongitudinalTemporalInformationModified == "REMOVED"
    assert len({str(out.StudyInstanceUID) for _, out in pairs}) == 1
    assert len({str(out.SeriesInstanceUID) for _, out in pairs}) == 2
    assert len({str(out.FrameOfReferenceUID) for _, out in pairs}) == 1
    for original, out in pairs:
        if "ReferencedImageSequence" in original:
            old_ref = str(original.ReferencedImageSequence[0].ReferencedSOPInstanceUID)
            assert str(out.ReferencedImageSequence[0].ReferencedSOPInstanceUID) == uid_map[old_ref]
    # The original study is untouched.
    with server_archive(server) as archive:
        assert len(archive.locate_uids(study)) == 4
        records = [r for r in archive.audit_records(action="admin.deidentify")]
    assert any(study in r.study_uids and r.outcome == "success" for r in records)


def test_options_retain_dates_and_clean_descriptors_stored_as_a_new_study(
    server: RunningServer,
) -> None:
    study, originals = _study(server)
    options = {"retain_longitudinal_dates": True, "clean_descriptors": True,
               "patient_id": "TRIAL-7"}  # fmt: skip
    job = _job(server, {"study": study, "output": "store", "options": options})
    assert job["state"] == "succeeded", job
    summary = httpx.get(f"{server.http_url}/api/jobs/{job['id']}/result", timeout=10).json()
    (new_study,) = summary["study_uids"]
    assert new_study != study
    with server_archive(server) as archive:
        outs = []
        for location in archive.locate_uids(new_study):
            with archive.open_blob(location) as fh:
                outs.append(dcmread(fh))
    actions = {**BASIC, **RETAIN_DATES, **CLEAN}
    del actions["PatientID"]  # Z with the dummy the request gave (checked below)
    for original, out in _pair(originals, outs):
        _check(original, out, actions)
        assert out.PatientID == "TRIAL-7"
        assert "Head CT" in out.StudyDescription  # cleaned, not removed
        codes = {item.CodeValue for item in out.DeidentificationMethodCodeSequence}
        assert codes == {"113100", "113106", "113105"}
        assert out.LongitudinalTemporalInformationModified == "UNMODIFIED"


def test_burned_in_annotation_is_refused_or_warned(server: RunningServer) -> None:
    study, originals = _study(server, burned_in=True)
    refused = _job(server, {"study": study})
    assert refused["state"] == "failed" and "burned-in annotation" in refused["error"]
    answer = httpx.get(f"{server.http_url}/api/jobs/{refused['id']}/result", timeout=10)
    assert answer.status_code == 404
    warned = _job(server, {"study": study, "options": {"burned_in": "warn"}})
    assert warned["state"] == "succeeded"
    _pair(originals, _from_zip(server, warned["id"]))
    detail = httpx.get(f"{server.http_url}/api/jobs/{warned['id']}", timeout=10).json()
    assert all("burned-in" in item["detail"] for item in detail["items"])


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        ({"output": "zip"}, 400, "study"),
        ({"study": "1.2.3", "output": "cd"}, 400, "output must be"),
        ({"study": "1.2.3", "options": {"retain_everything": True}}, 400, "unknown field"),
        ({"study": "1.2.3", "options": {"burned_in": "ignore"}}, 400, "burned_in"),
        ({"study": "1.2.3", "options": {"clean_descriptors": "yes"}}, 400, "true or false"),
        ({"study": "not a uid"}, 400, "UID"),
        ({"study": "1.2.826.0.1.3680043.10.999.1"}, 404, "not in the archive"),
    ],
)
def test_a_malformed_request_queues_nothing(
    server: RunningServer, body: dict[str, Any], status: int, reason: str
) -> None:
    before = httpx.get(f"{server.http_url}/api/jobs?limit=1000", timeout=10).json()
    answer = httpx.post(f"{server.http_url}/api/jobs/deidentify", json=body, timeout=10)
    assert answer.status_code == status and reason in answer.json()["detail"], answer.text
    assert httpx.get(f"{server.http_url}/api/jobs?limit=1000", timeout=10).json() == before
