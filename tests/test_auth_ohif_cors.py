"""OHIF on another origin with HTTP Basic credentials (its data source's
``requestOptions.auth``), as a browser does it: a CORS preflight (OPTIONS with
``Origin``, ``Access-Control-Request-Method`` and ``Access-Control-Request-Headers``)
before each credentialed request, then the GETs OHIF makes to open a study (QIDO-RS
studies and series, series metadata, frames), each answer readable by the page only
when it names the page's origin and allows credentials (Fetch standard, CORS protocol).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator

import httpx
import pytest

from tests.auth_support import NO_LIMITS, create_token
from tests.conftest import RunningServer, db_url_for, start_server
from tests.dicomweb_support import multipart_body, new_boundary, stow_headers
from tests.factory import ct_series, to_bytes, uid

OHIF = "https://ohif.example.org"
OTHER = "https://elsewhere.example.org"
DICOM_JSON = "application/dicom+json"
#: OHIF v3's frame request (a quoted type: not CORS-safelisted, so it is preflighted too).
FRAMES = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'


@pytest.fixture(scope="module")
def ohif_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    base = tmp_path_factory.mktemp("ohif-cors")
    server = start_server(
        base / "data",
        db_url_for("sqlite", base / "data"),
        config='[auth]\nmode = "token"\n' + NO_LIMITS,
        env={"NOCTIS_HTTP_CORS_ORIGINS": f"{OHIF},https://second.example.org"},
    )
    yield server
    server.stop()


def _basic(secret: str) -> str:
    # OHIF sends requestOptions.auth ("user:password") as Basic; any user name will do.
    return "Basic " + base64.b64encode(f"ohif:{secret}".encode()).decode()


def _preflight(client: httpx.Client, url: str, origin: str, headers: str) -> httpx.Response:
    return client.options(
        url,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": headers,
        },
    )


def test_ohif_opens_a_study_cross_origin_with_basic_auth(ohif_server: RunningServer) -> None:
    admin = {"Authorization": f"Bearer {create_token(ohif_server, 'ohif-admin', 'admin')}"}
    viewer_secret = create_token(ohif_server, "ohif-viewer", "viewer")
    study, series = uid(), uid()
    volume = list(ct_series(3, 32, study_uid=study, series_uid=series))
    boundary = new_boundary()
    stored = httpx.post(
        f"{ohif_server.dicomweb_url}/studies",
        content=multipart_body([to_bytes(ds) for ds in volume], boundary),
        headers={**stow_headers(boundary), **admin},
        timeout=60,
    )
    assert stored.status_code == 200, stored.text
    sop = str(volume[0].SOPInstanceUID)
    root = ohif_server.dicomweb_url
    steps = [
        (
            f"{root}/studies?limit=101&offset=0&fuzzymatching=false&includefield=00081030",
            DICOM_JSON,
        ),
        (f"{root}/studies/{study}/series?includefield=0008103E", DICOM_JSON),
        (f"{root}/studies/{study}/series/{series}/metadata", DICOM_JSON),
        (f"{root}/studies/{study}/series/{series}/instances/{sop}/frames/1", FRAMES),
    ]
    with httpx.Client(timeout=60) as browser:
        for url, accept in steps:
            requested = "authorization" if accept == DICOM_JSON else "accept, authorization"
            preflight = _preflight(browser, url, OHIF, requested)
            # The preflight is answered before authentication (browsers send no credentials).
            assert preflight.status_code == 200, (url, preflight.status_code, preflight.text)
            assert preflight.headers["access-control-allow-origin"] == OHIF
            assert preflight.headers["access-control-allow-credentials"] == "true"
            allowed = {
                h.strip().lower()
                for h in preflight.headers["access-control-allow-headers"].split(",")
            }
            assert {"authorization", "accept"} <= allowed
            assert "GET" in preflight.headers["access-control-allow-methods"]
            answer = browser.get(
                url,
                headers={"Origin": OHIF, "Accept": accept, "Authorization": _basic(viewer_secret)},
            )
            assert answer.status_code == 200, (url, answer.status_code, answer.text)
            assert answer.headers["access-control-allow-origin"] == OHIF
            assert answer.headers["access-control-allow-credentials"] == "true"
            assert "*" not in answer.headers["access-control-allow-origin"]
            if accept == DICOM_JSON:
                body = answer.json()
                assert body and all(isinstance(item, dict) for item in body)
            else:
                assert answer.headers["content-type"].startswith("multipart/related")
                assert len(answer.content) > 32 * 32 * 2  # one 32x32 16-bit frame at least
        studies = browser.get(
            steps[0][0], headers={"Origin": OHIF, "Authorization": _basic(viewer_secret)}
        ).json()
        assert study in {item["0020000D"]["Value"][0] for item in studies}
        # Wrong credentials: a 401 the page can read (so OHIF can say so), with the challenge.
        refused = browser.get(
            steps[0][0], headers={"Origin": OHIF, "Authorization": _basic("not-a-token")}
        )
        assert refused.status_code == 401
        assert refused.headers["access-control-allow-origin"] == OHIF
        assert refused.headers["www-authenticate"].startswith("Bearer")
        # An origin not in the list: its preflight fails and answers carry no grant.
        stranger = _preflight(browser, steps[0][0], OTHER, "authorization")
        assert stranger.status_code >= 400
        assert stranger.headers.get("access-control-allow-origin") is None
        leaked = browser.get(
            steps[0][0], headers={"Origin": OTHER, "Authorization": _basic(viewer_secret)}
        )
        assert leaked.headers.get("access-control-allow-origin") is None
    assert ohif_server.alive()
