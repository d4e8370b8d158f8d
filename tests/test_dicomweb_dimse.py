"""One archive, two protocols: what DIMSE stores DICOMweb serves, byte for byte, and back."""

from __future__ import annotations

import io

import httpx
from pydicom import dcmread
from pydicom.dataset import Dataset
from pynetdicom import AE, StoragePresentationContexts, evt
from pynetdicom.sop_class import CTImageStorage, StudyRootQueryRetrieveInformationModelGet

from tests.conftest import RunningServer
from tests.dicomweb_support import split_multipart
from tests.factory import ct_series, to_bytes


def test_dimse_store_then_dicomweb(server: RunningServer) -> None:
    """C-STORE (PS3.4 B) in, QIDO-RS / WADO-RS (PS3.18 10.6, 10.4) out, unchanged bytes."""
    ds = next(ct_series(slices=1))
    ae = AE(ae_title="TESTSCU")
    ae.add_requested_context(CTImageStorage, ds.file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", server.dimse_port, ae_title=server.ae_title)
    assert assoc.is_established, "the DIMSE service refused the association"
    try:
        assert assoc.accepted_contexts, "no storage presentation context accepted"
        status = assoc.send_c_store(ds)
    finally:
        assoc.release()
    assert status.Status == 0x0000
    url = server.dicomweb_url
    found = httpx.get(f"{url}/instances", params={"SOPInstanceUID": ds.SOPInstanceUID}).json()
    assert len(found) == 1
    path = f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"
    response = httpx.get(url + path, headers={"Accept": "application/dicom"})
    retrieved = dcmread(io.BytesIO(response.content))
    # DIMSE sends the dataset; the archive adds its own File Meta header. The dataset
    # bytes after the header are exactly what pydicom encoded for the association.
    sent = io.BytesIO()
    ds.save_as(sent, enforce_file_format=True)
    assert retrieved.PixelData == ds.PixelData
    original = dcmread(io.BytesIO(sent.getvalue()))
    assert [e.tag for e in retrieved] == [e.tag for e in original]
    assert all(retrieved[e.tag].value == e.value for e in original)


def test_dicomweb_store_then_dimse_get(server: RunningServer) -> None:
    """STOW-RS (PS3.18 10.5) in, C-GET (PS3.4 C.4.3) out: the same dataset elements."""
    ds = next(ct_series(slices=1))
    data = to_bytes(ds)
    response = httpx.post(
        f"{server.dicomweb_url}/studies",
        content=data,
        headers={"Content-Type": "application/dicom"},
    )
    assert response.status_code == 200
    received: list[Dataset] = []

    def on_store(event: evt.Event) -> int:
        received.append(event.dataset)
        return 0x0000

    ae = AE(ae_title="TESTGET")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    for context in StoragePresentationContexts:
        ae.add_requested_context(context.abstract_syntax)
    from pynetdicom import build_role

    roles = [build_role(CTImageStorage, scp_role=True)]
    assoc = ae.associate(
        "127.0.0.1",
        server.dimse_port,
        ae_title=server.ae_title,
        ext_neg=roles,
        evt_handlers=[(evt.EVT_C_STORE, on_store)],
    )
    assert assoc.is_established, "the DIMSE service refused the association"
    try:
        get_context = [
            c
            for c in assoc.accepted_contexts
            if c.abstract_syntax == StudyRootQueryRetrieveInformationModelGet
        ]
        assert get_context, "Study Root GET context not accepted"
        query = Dataset()
        query.QueryRetrieveLevel = "IMAGE"
        query.StudyInstanceUID = ds.StudyInstanceUID
        query.SeriesInstanceUID = ds.SeriesInstanceUID
        query.SOPInstanceUID = ds.SOPInstanceUID
        statuses = [
            s.Status
            for s, _ in assoc.send_c_get(query, StudyRootQueryRetrieveInformationModelGet)
            if s
        ]
    finally:
        assoc.release()
    assert statuses[-1] == 0x0000
    assert len(received) == 1
    assert received[0].PixelData == ds.PixelData
    assert received[0].SOPInstanceUID == ds.SOPInstanceUID
    # And byte for byte over DICOMweb, where the stored file is served as received.
    path = f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"
    response = httpx.get(
        server.dicomweb_url + path,
        headers={"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'},
    )
    assert [p for _, p in split_multipart(response.content, response.headers["content-type"])] == [
        data
    ]
