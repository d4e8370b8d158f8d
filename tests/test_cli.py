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
    """Options naming a new archive, created as a user would (``db migrate``)."""
    data = tmp_path / "data"
    options = ["--data-dir", str(data), "--db", db_url_for(backend, data)]
    created = run("db", "migrate", *options, cwd=tmp_path)
    assert created.returncode == 0 and "created a new archive" in created.stdout, created.stderr
    return options


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


def test_verify_and_reindex_agree_on_every_unknown_file(tmp_path: Path, opts: list[str]) -> None:
    """Issue 14 defect 10: what ``verify`` says ``reindex`` will do with a file the index
    does not know is what ``reindex`` does; a file in an unexpected folder is reported by
    both and crashes neither."""
    uids = _corpus(tmp_path / "in", 2)
    assert run("import", str(tmp_path / "in"), *opts, cwd=tmp_path).returncode == 0
    blobs = tmp_path / "data" / "blobs"
    adoptable, junk, duplicate = ("00a" + c * 29 for c in "bcd")
    (blobs / "00a").mkdir(exist_ok=True)
    (blobs / "00a" / f"{adoptable}.dcm").write_bytes(make_instance())
    (blobs / "00a" / f"{junk}.dcm").write_bytes(b"not dicom at all" * 20)
    (blobs / "00a" / f"{duplicate}.dcm").write_bytes(make_instance(sop_uid=uids[0]))
    (blobs / "zzz").mkdir()
    (blobs / "zzz" / "notes.txt").write_text("hello")
    (blobs / "00a" / ("fff" + "e" * 29 + ".dcm")).write_bytes(make_instance())  # wrong folder
    (blobs / "loose.dcm").write_bytes(make_instance())

    verified = run("verify", "--json", *opts, cwd=tmp_path)
    assert verified.returncode == 1
    report = json.loads(verified.stdout)
    assert report["orphans"] == [adoptable]
    skipped_by_verify = {item["blob"]: item["reason"] for item in report["unadoptable"]}
    assert set(skipped_by_verify) == {junk, duplicate}
    assert sorted(report["strays"]) == sorted(
        ["zzz/notes.txt", "loose.dcm", f"00a/fff{'e' * 29}.dcm"]
    )
    text = run("verify", *opts, cwd=tmp_path).stdout
    assert f"orphan blob {adoptable} (not in the index; `reindex` adopts it)" in text
    assert f"orphan blob {junk}: not a readable DICOM file" in text
    assert "stray file blobs/zzz/notes.txt" in text

    reindexed = run("reindex", *opts, cwd=tmp_path)
    assert "Traceback" not in reindexed.stderr, reindexed.stderr
    assert reindexed.returncode == 1
    assert "1 added" in reindexed.stdout
    for key, reason in skipped_by_verify.items():
        assert f"skipped blob {key}: {reason}" in reindexed.stdout
    assert "skipped blob zzz/notes.txt" in reindexed.stdout
    stats = json.loads(run("stats", "--json", *opts, cwd=tmp_path).stdout)
    assert stats["instances"] == 3
    after = json.loads(run("verify", "--json", *opts, cwd=tmp_path).stdout)
    assert after["orphans"] == [] and set(i["blob"] for i in after["unadoptable"]) == {
        junk,
        duplicate,
    }


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
    assert run("db", "migrate", cwd=tmp_path).returncode == 0
    assert (tmp_path / "data" / "index.sqlite3").exists()
    result = run("stats", "--json", cwd=tmp_path)
    assert result.returncode == 0 and json.loads(result.stdout)["instances"] == 0


@pytest.mark.parametrize(
    "verb",
    [
        ["stats"],
        ["import", "x.dcm"],
        ["verify"],
        ["reindex"],
        ["delete", "--study", "1.2.3"],
        ["worklist", "list"],
        ["render", "--study", "1.2.3", "-o", "x.png"],
    ],
)
def test_verbs_refuse_to_create_an_archive(tmp_path: Path, verb: list[str]) -> None:
    """Issue 14 defect 9: run from another folder, a verb says where it looked and how
    to point it at the archive, exits non-zero and creates nothing."""
    (tmp_path / "x.dcm").write_bytes(make_instance())
    result = run(*verb, cwd=tmp_path)
    assert result.returncode == 1, result.stdout
    message = result.stderr
    assert "no archive found" in message and str(tmp_path / "data") in message
    assert "--data-dir" in message and "NOCTIS_CONFIG" in message and "--config" in message
    assert "db migrate" in message and "Traceback" not in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.dcm"]


def test_create_flag_and_config_env_point_a_verb(tmp_path: Path, backend: str) -> None:
    """``--create`` makes a new archive on purpose; NOCTIS_CONFIG points a verb at one."""
    data = tmp_path / "site"
    url = db_url_for(backend, data)
    created = run("import", "--create", "--data-dir", str(data), "--db", url, "/nonexistent",
                  cwd=tmp_path)  # fmt: skip
    assert "rejected 1 of 1" in created.stdout, created.stderr
    config = tmp_path / "noctis.toml"
    config.write_text(f'[storage]\ndata_dir = "{data}"\ndb = "{url}"\n')
    other = tmp_path / "elsewhere"
    other.mkdir()
    stats = run("stats", "--json", cwd=other, env={"NOCTIS_CONFIG": str(config)})
    assert stats.returncode == 0 and json.loads(stats.stdout)["instances"] == 0, stats.stderr
    if backend == "postgresql":
        empty = db_url_for(backend, data)
        refused = run("stats", "--data-dir", str(data), "--db", empty, cwd=other)
        assert refused.returncode == 1 and "has no Noctis PACS schema" in refused.stderr
    assert list(other.iterdir()) == []


def test_version_flag() -> None:
    result = run("--version", cwd=Path.cwd())
    assert result.returncode == 0 and result.stdout.startswith("noctis-pacs ")


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
