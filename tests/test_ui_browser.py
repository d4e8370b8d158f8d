"""The web application in headless Chromium against the real server.

One seeded server for the module (SQLite; the pages only use the HTTP APIs, whose
backends are tested elsewhere).  Every test asserts zero console errors (the
``watched`` fixture) and saves a screenshot under ``test-artifacts/ui/``.
"""

from __future__ import annotations

import datetime as dt
import io
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
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
    instances += [to_bytes(ds) for ds in phantom(study_uid, series_uid)]
    instances.append(
        make_instance(
            study_uid=study_uid,
            patient_name="Phantom^CT",
            patient_id="CT001",
            study_date=TODAY,
            series_number=2,
            rows=80,
            columns=120,
            StudyDescription="CT head phantom",  # study attributes agree across the study
        )
    )
    stow_all(srv.http_url, instances)
    yield {"server": srv, "ct_study": study_uid, "ct_series": series_uid}
    srv.stop()


def phantom(study_uid: str, series_uid: str, size: int = 64) -> list[Any]:
    """An axial CT series: a 300 HU sphere in water (0 HU) in air, 0.7 mm pixels, 1.5 mm slices."""
    zz, yy, xx = np.mgrid[0:CT_SLICES, 0:size, 0:size].astype(np.float32)
    centre = np.array([CT_SLICES / 2, size / 2, size / 2])
    radius = (
        ((zz - centre[0]) * 1.5) ** 2
        + ((yy - centre[1]) * 0.7) ** 2
        + ((xx - centre[2]) * 0.7) ** 2
    ) ** 0.5
    hu = np.where(radius < 12, 300, np.where(radius < 20, 0, -1000)) + (xx // 8) * 10
    out = list(ct_series(CT_SLICES, size, study_uid=study_uid, series_uid=series_uid))
    for index, ds in enumerate(out):
        ds.StudyDate = TODAY
        ds.StudyDescription = "CT head phantom"
        ds.SeriesDescription = "Axial"
        ds.PixelData = (hu[index] + 1024).astype(np.int16).tobytes()
    return out


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

    # "Download zip": the study's stored files (WADO-RS as application/zip).
    with page.expect_download() as info:
        page.click(".links a.download")
    download = info.value
    assert download.suggested_filename == f"{seeded['ct_study']}.zip"
    with zipfile.ZipFile(download.path()) as zf:
        names = zf.namelist()
        assert len(names) == CT_SLICES + 1 and all(n.endswith(".dcm") for n in names)
        assert zf.read(names[0])[128:132] == b"DICM"


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


def shown(page: Any, selector: str = ".viewport.active") -> int:
    return int(page.locator(selector).get_attribute("data-shown") or -1)


def test_viewer_scroll_window_measure_layout_cine_attributes(
    seeded: dict[str, Any], watched: PageWatch
) -> None:
    srv = server_of(seeded)
    page = watched.page
    page.goto(f"{srv.http_url}/ui/#/study/{seeded['ct_study']}")
    viewport = page.locator(".viewport.active")
    wait_until(page, "() => document.querySelector('.viewport.active')?.dataset.shown === '0'")
    assert float(page.locator("main").get_attribute("data-first-image-ms")) > 0
    assert page.locator(".sidebar .series-card").count() == 2
    assert "Image 1 / 24" in page.locator(".viewport.active .overlay.bl").inner_text()
    assert "W 400 L 40" in page.locator(".viewport.active .overlay.br").inner_text()

    viewport.focus()
    for _ in range(3):
        page.keyboard.press("ArrowDown")
    wait_until(page, "() => document.querySelector('.viewport.active')?.dataset.shown === '3'")
    box = viewport.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.wheel(0, 120)
    wait_until(page, "() => Number(document.querySelector('.viewport.active')?.dataset.shown) > 3")
    page.keyboard.press("End")
    wait_until(page, "() => document.querySelector('.viewport.active')?.dataset.shown === '23'")
    assert page.locator(".viewport.active input[type=range]").input_value() == "24"
    page.locator(".viewport.active input[type=range]").fill("12")
    wait_until(page, "() => document.querySelector('.viewport.active')?.dataset.shown === '11'")
    assert "Slice 16.5 mm" in page.locator(".viewport.active .overlay.bl").inner_text()

    drawn = int(viewport.get_attribute("data-drawn"))
    page.select_option("select.preset", "bone")
    wait_until(
        page, f"() => Number(document.querySelector('.viewport.active')?.dataset.drawn) > {drawn}"
    )
    assert viewport.get_attribute("data-window") == "400,1800"
    assert "W 1800 L 400" in page.locator(".viewport.active .overlay.br").inner_text()

    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(cx, cy)
    page.mouse.down()
    page.mouse.move(cx + 60, cy - 40, steps=5)
    page.mouse.up()
    wait_until(
        page, "() => document.querySelector('.viewport.active')?.dataset.window !== '400,1800'"
    )
    center, width = (int(v) for v in viewport.get_attribute("data-window").split(","))
    assert width > 1800 and center < 400

    page.click("button[data-tool=measure]")
    size = page.evaluate(
        "() => { const c = document.querySelector('.viewport.active canvas');"
        " return [c.width, c.height, c.getBoundingClientRect().width]; }"
    )
    scale = min(size[0], size[1]) / 64 / (size[0] / size[2])  # CSS px per image pixel
    page.mouse.move(cx - 20 * scale, cy)
    page.mouse.down()
    page.mouse.move(cx + 20 * scale, cy, steps=4)
    page.mouse.up()
    label = viewport.get_attribute("data-measurement")
    assert label.endswith(" mm") and abs(float(label.split()[0]) - 40 * 0.7) < 0.5

    page.click("button.attributes-button")
    dialog = page.locator(".dialog.attributes")
    assert dialog.locator("tr[data-tag='00100010']").inner_text().count("Phantom") == 1
    dialog.locator("input[type=search]").fill("PixelSpacing")
    assert dialog.locator("tbody tr:not(.hidden)").count() == 1
    page.keyboard.press("Escape")
    assert page.locator(".dialog.attributes").count() == 0
    watched.screenshot("viewer", width=1280, height=800)

    page.click("button.cine")
    before = shown(page)
    wait_until(
        page, f"() => document.querySelector('.viewport.active')?.dataset.shown !== '{before}'"
    )
    page.click("button.cine")
    assert viewport.get_attribute("data-cine") == "off"

    page.click("button[data-layout='2x2']")
    assert page.locator(".viewport").count() == 4
    wait_until(page, "() => document.querySelectorAll('.viewport')[1].dataset.shown === '0'")
    page.click("button[data-layout='1x2']")
    assert page.locator(".viewport").count() == 2
    watched.screenshot("viewer-1x2", width=1280, height=800)


def plane_state(page: Any, plane: str) -> dict[str, Any]:
    return page.evaluate(
        """(plane) => {
            const el = document.querySelector(`.plane-${plane}`);
            const c = el.querySelector('canvas');
            const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let sum = 0;
            for (let i = 0; i < data.length; i += 4) sum += data[i + 1];
            return {...el.dataset, sum};
        }""",
        plane,
    )


def test_mpr_crosshair_moves_the_other_planes_oblique_and_mip_slab(
    seeded: dict[str, Any], watched: PageWatch
) -> None:
    srv = server_of(seeded)
    page = watched.page
    page.goto(f"{srv.http_url}/ui/#/mpr/{seeded['ct_study']}/{seeded['ct_series']}")
    for plane in ("axial", "coronal", "sagittal"):
        wait_until(page, f"() => document.querySelector('.plane-{plane}')?.dataset.updated === '1'")
    axial, coronal, sagittal = (plane_state(page, p) for p in ("axial", "coronal", "sagittal"))
    assert (
        "/mpr?" in coronal["url"]
        and coronal["orientation"] == "1.000,0.000,0.000,0.000,0.000,-1.000"
    )
    assert float(axial["ms"]) > 0

    box = page.locator(".plane-axial").bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.5 + 40, box["y"] + box["height"] * 0.5 + 30)
    wait_until(page, "() => document.querySelector('.plane-coronal')?.dataset.updated === '2'")
    wait_until(page, "() => document.querySelector('.plane-sagittal')?.dataset.updated === '2'")
    moved_coronal, moved_sagittal = plane_state(page, "coronal"), plane_state(page, "sagittal")
    assert page.locator(".plane-axial").get_attribute("data-updated") == "1"  # same plane
    assert moved_coronal["url"] != coronal["url"] and moved_sagittal["url"] != sagittal["url"]
    assert moved_coronal["sum"] != coronal["sum"] and moved_sagittal["sum"] != sagittal["sum"]
    assert plane_state(page, "axial")["crosshair"] != axial["crosshair"]
    watched.screenshot("mpr", width=1280, height=800)

    page.locator("input.angle").fill("30")
    wait_until(page, "() => document.querySelector('.plane-coronal')?.dataset.updated === '3'")
    oblique = plane_state(page, "coronal")
    assert oblique["orientation"].split(",")[:2] == ["0.866", "0.500"]

    page.select_option("select.mode", "max")
    page.locator("input.thickness").fill("30")
    wait_until(
        page,
        "() => (document.querySelector('.plane-axial')?.dataset.url || '').includes('thickness=30')",
    )
    slab = plane_state(page, "axial")
    assert "/mip?" in slab["url"] and "mode=max" in slab["url"]
    assert slab["sum"] != axial["sum"]
    watched.screenshot("mip", width=1280, height=800)


