"""DICOMweb wire details with httpx: media types, boundaries, status codes, headers, errors."""

from __future__ import annotations

import io
import json

import httpx
import pytest
from pydicom import dcmread

from tests.conftest import RunningServer
from tests.dicomweb_support import (
    fresh_bundled,
    multipart_body,
    new_boundary,
    split_multipart,
    stow_headers,
)
from tests.factory import make_instance, uid

DICOM_JSON = "application/dicom+json"


@pytest.fixture(scope="module")
def http(server: RunningServer) -> httpx.Client:
    with httpx.Client(base_url=server.dicomweb_url, timeout=30) as client:
        yield client  # type: ignore[misc]


def stow(http: httpx.Client, parts: list[bytes], path: str = "/studies") -> httpx.Response:
    boundary = new_boundary()
    return http.post(path, content=multipart_body(parts, boundary), headers=stow_headers(boundary))


def attr(dataset: dict, tag: str) -> list:  # type: ignore[type-arg]
    return list(dataset.get(tag, {}).get("Value", []))


# -- STOW-RS ---------------------------------------------------------------------------


def test_stow_statuses_and_failure_reasons(http: httpx.Client) -> None:
    """PS3.18 10.5.3: 200 all stored, 202 some failed (FailureReason), 409 none stored."""
    study = uid()
    ok = make_instance(study_uid=study)
    response = stow(http, [ok], f"/studies/{study}")
    assert response.status_code == 200
    assert response.headers["content-type"] == DICOM_JSON
    body = response.json()
    assert attr(body, "00081190") == [str(http.base_url).rstrip("/") + f"/studies/{study}"]

    other_study = make_instance()
    response = stow(
        http,
        [make_instance(study_uid=study), other_study, b"not dicom at all"],
        f"/studies/{study}",
    )
    assert response.status_code == 202
    failed = attr(response.json(), "00081198")
    assert [attr(f, "00081197") for f in failed] == [[0xA900], [0xC000]]
    assert attr(failed[0], "00081155") == [dcmread(io.BytesIO(other_study)).SOPInstanceUID]
    assert "differs from the study" in response.headers["warning"]

    response = stow(http, [b"\x00" * 300, make_instance()[:200]])
    assert response.status_code == 409
    assert [attr(f, "00081197") for f in attr(response.json(), "00081198")] == [[0xC000], [0xC000]]


def test_stow_single_part_and_media_types(http: httpx.Client) -> None:
    """PS3.18 10.5.1.2: application/dicom body accepted; other media types 415."""
    response = http.post(
        "/studies", content=make_instance(), headers={"Content-Type": "application/dicom"}
    )
    assert response.status_code == 200
    response = http.post("/studies", content=b"{}", headers={"Content-Type": "application/json"})
    assert response.status_code == 415
    assert "multipart/related" in response.json()["detail"]
    boundary = new_boundary()
    response = http.post(
        "/studies",
        content=multipart_body([b"[]"], boundary),
        headers={
            "Content-Type": f'multipart/related; type="application/dicom+json"; boundary={boundary}'
        },
    )
    assert response.status_code == 415


def test_stow_malformed_bodies_are_400(http: httpx.Client) -> None:
    """PS3.18 10.5.3.1: a malformed multipart body is 400 with the reason."""
    headers = stow_headers("abc")
    response = http.post(
        "/studies", content=b"--abc\r\nContent-Type: application/dicom\r\n\r\nxx", headers=headers
    )
    assert response.status_code == 400
    assert "closing multipart boundary" in response.json()["detail"]
    response = http.post(
        "/studies",
        content=b"x",
        headers={"Content-Type": 'multipart/related; type="application/dicom"'},
    )
    assert response.status_code == 400
    assert "boundary" in response.json()["detail"]
    response = http.post(
        "/studies/not-a-uid", content=make_instance(), headers={"Content-Type": "application/dicom"}
    )
    assert response.status_code == 400


