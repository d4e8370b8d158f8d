"""The web application in headless Chromium against the real server.

One seeded server for the module (SQLite; the pages only use the HTTP APIs, whose
backends are tested elsewhere).  Every test asserts zero console errors (the
``watched`` fixture) and saves a screenshot under ``test-artifacts/ui/``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import RunningServer, db_url_for, start_server
from tests.factory import ct_series, make_instance, to_bytes, uid
from tests.ui_support import PageWatch, browser, stow_all, wait_until, watched

TODAY = dt.date.today().strftime("%Y%m%d")
OLD = "20190301"
STUDIES = 30  # older studies; 3 more are dated today
CT_SLICES = 24


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    base: Path = tmp_path_factory.mktemp("ui")
    srv = start_server(
        base / "data",
        db_url_for("sqlite", base / "data"),
        config="[workflow]\npoll_interval_seconds = 0.2\n",
    )
    instances = [
        make_instance(
            patient_name=f"Old^Patient{n:02d}",
            patient_id=f"OLD{n:02d}",
            accession=f"A{n:04d}",
            study_date=OLD,
            modality="MR" if n % 2 else "OT",
        )
        for n in range(STUDIES)
    ]
    instances += [
        make_instance(patient_name=f"Today^Patient{n}", patient_id=f"NEW{n}", study_date=TODAY)
        for n in range(2)
    ]
    study_uid, series_uid = uid(), uid()
    ct = list(ct_series(CT_SLICES, 64, study_uid=study_uid, series_uid=series_uid))
    for ds in ct:
        ds.StudyDate = TODAY
        ds.StudyDescription = "CT head phantom"
        ds.SeriesDescription = "Axial"
    instances += [to_bytes(ds) for ds in ct]
    stow_all(srv.http_url, instances)
    yield {"server": srv, "ct_study": study_uid, "ct_series": series_uid}
    srv.stop()


def server_of(seeded: dict[str, Any]) -> RunningServer:
    return seeded["server"]  # type: ignore[no-any-return]


def total_shown(page: Any) -> int:
    wait_until(page, "() => document.querySelector('main').dataset.loading === 'false'")
    return int(page.locator(".count").get_attribute("data-total"))


def test_study_browser_search_sort_page_and_thumbnails(
    seeded: dict[str, Any], watched: PageWatch
) -> None:
    srv = server_of(seeded)
    page = watched.page
    page.goto(srv.http_url + "/")
    assert page.url.endswith("/ui/")
    page.wait_for_selector("tr.study")
    assert total_shown(page) == STUDIES + 3
    assert page.locator("tr.study").count() == 25
    assert page.locator(".count").inner_text().startswith("1–25 of 33")

    page.click("button.next")
    wait_until(page, "() => document.querySelector('.count').textContent.startsWith('26')")
    assert page.locator("tr.study").count() == 8
    assert page.locator("button.next").is_disabled()

    page.click("[data-range='today']")
    assert total_shown(page) == 3
    page.click("[data-range='any']")
    page.fill("input[name=PatientName]", "old^patient1")  # prefix, case-insensitive
    page.press("input[name=PatientName]", "Enter")
    assert total_shown(page) == 10
    page.select_option("select[name=ModalitiesInStudy]", "MR")
    page.click("form.search button[type=submit]")
    assert total_shown(page) == 5

    page.click("button:has-text('Clear')")
    assert total_shown(page) == STUDIES + 3
    page.click("th[data-key=PatientName] button")
    page.wait_for_selector("th[data-key=PatientName][aria-sort=ascending]")
    first = page.locator("tr.study td:nth-child(2)").first.inner_text()
    assert first.startswith("Patient00 Old")
    page.click("th[data-key=PatientName] button")
    page.wait_for_selector("th[data-key=PatientName][aria-sort=descending]")
    wait_until(
        page,
        "() => document.querySelector('tr.study td:nth-child(2)').textContent.startsWith('Patient1 Today')",
    )

    page.fill("input[name=StudyDescription]", "head")
    page.press("input[name=StudyDescription]", "Enter")
    assert total_shown(page) == 1
    page.locator("tr.study button.expand").first.click()
    thumb = page.locator(".series-card img").first
    thumb.wait_for()
    wait_until(
        page,
        "() => [...document.querySelectorAll('.series-card img')].every(i => i.complete && i.naturalWidth > 0)",
    )
    assert (
        page.locator(".links a:has-text('Open in Weasis')")
        .get_attribute("href")
        .startswith("weasis://")
    )
    watched.screenshot("studies", width=1280, height=800)


def test_new_studies_appear_live(seeded: dict[str, Any], watched: PageWatch) -> None:
    srv = server_of(seeded)
    page = watched.page
    page.goto(srv.http_url + "/ui/#/studies")
    page.wait_for_selector("tr.study")
    before = total_shown(page)
    name = f"Live^Arrival{uid()[-5:]}"
    response = httpx.post(
        f"{srv.http_url}/dicom-web/studies",
        content=make_instance(patient_name=name, study_date=TODAY, study_time="235959"),
        headers={"Content-Type": "application/dicom", "Accept": "application/dicom+json"},
    )
    assert response.status_code == 200
    wait_until(
        page, f"() => document.querySelector('.count').dataset.total === '{before + 1}'", timeout=20
    )
    assert page.locator("tr.study.fresh").count() >= 1
    watched.screenshot("studies-live", width=1280, height=800)