def test_upload_in_batches_with_progress_and_summary(
    seeded: dict[str, Any], watched: PageWatch, tmp_path: Path
) -> None:
    """Files picked and dropped go by STOW-RS in batches; the summary counts stored,
    already stored and rejected files, each refusal with its reason."""
    srv = server_of(seeded)
    page = watched.page
    study = uid()
    paths = []
    for n in range(12):
        path = tmp_path / f"im{n:02d}.dcm"
        path.write_bytes(
            make_instance(study_uid=study, patient_name="Upload^Test", instance_number=n)
        )
        paths.append(path)
    duplicate = make_instance(patient_name="Upload^Again")
    stow_all(srv.http_url, [duplicate])
    (tmp_path / "again.dcm").write_bytes(duplicate)
    (tmp_path / "notes.txt").write_text("this is not DICOM\n" * 20)
    paths += [tmp_path / "again.dcm", tmp_path / "notes.txt"]

    page.goto(f"{srv.http_url}/ui/#/upload")
    page.set_input_files("input[type=file]:not([webkitdirectory])", [str(p) for p in paths])
    wait_until(page, "() => document.querySelector('main').dataset.upload === 'done'", timeout=60)
    assert page.locator(".batch").count() == 2
    assert page.locator(".batch[data-done=true]").count() == 2
    assert page.evaluate("() => document.querySelector('progress.overall').value") == 1
    assert page.locator(".summary .stored").get_attribute("data-count") == "12"
    assert page.locator(".summary .already").get_attribute("data-count") == "1"
    assert page.locator(".summary .rejected").get_attribute("data-count") == "1"
    rejected = page.locator("table.problems tr.rejected")
    assert rejected.locator("td").first.inner_text() == "notes.txt"
    assert len(rejected.locator("td").nth(2).inner_text()) > 5
    assert "already" in page.locator("table.problems tr.already td").nth(1).inner_text()
    watched.screenshot("upload", width=1280, height=800)

    count = httpx.get(f"{srv.dicomweb_url}/studies/{study}/instances").json()
    assert len(count) == 12

    # Drag and drop: a drop event carrying files (as a browser builds it).
    import base64

    dropped = [make_instance(patient_name="Upload^Dropped", instance_number=n) for n in range(2)]
    page.evaluate(
        """(blobs) => {
            const transfer = new DataTransfer();
            blobs.forEach((b64, i) => {
                const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
                transfer.items.add(new File([bytes], `drop${i}.dcm`));
            });
            const zone = document.querySelector('.dropzone');
            zone.dispatchEvent(new DragEvent('dragover', {dataTransfer: transfer, bubbles: true, cancelable: true}));
            zone.dispatchEvent(new DragEvent('drop', {dataTransfer: transfer, bubbles: true, cancelable: true}));
        }""",
        [base64.b64encode(d).decode() for d in dropped],
    )
    wait_until(
        page,
        "() => document.querySelector('main').dataset.upload === 'done'"
        " && document.querySelector('.summary .stored')?.dataset.count === '2'",
        timeout=30,
    )


