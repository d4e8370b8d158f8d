"""The admin CLI, run as a user would: `noctis-pacs ...` in a subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import BIN, db_url_for
from tests.factory import make_instance, uid


def run(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "noctis-pacs"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture
def opts(tmp_path: Path, backend: str) -> list[str]:
    data = tmp_path / "data"
    return ["--data-dir", str(data), "--db", db_url_for(backend, data)]


def _corpus(folder: Path, count: int = 6) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    study = uid()
    uids = []
    for n in range(count):
        sop = uid()
        uids.append(sop)
        (folder / "sub" if n % 2 else folder).mkdir(exist_ok=True)
        target = (folder / "sub" if n % 2 else folder) / f"im{n}.dcm"
        target.write_bytes(make_instance(study_uid=study, sop_uid=sop, instance_number=n))
    return uids


def test_import_stats_verify_reindex_delete_round_trip(tmp_path: Path, opts: list[str]) -> None:
    uids = _corpus(tmp_path / "in")
    zipped = tmp_path / "more.zip"
    with zipfile.ZipFile(zipped, "w") as archive:
        archive.writestr("a/one.dcm", make_instance())
        archive.writestr("a/two.dcm", make_instance())
    result = run("import", str(tmp_path / "in"), str(zipped), *opts, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "stored 8, already stored 0, rejected 0 of 8" in result.stdout

    again = run("import", str(tmp_path / "in"), *opts, cwd=tmp_path)
    assert again.returncode == 0 and "already stored 6" in again.stdout

    stats = run("stats", "--json", *opts, cwd=tmp_path)
    data = json.loads(stats.stdout)
    assert data["instances"] == 8 and data["studies"] == 3 and data["bytes"] > 0
    assert set(data) == {"patients", "studies", "series", "instances", "bytes"}

    assert run("verify", *opts, cwd=tmp_path).returncode == 0
    reindexed = run("reindex", *opts, cwd=tmp_path)
    assert reindexed.returncode == 0 and "indexed 8 of 8" in reindexed.stdout
    assert json.loads(run("stats", "--json", *opts, cwd=tmp_path).stdout) == data

    deleted = run("delete", "--instance", uids[0], *opts, cwd=tmp_path)
    assert deleted.returncode == 0 and "deleted 1" in deleted.stdout
    assert run("delete", "--instance", uids[0], *opts, cwd=tmp_path).returncode == 1
    assert json.loads(run("stats", "--json", *opts, cwd=tmp_path).stdout)["instances"] == 7


def test_import_reports_each_rejection_and_fails(tmp_path: Path, opts: list[str]) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "good.dcm").write_bytes(make_instance())
    (folder / "notes.txt").write_text("not dicom")
    data = make_instance(rows=128, columns=128)
    (folder / "cut.dcm").write_bytes(data[:-500])
    result = run("import", str(folder), str(tmp_path / "missing.dcm"), *opts, cwd=tmp_path)
    assert result.returncode == 1
    assert "stored 1" in result.stdout and "rejected 3 of 4" in result.stdout
    assert "notes.txt: not a DICOM Part 10 file" in result.stdout
    assert "cut.dcm: Pixel Data" in result.stdout
    assert "missing.dcm: " in result.stdout and "no such file" in result.stdout


def test_verify_finds_orphans(tmp_path: Path, opts: list[str]) -> None:
    _corpus(tmp_path / "in", 2)
    run("import", str(tmp_path / "in"), *opts, cwd=tmp_path)
    orphan = tmp_path / "data" / "blobs" / "001" / ("0011" + "a" * 28 + ".dcm")
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(make_instance())
    result = run("verify", "--json", *opts, cwd=tmp_path)
    assert result.returncode == 1
    assert json.loads(result.stdout)["orphans"] == ["0011" + "a" * 28]


def test_config_errors_are_clear(tmp_path: Path) -> None:
    (tmp_path / "bad.toml").write_text('[storage]\nfsync = "sometimes"\n')
    result = run("stats", "--config", str(tmp_path / "bad.toml"), cwd=tmp_path)
    assert result.returncode == 2
    assert "storage.fsync" in result.stderr and "always" in result.stderr
    result = run("stats", "--db", "mysql://x", cwd=tmp_path)
    assert result.returncode == 2 and "storage.db" in result.stderr


def test_old_index_is_refused_naming_db_migrate(tmp_path: Path, opts: list[str]) -> None:
    assert run("stats", *opts, cwd=tmp_path).returncode == 0
    from storage.db import open_database

    db = open_database(opts[3])
    db.transaction(lambda conn: conn.execute("UPDATE schema_version SET version = version - 1000"))
    db.close()
    result = run("stats", *opts, cwd=tmp_path)
    assert result.returncode == 1 and "noctis-pacs db migrate" in result.stderr


def test_default_data_dir_is_under_the_working_tree(tmp_path: Path) -> None:
    result = run("stats", "--json", cwd=tmp_path)
    assert result.returncode == 0
    assert (tmp_path / "data" / "index.sqlite3").exists()


def test_stored_instances_survive_kill_9(tmp_path: Path, backend: str) -> None:
    """An instance reported as stored survives a kill -9 right after the report."""
    data = tmp_path / "data"
    url = db_url_for(backend, data)
    script = f"""
import sys, warnings
warnings.simplefilter("ignore")
from pathlib import Path
from storage.archive import Archive, Origin
from tests.conftest import make_settings
from tests.factory import make_instance
archive = Archive(make_settings(Path({str(data)!r}), {url!r}, storage={{"fsync": "always"}}))
for n in range(1000):
    outcome = archive.store_bytes(make_instance(), Origin("test"))
    print(outcome.status.value, outcome.sop_instance_uid, flush=True)
"""
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    reported = []
    assert proc.stdout is not None
    for line in proc.stdout:
        status, sop = line.split()
        assert status == "stored"
        reported.append(sop)
        if len(reported) == 40:
            os.kill(proc.pid, signal.SIGKILL)
            break
    proc.wait()
    from storage.archive import Archive
    from tests.conftest import make_settings

    archive = Archive(make_settings(data, url))
    try:
        for sop in reported:
            assert archive.locate_uids(sop_uid=sop), sop
        report = archive.verify()
        assert not report["missing"] and not report["corrupt"]
    finally:
        archive.close()
