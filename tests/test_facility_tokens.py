"""Facility isolation through real tokens (issue 13 point 4): ``token create --facility``,
a real server in ``auth.mode = "token"``, two facilities and a technologist of each.

The "wrong facility" column of the authorization matrix is generated from the route
table (``tests/test_auth_matrix.py``): every route that names a study, series,
instance, worklist item or MPPS instance, asked by a principal of the other facility
who holds the route's permission, answers 404 (or an empty match), never 403 and never
the data; the owner's principal gets through. A route added later with such a
parameter is in this matrix without more code.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from noctis_pacs.core.auth import ROLE_PERMISSIONS, Role
from tests.auth_support import NO_LIMITS, create_token
from tests.conftest import BACKENDS, RunningServer, db_url_for, start_server
from tests.dicomweb_support import multipart_body, new_boundary, stow_headers
from tests.factory import ct_series, to_bytes, uid
from tests.test_auth_matrix import EXPECTED, route_table
from tests.workflow_support import MPPS, association, item_json, mpps_create_dataset, token

#: Path parameters that name something a facility owns.
OWNED = {"study", "series", "instance", "item", "uid"}
TECHNOLOGIST = ROLE_PERMISSIONS[Role.TECHNOLOGIST]


@dataclass
class Owned:
    study: str
    series: str
    sop: str
    item: str
    mpps: str


@dataclass
class Site:
    server: RunningServer
    north: Owned
    south: Owned
    headers: dict[str, dict[str, str]]


def _store(server: RunningServer, admin: dict[str, str], institution: str) -> list[str]:
    study, series = uid(), uid()
    volume = list(ct_series(6, 32, study_uid=study, series_uid=series))
    for ds in volume:
        ds.InstitutionName = institution
    boundary = new_boundary()
    stored = httpx.post(
        f"{server.dicomweb_url}/studies",
        content=multipart_body([to_bytes(ds) for ds in volume], boundary),
        headers={**stow_headers(boundary), **admin},
        timeout=60,
    )
    assert stored.status_code == 200, stored.text
    return [study, series, str(volume[0].SOPInstanceUID)]


def _owned(server: RunningServer, admin: dict[str, str], own: dict[str, str], name: str) -> Owned:
    study, series, sop = _store(server, admin, name)
    made = httpx.post(
        f"{server.http_url}/workflow/worklist",
        json=item_json(f"{name[0]}{token()}"),
        headers=own,
        timeout=30,
    )
    assert made.status_code == 201, made.text
    mpps_uid = uid()
    with association(server.dimse_port, MPPS) as assoc:
        status, _ = assoc.send_n_create(mpps_create_dataset(study, "SPS1"), MPPS, mpps_uid)
        assert int(status.Status) == 0x0000
    return Owned(study, series, sop, str(made.json()["id"]), mpps_uid)


@pytest.fixture(scope="module", params=BACKENDS)
def site(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Site]:
    base = tmp_path_factory.mktemp(f"facility-tokens-{request.param}")
    server = start_server(
        base / "data",
        db_url_for(str(request.param), base / "data"),
        config='[auth]\nmode = "token"\n' + NO_LIMITS + "[workflow]\npoll_interval_seconds = 0.2\n",
    )
    try:
        headers = {
            name: {"Authorization": f"Bearer {create_token(server, name, role, facilities=f)}"}
            for name, role, f in (
                ("admin", "admin", ()),
                ("north", "technologist", ("North",)),
                ("south", "technologist", ("South",)),
            )
        }
        north = _owned(server, headers["admin"], headers["north"], "North")
        south = _owned(server, headers["admin"], headers["south"], "South")
        # The study tracker (the workflow worker) has seen both studies.
        deadline = time.monotonic() + 30
        for study in (north.study, south.study):
            while time.monotonic() < deadline:
                seen = httpx.get(
                    f"{server.http_url}/workflow/studies/{study}", headers=headers["admin"]
                )
                if seen.status_code == 200:
                    break
                time.sleep(0.2)
        yield Site(server, north, south, headers)
    finally:
        server.stop()


def _concrete(template: str, owned: Owned) -> str:
    values = {
        "study": owned.study,
        "series": owned.series,
        "instance": owned.sop,
        "item": owned.item,
        "uid": owned.mpps,
        "frames": "1",
        "tag": "7FE00010",
    }
    path = re.sub(r"\{(\w+)(?::\w+)?\}", lambda m: values[m.group(1)], template)
    if path.endswith(("/mpr", "/mip")):
        path += "?plane=axial"
    return path


def _owned_routes(tmp_path: Path) -> list[tuple[str, str]]:
    """GET routes naming something a facility owns, whose permission a technologist has."""
    out = []
    for method, template in route_table(tmp_path):
        names = set(re.findall(r"\{(\w+)", template))
        if method == "GET" and names & OWNED and EXPECTED.get((method, template)) in TECHNOLOGIST:
            out.append((method, template))
    return out


def _empty(response: httpx.Response) -> bool:
    if response.status_code != 200:
        return False
    try:
        return response.json() == []
    except ValueError:
        return False


def test_wrong_facility_column_of_the_authorization_matrix(site: Site, tmp_path: Path) -> None:
    """Every owned-resource route as the owner (through), the other facility (404 or an
    empty match, never 403) and the admin (through)."""
    routes = _owned_routes(tmp_path)
    templates = {t for _, t in routes}
    # The retrieval paths of issue 13 point 4 are all in the generated table.
    for needed in ("/frames/{frames}", "/bulk/{tag}", "/rendered", "/thumbnail", "/mpr", "/mip"):
        assert any(t.endswith(needed) for t in templates), needed
    assert "/workflow/mpps/{uid}" in templates and "/workflow/worklist/{item}" in templates
    failures: list[str] = []
    with httpx.Client(base_url=site.server.http_url, timeout=60) as client:
        for method, template in routes:
            for owner, other in ((site.north, "south"), (site.south, "north")):
                path = _concrete(template, owner)
                owner_name = "north" if owner is site.north else "south"
                accept = {"Accept": "*/*"}
                mine = client.request(method, path, headers={**site.headers[owner_name], **accept})
                theirs = client.request(method, path, headers={**site.headers[other], **accept})
                admin = client.request(method, path, headers={**site.headers["admin"], **accept})
                if mine.status_code != 200 or _empty(mine):
                    failures.append(f"{path} as its owner: {mine.status_code}")
                if admin.status_code != 200:
                    failures.append(f"{path} as admin: {admin.status_code}")
                if not (theirs.status_code == 404 or _empty(theirs)):
                    failures.append(f"{path} as {other} (wrong facility): {theirs.status_code}")
    assert not failures, "\n".join(failures)
    assert len(routes) >= 20


def test_qido_and_wado_uri_across_facilities(site: Site) -> None:
    """QIDO-RS at each level and WADO-URI (PS3.18 9.1) with real tokens."""
    north, south = site.headers["north"], site.headers["south"]
    base = site.server.dicomweb_url
    for level in ("studies", "series", "instances"):
        found = httpx.get(f"{base}/{level}?limit=1000", headers=north, timeout=30).json()
        uids = {item["0020000D"]["Value"][0] for item in found}
        assert site.north.study in uids and site.south.study not in uids, level
    by_uid = httpx.get(f"{base}/studies?StudyInstanceUID={site.north.study}", headers=south)
    assert by_uid.status_code == 200 and by_uid.json() == []
    wado = (
        f"{site.server.http_url}/wado?requestType=WADO&studyUID={site.north.study}"
        f"&seriesUID={site.north.series}&objectUID={site.north.sop}"
    )
    for content_type in ("application/dicom", "image/jpeg"):
        url = f"{wado}&contentType={content_type}"
        assert httpx.get(url, headers=north, timeout=30).status_code == 200
        assert httpx.get(url, headers=south, timeout=30).status_code == 404


def test_worklist_writes_across_facilities(site: Site) -> None:
    """Changing or cancelling another facility's scheduled step is as if it were absent."""
    item = f"{site.server.http_url}/workflow/worklist/{site.north.item}"
    south = site.headers["south"]
    assert httpx.put(item, json=item_json("X"), headers=south).status_code == 404
    assert httpx.patch(item, json={"patient_sex": "M"}, headers=south).status_code == 404
    assert httpx.post(f"{item}/cancel", headers=south).status_code == 404
    assert httpx.delete(item, headers=south).status_code == 404
    listed = httpx.get(f"{site.server.http_url}/workflow/worklist", headers=south).json()
    assert site.north.item not in {i["id"] for i in listed}
    assert httpx.get(item, headers=site.headers["north"]).status_code == 200


def _stream(site: Site, who: str, until: str, seconds: float = 20) -> str:
    """The event stream as ``who`` from the start, until ``until`` appears (or timeout)."""
    seen = ""
    deadline = time.monotonic() + seconds
    with httpx.stream(
        "GET",
        f"{site.server.http_url}/workflow/events?after=0",
        headers=site.headers[who],
        timeout=httpx.Timeout(seconds, read=2.0),
    ) as response:
        assert response.status_code == 200
        try:
            for line in response.iter_lines():
                if line.startswith("data:"):
                    seen += json.dumps(json.loads(line[5:])) + "\n"
                if until in seen or time.monotonic() > deadline:
                    break
        except httpx.ReadTimeout:
            pass
    return seen


def test_the_event_stream_across_facilities(site: Site) -> None:
    """``GET /workflow/events`` with a real token: the other facility's studies, items and
    procedure steps never appear."""
    south_view = _stream(site, "south", site.south.mpps)
    assert site.south.study in south_view and site.south.mpps in south_view
    for secret in (site.north.study, site.north.item, site.north.mpps):
        assert secret not in south_view
    north_view = _stream(site, "north", site.north.mpps)
    assert site.north.study in north_view and site.south.study not in north_view