def test_worklist_create_live_edit_cancel(seeded: dict[str, Any], watched: PageWatch) -> None:
    srv = server_of(seeded)
    page = watched.page
    # Accession numbers of this attempt only: a rerun of this test (same server) must
    # not find the items of the attempt before it.
    suffix = uuid.uuid4().hex[:6].upper()
    first, second = f"ACCWL1{suffix}", f"ACCWL2{suffix}"
    page.goto(f"{srv.http_url}/ui/#/worklist")
    page.wait_for_selector("table.worklist tbody tr")
    page.fill("input[name=patient_name]", "Sched^Alice")
    page.fill("input[name=patient_id]", "WL001")
    page.fill("input[name=accession_number]", first)
    page.select_option("select[name=modality]", "MR")
    page.fill("input[name=start_time]", "09:30")
    page.fill("input[name=description]", "MR knee")
    page.click("form.worklist-form button[type=submit]")
    row = page.locator(f"table.worklist tr:has-text('{first}')")
    row.wait_for()
    assert "SCHEDULED" in row.inner_text() and "MR knee" in row.inner_text()

    response = httpx.post(
        f"{srv.http_url}/workflow/worklist",
        json={
            "patient_name": "Remote^Bob",
            "patient_id": "WL002",
            "accession_number": second,
            "steps": [{"modality": "CT", "start_date": TODAY}],
        },
    )
    assert response.status_code == 201
    live = page.locator(f"table.worklist tr.fresh:has-text('{second}')")
    live.wait_for(timeout=20_000)

    row.locator("button.edit").click()
    assert page.input_value("input[name=patient_id]") == "WL001"
    page.fill("input[name=description]", "MR knee left")
    page.click("form.worklist-form button[type=submit]")
    row.filter(has_text="MR knee left").wait_for()
    item_id = row.get_attribute("data-id")
    assert httpx.get(f"{srv.http_url}/workflow/worklist/{item_id}").json()["steps"][0][
        "description"
    ] == ("MR knee left")

    cancel = row.locator("button.cancel")
    cancel.click()
    cancel.click()  # confirm
    row.locator(".status-pill.DISCONTINUED").wait_for()
    watched.screenshot("worklist", width=1280, height=800)


