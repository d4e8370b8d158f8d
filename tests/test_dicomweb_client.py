"""DICOMweb through dicomweb-client, against the real server on both index backends.

Every call the client offers: store, search (fuzzy, limit, offset, fields),
retrieve study / series / instance, metadata, frames, bulk data.
"""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest
from dicomweb_client import DICOMwebClient
from pydicom import dcmread
from pydicom.dataset import Dataset

from tests.conftest import RunningServer
from tests.dicomweb_support import fresh_bundled
from tests.factory import make_dataset, to_bytes, uid


@pytest.fixture(scope="module")
def client(server: RunningServer) -> DICOMwebClient:
    return DICOMwebClient(server.dicomweb_url)


@pytest.fixture(scope="module")
def study(client: DICOMwebClient) -> Iterator[list[Dataset]]:
    """One study of two series (3 + 2 instances) stored through STOW-RS."""
    study_uid = uid()
    name = f"Zyx{uid()[-6:]}^Quentin"
    series = [uid(), uid()]
    datasets = [
        make_dataset(
            study_uid=study_uid,
            series_uid=series[0 if n < 3 else 1],
            instance_number=n + 1,
            series_number=1 if n < 3 else 2,
            patient_name=name,
            patient_id=f"P{study_uid[-8:]}",
            accession=f"A{study_uid[-8:]}",
            modality="CT" if n < 3 else "MR",
            pixel_seed=n,
        )
        for n in range(5)
    ]
    # Round trip through bytes: what the server stores is what pydicom writes.
    datasets = [dcmread(io.BytesIO(to_bytes(ds))) for ds in datasets]
    response = client.store_instances(datasets)
    assert len(response.ReferencedSOPSequence) == 5
    yield datasets


def test_store_response(client: DICOMwebClient) -> None:
    """PS3.18 10.5.3: Referenced SOP Sequence with Retrieve URLs; study Retrieve URL."""
    ds = make_dataset()
    response = client.store_instances([dcmread(io.BytesIO(to_bytes(ds)))])
    item = response.ReferencedSOPSequence[0]
    assert item.ReferencedSOPInstanceUID == ds.SOPInstanceUID
    assert item.ReferencedSOPClassUID == ds.SOPClassUID
    assert item.RetrieveURL.endswith(f"/instances/{ds.SOPInstanceUID}")
    assert response.RetrieveURL.endswith(f"/studies/{ds.StudyInstanceUID}")
    assert "FailedSOPSequence" not in response


def test_search_studies_with_fuzzy_and_fields(client: DICOMwebClient, study: list[Dataset]) -> None:
    """PS3.18 10.6.1.2: fuzzymatching, includefield; Table 10.6.3-3 return attributes."""
    name = str(study[0].PatientName)
    family = name.split("^")[0]
    found = client.search_for_studies(
        search_filters={"PatientName": family[:4].lower()},
        fuzzymatching=True,
        fields=["StudyDescription", "00080090"],
    )
    assert [f["0020000D"]["Value"][0] for f in found] == [study[0].StudyInstanceUID]
    result = found[0]
    assert result["00100010"]["Value"][0]["Alphabetic"] == name
    assert sorted(result["00080061"]["Value"]) == ["CT", "MR"]  # ModalitiesInStudy
    assert result["00201206"]["Value"] == [2]  # NumberOfStudyRelatedSeries
    assert result["00201208"]["Value"] == [5]  # NumberOfStudyRelatedInstances
    assert result["00081190"]["Value"][0].endswith(f"/studies/{study[0].StudyInstanceUID}")
    assert "00081030" in result and "00080090" in result
    exact = client.search_for_studies(search_filters={"PatientName": family.lower()})
    assert exact == []  # without fuzzy matching a bare family name is not a PN match


