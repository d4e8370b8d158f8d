"""What ingest refuses, and how each protocol says it (issue 14, defects 11 and 12).

Defect 11: instances whose UIDs carry a letter or a control character were
acknowledged and then unreadable. One rule (noctis_pacs.core.uids) now decides at
ingest and on the read side: such an instance is refused with its reason
(C-STORE 0xA900, STOW-RS FailedSOPSequence 0xA900), never acknowledged.

Defect 12: a STOW-RS refusal for a full store names the instance (PS3.18 Table
10.5.3-3) and the free-space reserve (``storage.min_free_mb``) that refused it, as
the C-STORE Error Comment does.
"""

from __future__ import annotations

import httpx
import pytest
from pydicom.uid import SecondaryCaptureImageStorage
from pynetdicom import build_context

from noctis_pacs.core.uids import uid_problem
from tests.conftest import RunningServer
from tests.dicomweb_support import multipart_body, new_boundary, stow_headers
from tests.factory import make_dataset, to_bytes, uid
from tests.test_dimse_support import associate

#: Malformed UIDs of the issue: a letter, a control character; and an empty component.
BAD_UIDS = ["1.2.826.0A1.3680043", "1.2.826.0.1.36800\x033.8", "1.2..3", "1.2.3 "]


@pytest.mark.parametrize("value", BAD_UIDS)
def test_uid_rule(value: str) -> None:
    assert uid_problem(value) is not None
    assert uid_problem("1.2.826.0.1.3680043.10.1337.1") is None
    assert uid_problem("1.2.0003.4") is None  # leading zeros: tolerated, real files have them


def _stow(server: RunningServer, parts: list[bytes]) -> httpx.Response:
    boundary = new_boundary()
    return httpx.post(
        f"{server.dicomweb_url}/studies",
        content=multipart_body(parts, boundary),
        headers=stow_headers(boundary),
        timeout=60,
    )


@pytest.mark.parametrize("keyword", ["SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"])
def test_stow_refuses_a_malformed_uid_and_keeps_the_rest(
    server: RunningServer, keyword: str
) -> None:
    """PS3.18 10.5.3: the instance with a malformed UID fails (FailureReason 0xA900, the
    reason in a Warning header), the well-formed one beside it is stored (202), and the
    archive holds nothing it could not serve: QIDO finds no trace of the bad one."""
    study = uid()
    bad = make_dataset(study_uid=study)
    setattr(bad, keyword, BAD_UIDS[0] if keyword != "StudyInstanceUID" else BAD_UIDS[1])
    if keyword == "SOPInstanceUID":
        bad.file_meta.MediaStorageSOPInstanceUID = bad.SOPInstanceUID
    good = make_dataset(study_uid=study)
    response = _stow(server, [to_bytes(bad), to_bytes(good)])
    assert response.status_code == 202, response.text
    body = response.json()
    (failed,) = body["00081198"]["Value"]
    assert failed["00081197"]["Value"] == [0xA900]
    assert any(keyword in w for w in response.headers.get_list("warning")), response.headers
    (referenced,) = body["00081199"]["Value"]
    assert referenced["00081155"]["Value"] == [str(good.SOPInstanceUID)]
    found = httpx.get(f"{server.dicomweb_url}/studies/{study}/instances", timeout=30)
    assert found.status_code == 200
    assert [i["00080018"]["Value"][0] for i in found.json()] == [str(good.SOPInstanceUID)]


def test_cstore_refuses_a_malformed_uid_with_a900(server: RunningServer) -> None:
    """PS3.4 B.2.3: C-STORE of an instance whose Study / Series Instance UID is malformed
    answers A900 (Data Set does not match SOP Class) with the reason in the Error
    Comment; nothing is stored."""
    ds = make_dataset(study_uid=BAD_UIDS[1])
    ds.SeriesInstanceUID = BAD_UIDS[0]
    assoc = associate(server.dimse_port, [build_context(SecondaryCaptureImageStorage)])
    assert assoc.is_established
    try:
        status = assoc.send_c_store(ds)
    finally:
        assoc.release()
    assert status.Status == 0xA900
    assert "UID" in status.ErrorComment
    found = httpx.get(
        f"{server.dicomweb_url}/instances",
        params={"SOPInstanceUID": str(ds.SOPInstanceUID)},
        timeout=30,
    )
    assert found.status_code == 200 and found.json() == []


@pytest.fixture
def full_server(server_factory) -> RunningServer:  # type: ignore[no-untyped-def]
    """A server whose free-space reserve no disk can meet: every store is refused."""
    return server_factory(env={"NOCTIS_STORAGE_MIN_FREE_MB": "1000000000"})


def test_stow_storage_full_names_the_instance_and_the_reserve(
    full_server: RunningServer,
) -> None:
    """Issue 14 defect 12, PS3.18 Table 10.5.3-3: a STOW-RS refused for lack of space
    answers 409 with one FailedSOPSequence item per part carrying the Referenced SOP
    Class and Instance UIDs and FailureReason 0xA700; the reason names the
    ``storage.min_free_mb`` reserve (an admin saw "out of resources" with space free)."""
    datasets = [make_dataset(), make_dataset()]
    response = _stow(full_server, [to_bytes(ds) for ds in datasets])
    assert response.status_code == 409, response.text
    failed = response.json()["00081198"]["Value"]
    assert len(failed) == 2
    for item, ds in zip(failed, datasets, strict=True):
        assert item["00081197"]["Value"] == [0xA700]
        assert item["00081150"]["Value"] == [str(ds.SOPClassUID)]
        assert item["00081155"]["Value"] == [str(ds.SOPInstanceUID)]
    warnings = " ".join(response.headers.get_list("warning"))
    assert "storage.min_free_mb" in warnings


def test_cstore_storage_full_names_the_reserve(full_server: RunningServer) -> None:
    """PS3.4 B.2.3: C-STORE answers A700 (Out of Resources) with an Error Comment that
    names the reserve setting."""
    assoc = associate(full_server.dimse_port, [build_context(SecondaryCaptureImageStorage)])
    assert assoc.is_established
    try:
        status = assoc.send_c_store(make_dataset())
    finally:
        assoc.release()
    assert status.Status == 0xA700
    assert "storage.min_free_mb" in status.ErrorComment
    assert len(status.ErrorComment) <= 64