def test_tablet_width_viewer_and_study_list(seeded: dict[str, Any], browser: Any) -> None:
    """At tablet width (768x1024) the study list and the viewer stay usable."""
    from tests.ui_support import open_page

    srv = server_of(seeded)
    context, watch = open_page(browser, width=768, height=1024)
    try:
        page = watch.page
        page.goto(f"{srv.http_url}/ui/#/studies")
        page.wait_for_selector("tr.study")
        assert page.evaluate("() => document.body.scrollWidth") <= 768
        page.goto(f"{srv.http_url}/ui/#/study/{seeded['ct_study']}")
        wait_until(page, "() => document.querySelector('.viewport.active')?.dataset.shown === '0'")
        box = page.locator(".viewport.active").bounding_box()
        assert box["width"] > 500 and box["height"] > 500
        page.locator(".viewport.active").focus()
        page.keyboard.press("ArrowDown")
        wait_until(page, "() => document.querySelector('.viewport.active')?.dataset.shown === '1'")
        watch.screenshot("viewer-tablet", width=768, height=1024)
    finally:
        context.close()
    assert watch.errors == [], watch.errors


def test_audit_page_lists_and_filters_the_trail(seeded: dict[str, Any], watched: PageWatch) -> None:
    """The audit page reads GET /audit: what the other tests did is there, and the
    filters narrow it (here: the worklist creations)."""
    srv = server_of(seeded)
    page = watched.page
    page.goto(f"{srv.http_url}/ui/#/audit")
    wait_until(page, "() => Number(document.querySelector('.count')?.dataset.count) > 0")
    first = page.locator("table.audit-table tbody tr").first.locator("td").nth(4).inner_text()
    assert first
    page.fill("input[name=action]", first)
    page.press("input[name=action]", "Enter")
    wait_until(
        page,
        "() => (document.querySelector('.count')?.dataset.query || '').includes('action=')",
    )
    actions = page.locator("table.audit-table tbody tr td:nth-child(5)").all_inner_texts()
    assert actions and set(actions) == {first}
    watched.screenshot("audit", width=1280, height=800)