def test_stow_wrong_part_type_fails_that_part(http: httpx.Client) -> None:
    boundary = new_boundary()
    body = multipart_body([make_instance()], boundary)
    body = body.replace(b"Content-Type: application/dicom", b"Content-Type: text/plain", 1)
    response = http.post("/studies", content=body, headers=stow_headers(boundary))
    assert response.status_code == 409
    assert "text/plain" in response.headers["warning"]


# -- QIDO-RS ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def corpus(http: httpx.Client) -> dict[str, str]:
    """Three studies of one patient with distinct dates and modalities."""
    pid = f"Q{uid()[-10:]}"
    studies = {}
    for n, (date, modality) in enumerate(
        [("20200101", "CT"), ("20210615", "MR"), ("20221231", "CT")]
    ):
        study = uid()
        studies[date] = study
        response = stow(
            http,
            [
                make_instance(
                    study_uid=study,
                    patient_id=pid,
                    patient_name=f"Élodie^Wire{pid}",
                    study_date=date,
                    modality=modality,
                    accession=f"{pid}-{n}",
                )
            ],
        )
        assert response.status_code == 200
    studies["pid"] = pid
    return studies


def test_qido_keys_by_keyword_or_tag(http: httpx.Client, corpus: dict[str, str]) -> None:
    """PS3.18 8.3.4.1: attributes by keyword or by tag; percent-encoded values decode."""
    by_keyword = http.get("/studies", params={"PatientID": corpus["pid"]}).json()
    by_tag = http.get("/studies", params={"00100020": corpus["pid"]}).json()
    assert len(by_keyword) == 3 and by_keyword == by_tag
    encoded = http.get(
        f"/studies?PatientName=%C3%89lodie%5EWire{corpus['pid'][:4]}%2A&PatientID={corpus['pid']}"
    )
    assert len(encoded.json()) == 3
    # Case- and accent-insensitive PN matching (PS3.4 C.2.2.2.4 option).
    assert (
        len(http.get("/studies", params={"PatientName": f"elodie^wire{corpus['pid']}"}).json()) == 3
    )


def test_qido_matching_types(http: httpx.Client, corpus: dict[str, str]) -> None:
    """PS3.4 C.2.2.2 through PS3.18 10.6.1.2: range, list, wildcard, UID list."""
    pid = corpus["pid"]

    def count(**params: str) -> int:
        return len(http.get("/studies", params={"PatientID": pid, **params}).json())

    assert count(StudyDate="20210101-") == 2
    assert count(StudyDate="-20210101") == 1
    assert count(StudyDate="20200101-20211231") == 2
    assert count(ModalitiesInStudy="MR") == 1
    assert count(ModalitiesInStudy="CT") == 2
    assert count(AccessionNumber=f"{pid}-1") == 1
    assert count(AccessionNumber=f"{pid}-?") == 3
    assert count(StudyInstanceUID=f"{corpus['20200101']},{corpus['20221231']}") == 2
    assert count(Modality="MR") == 1  # series-level key at study level (relational)


def test_qido_paging_total_and_order(http: httpx.Client, corpus: dict[str, str]) -> None:
    """Beyond the standard (documented): orderby and X-Total-Count; PS3.18 10.6.1.2.2 paging."""
    params = {"PatientID": corpus["pid"], "orderby": "StudyDate", "limit": "2"}
    first = http.get("/studies", params=params)
    assert first.headers["x-total-count"] == "3"
    assert [attr(s, "00080020")[0] for s in first.json()] == ["20200101", "20210615"]
    second = http.get("/studies", params={**params, "offset": "2"})
    assert [attr(s, "00080020")[0] for s in second.json()] == ["20221231"]
    assert second.headers["x-total-count"] == "3"
    newest = http.get("/studies", params={"PatientID": corpus["pid"], "orderby": "-StudyDate"})
    assert attr(newest.json()[0], "00080020") == ["20221231"]


