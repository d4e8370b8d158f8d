"""Operation papercuts a new user met (issue 14 defect 10), each guarded here."""

from __future__ import annotations

from pathlib import Path

import httpx
from pydicom.uid import BasicTextSRStorage

from noctis_pacs.core.settings import Settings
from storage.archive import Archive, Origin
from tests.conftest import RunningServer
from tests.factory import make_dataset, make_instance, to_bytes, uid
from tests.test_cli import run


def sr_instance(study_uid: str, series_uid: str) -> bytes:
    """A Basic Text SR: no Image Pixel module, no Pixel Data."""
    ds = make_dataset(
        study_uid=study_uid, series_uid=series_uid, modality="SR", sop_class=BasicTextSRStorage
    )
    for keyword in (
        "PixelData", "Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit",
        "PixelRepresentation", "SamplesPerPixel", "PhotometricInterpretation",
    ):  # fmt: skip
        delattr(ds, keyword)
    return to_bytes(ds)


def test_rendered_sr_says_no_pixel_data(server: RunningServer) -> None:
    """/rendered of an SR answers that it has no pixel data (PS3.18 9.5: a rendered
    resource of an instance that holds no image cannot be produced), not a word about
    frame offsets; its frames too."""
    study, series = uid(), uid()
    body = sr_instance(study, series)
    stored = httpx.post(
        f"{server.dicomweb_url}/studies",
        content=b"--b\r\nContent-Type: application/dicom\r\n\r\n" + body + b"\r\n--b--\r\n",
        headers={"Content-Type": 'multipart/related; type="application/dicom"; boundary=b'},
        timeout=30,
    )
    assert stored.status_code == 200, stored.text
    sop = stored.json()["00081199"]["Value"][0]["00081155"]["Value"][0]
    base = f"{server.dicomweb_url}/studies/{study}/series/{series}/instances/{sop}"
    rendered = httpx.get(f"{base}/rendered", headers={"Accept": "image/png"}, timeout=30)
    assert rendered.status_code == 422
    assert "no pixel data" in rendered.text and "offsets" not in rendered.text
    frames = httpx.get(f"{base}/frames/1", timeout=30)
    assert 400 <= frames.status_code < 500 and "offsets" not in frames.text


def test_render_output_format_follows_the_suffix(tmp_path: Path, archive: Archive) -> None:
    """``render -o x.gif`` is refused before any work (it wrote PNG bytes named .gif);
    ``.jpg`` writes JPEG, ``.png`` PNG."""
    study = uid()
    assert archive.store_bytes(make_instance(study_uid=study), Origin("test")).ok
    opts = ["--data-dir", archive.settings.storage.data_dir, "--db", archive.settings.db_url]
    gif = run("render", "--study", study, "-o", str(tmp_path / "x.gif"), *opts, cwd=tmp_path)
    assert gif.returncode == 2 and ".gif" in gif.stderr and ".png" in gif.stderr
    assert not (tmp_path / "x.gif").exists()
    jpg = run("render", "--study", study, "-o", str(tmp_path / "x.jpg"), *opts, cwd=tmp_path)
    assert jpg.returncode == 0 and (tmp_path / "x.jpg").read_bytes()[:2] == b"\xff\xd8"
    png = run("render", "--study", study, "-o", str(tmp_path / "x.PNG"), *opts, cwd=tmp_path)
    assert png.returncode == 0 and (tmp_path / "x.PNG").read_bytes()[:4] == b"\x89PNG"
    sr_study = uid()
    assert archive.store_bytes(sr_instance(sr_study, uid()), Origin("test")).ok
    sr = run("render", "--study", sr_study, "-o", str(tmp_path / "sr.png"), *opts, cwd=tmp_path)
    assert sr.returncode == 1 and "no pixel data" in sr.stderr


def test_deleted_study_leaves_the_study_status(settings: Settings, archive: Archive) -> None:
    """A study tracked by the workflow worker and then deleted no longer shows in the
    study status (one study, recent studies)."""
    tracker = archive.tracker
    kept, deleted = uid(), uid()
    for study in (kept, deleted):
        assert archive.store_bytes(make_instance(study_uid=study), Origin("test")).ok
    tracker.scan()
    assert tracker.status(deleted)["instances"] == 1
    assert archive.delete(study_uid=deleted) == 1
    assert tracker.status(deleted) is None
    assert [s["study_instance_uid"] for s in tracker.recent()] == [kept]
    assert archive.store_bytes(make_instance(study_uid=deleted), Origin("test")).ok
    tracker.scan()
    assert tracker.status(deleted)["instances"] == 1, "a study sent again is tracked again"
