"""`noctis-pacs render`: frames, MPR planes and MIPs written to files."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from storage.archive import Archive, Origin
from tests.factory import ct_series, to_bytes, uid
from tests.test_cli import run


def test_render_frame_mpr_and_mip(tmp_path: Path, archive: Archive) -> None:
    study, series = uid(), uid()
    for ds in ct_series(12, 32, study_uid=study, series_uid=series):
        assert archive.store_bytes(to_bytes(ds), Origin("test")).ok
    opts = ["--data-dir", archive.settings.storage.data_dir, "--db", archive.settings.db_url]
    frame = run("render", "--study", study, "-o", str(tmp_path / "f.png"), *opts, cwd=tmp_path)
    assert frame.returncode == 0, frame.stderr
    assert Image.open(tmp_path / "f.png").size == (32, 32)

    plane = run(
        "render",
        "--study",
        study,
        "--series",
        series,
        "--mpr",
        "--plane",
        "coronal",
        "-o",
        str(tmp_path / "c.jpg"),
        *opts,
        cwd=tmp_path,
    )
    assert plane.returncode == 0, plane.stderr
    assert "position" in plane.stdout and "orientation 1\\0\\0\\0\\0\\-1" in plane.stdout
    assert Image.open(tmp_path / "c.jpg").format == "JPEG"

    mip = run(
        "render",
        "--study",
        study,
        "--series",
        series,
        "--mip",
        "--thickness",
        "5",
        "-o",
        str(tmp_path / "m.png"),
        *opts,
        cwd=tmp_path,
    )
    assert mip.returncode == 0, mip.stderr
    assert Image.open(tmp_path / "m.png").size == (32, 32)

    missing = run("render", "--study", uid(), "-o", str(tmp_path / "x.png"), *opts, cwd=tmp_path)
    assert missing.returncode == 1 and "no such" in missing.stderr
    single = run(
        "render",
        "--study",
        study,
        "--series",
        series,
        "--mpr",
        "--instance",
        "1.2.3",
        "-o",
        str(tmp_path / "x.png"),
        *opts,
        cwd=tmp_path,
    )
    assert single.returncode == 1