def test_admin_statistics_remotes_echo_jobs_and_health(
    seeded: dict[str, Any], watched: PageWatch
) -> None:
    """The admin page reads /api/statistics (counts, disk use, free space), manages remote
    AEs (add, C-ECHO with its reason, remove), lists send jobs and shows health."""
    from tests.conftest import free_port

    srv = server_of(seeded)
    page = watched.page
    page.goto(f"{srv.http_url}/ui/#/admin")
    studies = page.locator(".statistics dd[data-key=Studies]")
    studies.wait_for()
    assert int(studies.inner_text()) >= STUDIES
    assert page.locator(".statistics dd[data-key='Free space']").inner_text().endswith("B")
    assert page.locator(".statistics dd[data-key='Disk used']").inner_text().endswith("B")
    assert page.locator(".health dd[data-path='/readyz']").inner_text() == "ready"

    def add(name: str, port: int) -> Any:
        page.fill(".remote-form input[name=name]", name)
        page.fill(".remote-form input[name=ae_title]", "NOCTIS" if name == "SELF" else "NOBODY")
        page.fill(".remote-form input[name=host]", "127.0.0.1")
        page.fill(".remote-form input[name=port]", str(port))
        page.click(".remote-form button[type=submit]")
        row = page.locator(f"table.remotes tr[data-name={name}]")
        row.wait_for()
        return row

    me = add("SELF", srv.dimse_port)
    me.locator("button.echo").click()
    page.locator("table.remotes tr[data-name=SELF] .echo-result.ok").wait_for(timeout=20_000)
    gone = add("GONE", free_port())
    gone.locator("button.echo").click()
    failed = page.locator("table.remotes tr[data-name=GONE] .echo-result.error")
    failed.wait_for(timeout=30_000)
    assert failed.inner_text().startswith("failed: ") and len(failed.inner_text()) > 12

    # A send job (queued through the API) appears in the jobs table with its progress.
    sent = httpx.post(
        f"{srv.http_url}/api/jobs/send",
        json={"destination": "SELF", "study": seeded["ct_study"]},
        timeout=10,
    )
    assert sent.status_code == 202, sent.text
    job = sent.json()["id"]
    page.click("button.refresh")
    page.select_option("select[name=job-state]", "")
    page.locator(f"table.jobs tr[data-id='{job}']").wait_for()
    watched.screenshot("admin", width=1280, height=800)

    remove = gone.locator("button.remove")
    remove.click()
    assert remove.inner_text() == "Confirm remove"
    remove.click()
    page.locator("table.remotes tr[data-name=GONE]").wait_for(state="detached")
    assert httpx.get(f"{srv.http_url}/api/remotes/GONE", timeout=10).status_code == 404