def test_qido_empty_and_bad_parameters(http: httpx.Client) -> None:
    """PS3.18 10.6.3.1: empty match is 200 [] here; bad parameters are 400 naming them."""
    response = http.get("/studies", params={"PatientID": "no-such-patient"})
    assert (response.status_code, response.json()) == (200, [])
    assert response.headers["x-total-count"] == "0"
    for params, needle in [
        ({"limit": "ten"}, "limit"),
        ({"limit": "-1"}, "limit"),
        ({"offset": "x"}, "offset"),
        ({"NoSuchKeyword": "1"}, "NoSuchKeyword"),
        ({"fuzzymatching": "maybe"}, "fuzzymatching"),
        ({"includefield": "Bogus"}, "Bogus"),
        ({"orderby": "Nope"}, "Nope"),
        ({"NumberOfStudyRelatedInstances": "abc"}, "NumberOfStudyRelatedInstances"),
    ]:
        response = http.get("/studies", params=params)
        assert response.status_code == 400, params
        assert needle in response.json()["detail"], (params, response.text)
    assert http.get("/studies/1.2.x/series").status_code == 400


def test_qido_server_maximum_warning(server_factory) -> None:  # type: ignore[no-untyped-def]
    """PS3.18 10.6.3.2 (and 8.4.3): results cut by the server maximum carry Warning 299;
    plus a configured public base URL in Retrieve URLs, configured CORS origins, 413."""
    srv = server_factory(
        env={
            "NOCTIS_QUERY_MAX_RESULTS": "2",
            "NOCTIS_HTTP_PUBLIC_BASE_URL": "https://pacs.example.org",
            "NOCTIS_HTTP_CORS_ORIGINS": "https://viewer.example.org",
            "NOCTIS_HTTP_MAX_UPLOAD_MB": "1",
        }
    )
    with httpx.Client(base_url=srv.dicomweb_url) as http:
        pid = "MAX1"
        for _ in range(3):
            http.post(
                "/studies",
                content=make_instance(patient_id=pid),
                headers={"Content-Type": "application/dicom"},
            )
        response = http.get("/studies", params={"PatientID": pid})
        assert len(response.json()) == 2
        assert response.headers["warning"].startswith("299 ")
        assert "maximum" in response.headers["warning"]
        assert response.headers["x-total-count"] == "3"
        assert attr(response.json()[0], "00081190")[0].startswith(
            "https://pacs.example.org/dicom-web/studies/"
        )
        preflight = http.options(
            "/studies",
            headers={
                "Origin": "https://viewer.example.org",
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "authorization",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "https://viewer.example.org"
        assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
        other = http.get("/studies", headers={"Origin": "https://evil.example.org"})
        assert "access-control-allow-origin" not in other.headers
        big = b"\x00" * (2 << 20)
        response = http.post("/studies", content=big, headers={"Content-Type": "application/dicom"})
        assert response.status_code == 413
        assert "max_upload_mb" in response.json()["detail"]

        def chunks():  # type: ignore[no-untyped-def]
            for _ in range(3):
                yield b"\x00" * (1 << 20)

        response = http.post(
            "/studies", content=chunks(), headers={"Content-Type": "application/dicom"}
        )
        assert response.status_code == 413


def test_cors_default_exposes_headers(http: httpx.Client, corpus: dict[str, str]) -> None:
    """Browser viewers read Warning and X-Total-Count (CORS expose list)."""
    response = http.get(
        "/studies", params={"PatientID": corpus["pid"]}, headers={"Origin": "https://ohif.example"}
    )
    assert response.headers["access-control-allow-origin"] == "*"
    exposed = response.headers["access-control-expose-headers"].lower()
    for name in ("content-type", "warning", "x-total-count"):
        assert name in exposed


# -- WADO-RS ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stored(http: httpx.Client) -> tuple[bytes, str]:
    data = make_instance(rows=32, columns=32)
    assert (
        http.post(
            "/studies", content=data, headers={"Content-Type": "application/dicom"}
        ).status_code
        == 200
    )
    ds = dcmread(io.BytesIO(data))
    return (
        data,
        f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}",
    )


def test_wado_multipart_framing(http: httpx.Client, stored: tuple[bytes, str]) -> None:
    """PS3.18 8.6.1.2.1 / 10.4.1.1.3: multipart/related; type="application/dicom" with
    transfer-syntax on each part; bytes as stored with transfer-syntax=*."""
    data, path = stored
    for accept in (
        'multipart/related; type="application/dicom"; transfer-syntax=*',
        'multipart/related; type="application/dicom"',
        "*/*",
    ):
        response = http.get(path, headers={"Accept": accept})
        assert response.status_code == 200
        content_type = response.headers["content-type"]
        assert content_type.startswith('multipart/related; type="application/dicom"; boundary=')
        parts = split_multipart(response.content, content_type)
        assert [p for _, p in parts] == [data]
        assert (
            parts[0][0]["content-type"] == "application/dicom; transfer-syntax=1.2.840.10008.1.2.1"
        )
        assert int(response.headers["content-length"]) == len(response.content)
    single = http.get(path, headers={"Accept": "application/dicom"})
    assert single.content == data and single.headers["content-type"].startswith("application/dicom")


def test_wado_not_acceptable_and_not_found(http: httpx.Client, stored: tuple[bytes, str]) -> None:
    """PS3.18 10.4.3: 406 for an unsatisfiable Accept, 404 for unknown resources, 400 bad UIDs."""
    _, path = stored
    response = http.get(path, headers={"Accept": "image/jpeg"})
    assert response.status_code == 406 and "application/dicom" in response.json()["detail"]
    response = http.get(
        path,
        headers={
            "Accept": 'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.50'
        },
    )
    assert response.status_code == 406
    assert "transfer-syntax=*" in response.json()["detail"]
    assert http.get(f"/studies/{uid()}").status_code == 404
    assert http.get(f"/studies/{uid()}/metadata").status_code == 404
    assert http.get("/studies/1.2.3.abc").status_code == 400
    assert http.get(path + "/frames/2").status_code == 404
    assert http.get(path + "/frames/0").status_code == 400
    assert http.get(path + "/frames/x,1").status_code == 400
    assert http.get(path + "/bulk/ZZ").status_code == 400
    assert http.get(path + "/bulk/00420011").status_code == 404
    response = http.get("/nothing/here")
    assert response.status_code == 404 and "/dicom-web/nothing/here" in response.json()["detail"]
    assert http.delete("/studies").status_code == 405


def test_metadata_etag_and_forwarded_base(http: httpx.Client, stored: tuple[bytes, str]) -> None:
    """PS3.18 10.4.1.1.2: metadata from ingest, BulkDataURI following X-Forwarded-*; ETag."""
    _, path = stored
    response = http.get(path + "/metadata", headers={"Accept": DICOM_JSON})
    assert response.headers["content-type"] == DICOM_JSON
    etag = response.headers["etag"]
    assert http.get(path + "/metadata", headers={"If-None-Match": etag}).status_code == 304
    proxied = http.get(
        path + "/metadata",
        headers={"X-Forwarded-Host": "pacs.example.net", "X-Forwarded-Proto": "https"},
    )
    uri = proxied.json()[0]["7FE00010"]["BulkDataURI"]
    assert uri == f"https://pacs.example.net/dicom-web{path}/bulk/7FE00010"
    assert proxied.headers["etag"] != etag
    assert "@@" not in response.text
    assert (
        http.get(path + "/metadata", headers={"Accept": "application/dicom+xml"}).status_code == 406
    )


def test_frames_octet_stream(http: httpx.Client, stored: tuple[bytes, str]) -> None:
    """PS3.18 8.7.3.3 / 10.4.1.1.4: uncompressed frames as application/octet-stream."""
    data, path = stored
    pixels = dcmread(io.BytesIO(data)).PixelData
    response = http.get(
        path + "/frames/1", headers={"Accept": 'multipart/related; type="application/octet-stream"'}
    )
    ((headers, payload),) = split_multipart(response.content, response.headers["content-type"])
    assert payload == pixels
    assert (
        headers["content-type"] == "application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1"
    )
    single = http.get(path + "/frames/1", headers={"Accept": "application/octet-stream"})
    assert single.content == pixels


def test_multiframe_compressed_frames(http: httpx.Client) -> None:
    """PS3.18 8.7.3.5: RLE frames in image/x-dicom-rle; a frame list returns each frame."""
    data = fresh_bundled("SC_rgb_rle_2frame.dcm")
    assert (
        http.post(
            "/studies", content=data, headers={"Content-Type": "application/dicom"}
        ).status_code
        == 200
    )
    ds = dcmread(io.BytesIO(data))
    path = f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"
    response = http.get(path + "/frames/2,1")
    parts = split_multipart(response.content, response.headers["content-type"])
    assert response.headers["content-type"].startswith(
        'multipart/related; type="image/x-dicom-rle"'
    )
    assert [h["content-type"] for h, _ in parts] == [
        "image/x-dicom-rle; transfer-syntax=1.2.840.10008.1.2.5"
    ] * 2
    from pydicom.encaps import generate_fragmented_frames

    frames = [b"".join(f) for f in generate_fragmented_frames(ds.PixelData, number_of_frames=2)]
    assert [p for _, p in parts] == [frames[1], frames[0]]


# -- WADO-URI, health, metrics ----------------------------------------------------------


def test_wado_uri(server: RunningServer, stored: tuple[bytes, str]) -> None:
    """PS3.18 9.1: requestType=WADO with study, series and object UIDs."""
    data, path = stored
    ds = dcmread(io.BytesIO(data))
    params = {
        "requestType": "WADO",
        "studyUID": ds.StudyInstanceUID,
        "seriesUID": ds.SeriesInstanceUID,
        "objectUID": ds.SOPInstanceUID,
        "contentType": "application/dicom",
    }
    response = httpx.get(f"{server.http_url}/wado", params=params)
    assert response.status_code == 200 and response.content == data
    assert response.headers["content-type"] == "application/dicom"
    assert (
        httpx.get(f"{server.http_url}/wado", params={**params, "requestType": "X"}).status_code
        == 400
    )
    assert (
        httpx.get(f"{server.http_url}/wado", params={**params, "objectUID": ""}).status_code == 400
    )
    assert (
        httpx.get(f"{server.http_url}/wado", params={**params, "objectUID": uid()}).status_code
        == 404
    )
    response = httpx.get(f"{server.http_url}/wado", params={**params, "contentType": "image/gif"})
    assert response.status_code == 406 and "image/jpeg" in response.json()["detail"]


def test_health_and_metrics(server: RunningServer) -> None:
    assert httpx.get(f"{server.http_url}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{server.http_url}/readyz").status_code == 200
    httpx.get(f"{server.dicomweb_url}/studies/{uid()}/metadata")
    text = httpx.get(f"{server.http_url}/metrics").text
    assert (
        'noctis_http_requests_total{method="GET",route="/dicom-web/studies/{study}/metadata",status="404"}'
        in text
    )
    assert (
        'noctis_http_request_duration_seconds_count{method="GET",route="/dicom-web/studies/{study}/metadata"}'
        in text
    )
    assert "1.2.826" not in text  # route templates, never UIDs
    json.loads(httpx.get(f"{server.http_url}/healthz").text)


@pytest.mark.parametrize(
    "query",
    [
        "offset=99999999999999999999",
        "limit=99999999999999999999",
        "SeriesNumber=99999999999999999999",
        "StudyDate=2024-2023-2022",
    ],
)
def test_absurd_numbers_are_400_not_500(server: RunningServer, query: str) -> None:
    """PS3.18 10.6.1.2 / 8.5: a query parameter out of range is a 400 that says which."""
    response = httpx.get(f"{server.dicomweb_url}/series?{query}", timeout=30)
    assert response.status_code == 400, response.text
    assert response.json()["detail"]


def test_series_and_instance_required_return_attributes(server: RunningServer) -> None:
    """PS3.18 Tables 10.6.3-4 and -5: TimezoneOffsetFromUTC and the Request Attributes
    Sequence (with its Requested Procedure ID / Scheduled Procedure Step ID) are returned."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    from tests.factory import make_dataset, to_bytes

    ds = make_dataset(TimezoneOffsetFromUTC="+0100")
    item = Dataset()
    item.RequestedProcedureID = "RP1"
    item.ScheduledProcedureStepID = "SPS1"
    ds.RequestAttributesSequence = Sequence([item])
    response = httpx.post(
        f"{server.dicomweb_url}/studies",
        content=to_bytes(ds),
        headers={"Content-Type": "application/dicom"},
        timeout=30,
    )
    assert response.status_code == 200
    (series,) = httpx.get(f"{server.dicomweb_url}/studies/{ds.StudyInstanceUID}/series").json()
    assert series["00080201"]["Value"] == ["+0100"]
    request = series["00400275"]["Value"][0]
    assert request["00401001"]["Value"] == ["RP1"] and request["00400009"]["Value"] == ["SPS1"]
    assert "00401001" not in series
    (instance,) = httpx.get(
        f"{server.dicomweb_url}/instances", params={"SOPInstanceUID": ds.SOPInstanceUID}
    ).json()
    assert instance["00080201"]["Value"] == ["+0100"]
    matched = httpx.get(
        f"{server.dicomweb_url}/series",
        params={"ScheduledProcedureStepID": "SPS1", "StudyInstanceUID": ds.StudyInstanceUID},
    ).json()
    assert len(matched) == 1


def test_instance_with_an_overlong_uid_is_still_retrievable(server: RunningServer) -> None:
    """Stored as received, found as stored: a 70-character SOP Instance UID (beyond
    PS3.5 9.1's 64) is retrievable; a non-numeric UID is a 400 (PS3.18 8.5)."""
    from tests.factory import make_dataset, to_bytes

    ds = make_dataset(sop_uid="1.2.826.0.1.3680043.10.1337." + "1" * 42)
    assert len(ds.SOPInstanceUID) == 70
    stored = httpx.post(
        f"{server.dicomweb_url}/studies",
        content=to_bytes(ds),
        headers={"Content-Type": "application/dicom"},
        timeout=30,
    )
    assert stored.status_code == 200
    url = (
        f"{server.dicomweb_url}/studies/{ds.StudyInstanceUID}/series/"
        f"{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}/metadata"
    )
    assert httpx.get(url).status_code == 200
    bad = url.replace(ds.SOPInstanceUID, "1.2.abc")
    assert httpx.get(bad).status_code == 400


@pytest.mark.parametrize("lost", ["file", "pack record"])
def test_missing_blob_fails_before_the_body_starts(server_factory: object, lost: str) -> None:
    """A retrieve whose stored file vanished (or the pack holding it, or its record in
    the pack: ``storage.packs``) answers an error that says what to run, not a truncated
    200 (PS3.18 8.5); the server keeps serving."""
    from storage.packs import parse_key
    from tests.factory import make_dataset, to_bytes
    from tests.test_dimse_support import server_archive

    srv = server_factory()  # type: ignore[operator]
    ds = make_dataset()
    assert (
        httpx.post(
            f"{srv.dicomweb_url}/studies",
            content=to_bytes(ds),
            headers={"Content-Type": "application/dicom"},
        ).status_code
        == 200
    )
    if lost == "file":  # the instance's file, or the pack holding it
        (blob,) = [*(srv.data_dir / "blobs").rglob("*.dcm"), *(srv.data_dir / "packs").glob("*")]
        blob.unlink()
    else:
        with server_archive(srv) as archive:
            (location,) = archive.locate_uids(str(ds.StudyInstanceUID))
            assert parse_key(location.blob_key) is not None
            archive.blobs.delete(location.blob_key)
    response = httpx.get(f"{srv.dicomweb_url}/studies/{ds.StudyInstanceUID}", timeout=30)
    assert response.status_code == 500
    assert "noctis-pacs verify" in response.json()["detail"]
    assert httpx.get(f"{srv.http_url}/healthz").status_code == 200