def test_search_series_and_instances_paging(client: DICOMwebClient, study: list[Dataset]) -> None:
    """PS3.18 10.6.1.2.2 limit / offset, Tables 10.6.3-4 / -5 return attributes."""
    study_uid = study[0].StudyInstanceUID
    series = client.search_for_series(study_instance_uid=study_uid)
    assert [s["00200011"]["Value"][0] for s in series] == [1, 2]
    assert series[0]["00201209"]["Value"] == [3]  # NumberOfSeriesRelatedInstances
    assert series[0]["00080060"]["Value"] == ["CT"]
    pages = [
        client.search_for_instances(study_instance_uid=study_uid, limit=2, offset=offset)
        for offset in (0, 2, 4)
    ]
    assert [len(p) for p in pages] == [2, 2, 1]
    uids = [i["00080018"]["Value"][0] for page in pages for i in page]
    assert sorted(uids) == sorted(ds.SOPInstanceUID for ds in study)
    one = client.search_for_instances(
        study_instance_uid=study_uid,
        series_instance_uid=study[3].SeriesInstanceUID,
        search_filters={"InstanceNumber": "5"},
    )
    assert [i["00080018"]["Value"][0] for i in one] == [study[4].SOPInstanceUID]
    assert one[0]["00280010"]["Value"] == [64]  # Rows
    everywhere = client.search_for_series(
        search_filters={"Modality": "MR", "PatientID": study[0].PatientID}
    )
    assert [s["0020000E"]["Value"][0] for s in everywhere] == [study[3].SeriesInstanceUID]
    assert "00100010" in everywhere[0]  # study attributes when no study in the path


def test_retrieve_study_series_instance(client: DICOMwebClient, study: list[Dataset]) -> None:
    """PS3.18 10.4.1.1.1: instances come back unchanged."""
    study_uid = study[0].StudyInstanceUID
    by_uid = {ds.SOPInstanceUID: ds for ds in study}
    everything = client.retrieve_study(study_uid)
    assert sorted(ds.SOPInstanceUID for ds in everything) == sorted(by_uid)
    for ds in everything:
        assert ds.PixelData == by_uid[ds.SOPInstanceUID].PixelData
    series = client.retrieve_series(study_uid, study[3].SeriesInstanceUID)
    assert sorted(ds.SOPInstanceUID for ds in series) == sorted(
        ds.SOPInstanceUID for ds in study[3:]
    )
    one = client.retrieve_instance(study_uid, study[1].SeriesInstanceUID, study[1].SOPInstanceUID)
    assert one.SOPInstanceUID == study[1].SOPInstanceUID
    assert one.PixelData == study[1].PixelData


def test_metadata_frames_bulkdata(client: DICOMwebClient, study: list[Dataset]) -> None:
    """PS3.18 10.4.1.1.2 (metadata), 10.4.1.1.4 (frames), 10.4.1.1.5 (bulk data URIs)."""
    ds = study[2]
    study_meta = client.retrieve_study_metadata(ds.StudyInstanceUID)
    assert len(study_meta) == 5
    series_meta = client.retrieve_series_metadata(ds.StudyInstanceUID, ds.SeriesInstanceUID)
    assert len(series_meta) == 3
    meta = client.retrieve_instance_metadata(
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID
    )
    assert meta["00080018"]["Value"] == [ds.SOPInstanceUID]
    uri = meta["7FE00010"]["BulkDataURI"]
    assert uri.startswith(client.base_url) or uri.startswith("http://127.0.0.1:")
    assert uri.endswith(f"/instances/{ds.SOPInstanceUID}/bulk/7FE00010")
    frames = client.retrieve_instance_frames(
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID, frame_numbers=[1]
    )
    assert frames == [ds.PixelData]
    bulk = client.retrieve_bulkdata(uri)
    assert b"".join(bulk) == ds.PixelData


def test_compressed_frames_in_their_media_type(client: DICOMwebClient) -> None:
    """PS3.18 8.7.3.5: compressed frames as stored (image/jpeg), or decoded on request."""
    data = fresh_bundled("SC_rgb_jpeg_dcmtk.dcm")
    ds = dcmread(io.BytesIO(data))
    client.store_instances([ds])
    args = (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
    jpeg = client.retrieve_instance_frames(*args, frame_numbers=[1], media_types=("image/jpeg",))
    assert jpeg[0][:2] == b"\xff\xd8"
    decoded = client.retrieve_instance_frames(
        *args, frame_numbers=[1], media_types=(("application/octet-stream", "1.2.840.10008.1.2.1"),)
    )
    assert len(decoded[0]) == ds.Rows * ds.Columns * ds.SamplesPerPixel
    as_stored = client.retrieve_instance(*args, media_types=(("application/dicom", "*"),))
    assert as_stored.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.50"
    native = client.retrieve_instance(
        *args, media_types=(("application/dicom", "1.2.840.10008.1.2.1"),)
    )
    assert native.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
    assert native.SOPInstanceUID == ds.SOPInstanceUID
    assert len(native.PixelData) == ds.Rows * ds.Columns * 3