def test_token_page_creates_shows_the_secret_once_and_revokes(
    seeded: dict[str, Any], watched: PageWatch
) -> None:
    """The token page: create (the secret shown once, and it works), list without secrets,
    revoke with a second click."""
    srv = server_of(seeded)
    page = watched.page
    page.goto(f"{srv.http_url}/ui/#/tokens")
    page.wait_for_selector("table.tokens tbody tr")
    page.fill(".token-form input[name=name]", "ui-reader")
    page.select_option(".token-form select[name=role]", "viewer")
    page.fill(".token-form input[name=facilities]", "North, South")
    page.fill(".token-form input[name=expires_days]", "30")
    page.click(".token-form button[type=submit]")
    secret = page.locator(".new-token .secret").inner_text()
    assert secret.startswith("noctis_") and len(secret) > 40
    row = page.locator("table.tokens tr[data-name=ui-reader]")
    row.wait_for()
    assert "North, South" in row.inner_text() and "viewer" in row.inner_text()
    assert secret not in page.locator("table.tokens").inner_text()
    watched.screenshot("tokens", width=1280, height=800)

    listed = httpx.get(f"{srv.http_url}/api/tokens", timeout=10)
    assert secret not in listed.text
    page.click(".new-token button.done")
    assert page.locator(".new-token").count() == 0
    assert secret not in page.content()

    revoke = row.locator("button.revoke")
    revoke.click()
    assert revoke.inner_text() == "Confirm revoke"
    revoke.click()
    page.locator("table.tokens tr[data-name=ui-reader][data-state=revoked]").wait_for()
    state = {t["name"]: t["state"] for t in httpx.get(f"{srv.http_url}/api/tokens").json()}
    assert state["ui-reader"] == "revoked"


def test_upload_of_a_zip_archive_with_a_non_dicom_member(
    seeded: dict[str, Any], watched: PageWatch, tmp_path: Path
) -> None:
    """A zip archive is opened in the browser (deflated and stored members, folders):
    its DICOM members are stored, a non-DICOM member and an encrypted one get their
    reason in the summary, a DICOMDIR is skipped."""
    srv = server_of(seeded)
    page = watched.page
    study = uid()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("CD/", b"")
        for n in range(5):
            data = make_instance(study_uid=study, patient_name="Zip^Upload", instance_number=n)
            method = zipfile.ZIP_DEFLATED if n % 2 else zipfile.ZIP_STORED
            zf.writestr(f"CD/IMG{n:04d}", data, compress_type=method)
        zf.writestr("CD/README.TXT", "Burnt by a modality; not DICOM.\n" * 10, zipfile.ZIP_DEFLATED)
        zf.writestr("DICOMDIR", b"\0" * 256)
        zf.writestr("CD/LOCKED.DCM", b"x" * 64)
    # zipfile cannot encrypt: mark the member encrypted (general purpose flag bit 0) in its
    # local header (flags at +6, name at +30) and central directory record (+8, +46).
    data = bytearray(buffer.getvalue())
    for offset, name_at in ((6, 30), (8, 46)):
        start = data.find(b"CD/LOCKED.DCM", data.find(b"PK\x01\x02") if offset == 8 else 0)
        data[start - name_at + offset] |= 0x1
    archive = tmp_path / "cd-export.zip"
    archive.write_bytes(bytes(data))

    page.goto(f"{srv.http_url}/ui/#/upload")
    page.set_input_files("input[type=file]:not([webkitdirectory])", [str(archive)])
    wait_until(page, "() => document.querySelector('main').dataset.upload === 'done'", timeout=60)
    assert page.locator(".summary .stored").get_attribute("data-count") == "5"
    assert page.locator(".summary .rejected").get_attribute("data-count") == "2"
    rows = {
        row.locator("td").first.inner_text(): row.locator("td").nth(2).inner_text()
        for row in page.locator("table.problems tr.rejected").all()
    }
    assert set(rows) == {"cd-export.zip/CD/README.TXT", "cd-export.zip/CD/LOCKED.DCM"}, rows
    assert "encrypted" in rows["cd-export.zip/CD/LOCKED.DCM"]
    assert len(rows["cd-export.zip/CD/README.TXT"]) > 5
    watched.screenshot("upload-zip", width=1280, height=800)
    stored = httpx.get(f"{srv.dicomweb_url}/studies/{study}/instances", timeout=10).json()
    assert len(stored) == 5
