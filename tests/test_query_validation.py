"""Match values both query protocols refuse the same way, and instance-level includefield
(issue 14, defects 5 and 6)."""

from __future__ import annotations

import httpx
import pytest
from pydicom.dataset import Dataset
from pynetdicom import build_context
from pynetdicom.sop_class import (
    StudyRootQueryRetrieveInformationModelFind as StudyRootFind,
)

from noctis_pacs.core.model import InvalidMatchValue, build_match, is_valid_value
from tests.conftest import RunningServer
from tests.dicomweb_support import multipart_body, new_boundary, stow_headers
from tests.factory import ct_series, to_bytes, uid
from tests.test_dimse_support import associate

#: Values PS3.5 6.2 / PS3.4 C.2.2.2.5 do not allow for a DA key (the issue's list).
BAD_DATES = ["abc", "20241399", "2024", "20240230-", "2024-03-15", "2024*", "-", "20230229"]
BAD_TIMES = ["2500", "1060", "10:61", "abc", "101500.1234567"]
GOOD_DATES = ["20240115", "20240101-20241231", "-20240101", "20240229-", "20240101\\20240102"]


@pytest.mark.parametrize("value", BAD_DATES)
def test_invalid_dates_are_refused_by_the_core_model(value: str) -> None:
    """One validator (noctis_pacs.core.model.classify) for QIDO-RS, C-FIND and MWL."""
    with pytest.raises(InvalidMatchValue) as caught:
        build_match("StudyDate", value)
    assert "StudyDate" in str(caught.value)


def test_valid_values() -> None:
    for value in GOOD_DATES:
        build_match("StudyDate", value)
    assert is_valid_value("TM", "101500.123456") and is_valid_value("TM", "10")
    assert is_valid_value("DT", "20240115101500.5+0100") and is_valid_value("DT", "2024")
    assert not is_valid_value("DT", "20241301") and not is_valid_value("DT", "2024011525")
    for value in BAD_TIMES:
        assert not is_valid_value("TM", value), value


@pytest.mark.parametrize("value", BAD_DATES)
def test_qido_invalid_date_is_400_with_the_reason(server: RunningServer, value: str) -> None:
    """Issue 14 defect 5: ``StudyDate=abc`` (and 20241399, 2024, 20240230-) answered
    ``200 []``, reading as "no such study", while 2024-03-15 answered 400. Every DA value
    PS3.5 6.2 does not allow, single or as a range bound (PS3.4 C.2.2.2.5), is 400 with
    the reason, at every level."""
    for path in ("studies", "series", "instances"):
        response = httpx.get(
            f"{server.dicomweb_url}/{path}", params={"StudyDate": value}, timeout=30
        )
        assert response.status_code == 400, (path, response.text)
        assert "StudyDate" in response.json()["detail"]


@pytest.mark.parametrize("value", BAD_TIMES)
def test_qido_invalid_time_is_400(server: RunningServer, value: str) -> None:
    response = httpx.get(f"{server.dicomweb_url}/studies", params={"StudyTime": value}, timeout=30)
    assert response.status_code == 400, response.text
    assert "StudyTime" in response.json()["detail"]


def test_qido_valid_dates_still_match(server: RunningServer) -> None:
    for value in GOOD_DATES:
        response = httpx.get(
            f"{server.dicomweb_url}/studies", params={"StudyDate": value}, timeout=30
        )
        assert response.status_code == 200, (value, response.text)


def _find(server: RunningServer, identifier: Dataset) -> list[tuple[Dataset, Dataset | None]]:
    assoc = associate(server.dimse_port, [build_context(StudyRootFind)])
    assert assoc.is_established
    try:
        return list(assoc.send_c_find(identifier, StudyRootFind))
    finally:
        assoc.release()


@pytest.mark.parametrize("value", BAD_DATES[:5])
def test_cfind_invalid_date_is_c000_with_error_comment(server: RunningServer, value: str) -> None:
    """The same for C-FIND: PS3.4 C.4.1.1.4 Failed, Unable to process (C000), with the
    reason in the Error Comment; no match is returned."""
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.StudyInstanceUID = ""
    identifier.StudyDate = value
    responses = _find(server, identifier)
    assert len(responses) == 1
    status = responses[0][0]
    assert 0xC000 <= status.Status <= 0xCFFF
    assert "StudyDate" in status.ErrorComment


def _stow(server: RunningServer, parts: list[bytes]) -> None:
    boundary = new_boundary()
    response = httpx.post(
        f"{server.dicomweb_url}/studies",
        content=multipart_body(parts, boundary),
        headers=stow_headers(boundary),
        timeout=60,
    )
    assert response.status_code == 200, response.text


def test_includefield_all_at_instance_level_returns_stored_attributes(
    server: RunningServer,
) -> None:
    """Issue 14 defect 6, PS3.18 10.6.1.2.2 / 10.6.3.3.3: ``includefield=all`` at the
    instance level returns every stored non-bulk attribute (SliceThickness,
    ImagePositionPatient ...), not only the required ones, as at the study and series
    levels; bulk data stays out; a named attribute the index has no column for is
    returned too."""
    study, series = uid(), uid()
    datasets = list(ct_series(2, 16, study_uid=study, series_uid=series))
    _stow(server, [to_bytes(ds) for ds in datasets])
    url = f"{server.dicomweb_url}/studies/{study}/series/{series}/instances"
    response = httpx.get(url, params={"includefield": "all"}, timeout=30)
    assert response.status_code == 200, response.text
    results = response.json()
    assert len(results) == 2
    for item in results:
        assert item["00180050"]["Value"] == [1.5]  # SliceThickness
        assert len(item["00200032"]["Value"]) == 3  # ImagePositionPatient
        assert "7FE00010" not in item  # Pixel Data is bulk data
        assert "00081190" in item and "00080018" in item  # required attributes kept
    named = httpx.get(
        f"{server.dicomweb_url}/instances",
        params={"StudyInstanceUID": study, "includefield": "ImagePositionPatient"},
        timeout=30,
    )
    assert named.status_code == 200
    for item in named.json():
        assert len(item["00200032"]["Value"]) == 3
        assert "00180050" not in item
        assert "Warning" not in named.headers
