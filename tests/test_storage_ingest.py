"""The one ingest path: every bundled file, duplicates, rejects, failure injection,
frame offsets — on both index backends."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.encaps import generate_frames

from storage.archive import Archive, Origin, Status
from storage.ingest import RejectKind
from tests.blob_support import overwrite_blob, remove_blob
from tests.factory import bundled_dicom_files, make_dataset, make_instance, to_bytes, uid

ORIGIN = Origin("test", ae="TESTSCU", host="127.0.0.1")


def test_every_readable_bundled_file_is_stored(archive: Archive) -> None:
    """Every pydicom bundled Part 10 file with its UIDs is stored as received (byte for byte)."""
    files = bundled_dicom_files()
    assert len(files) > 100
    for path in files:
        outcome = archive.store_path(path, ORIGIN)
        if path.name == "MR_truncated.dcm":  # pydicom reads its header; Pixel Data is cut short
            assert outcome.reject_kind is RejectKind.TRUNCATED, path.name
            continue
        assert outcome.ok, (path.name, outcome.reason)
    stats = archive.stats()
    assert stats["instances"] > 80
    # Byte-for-byte: the blob of a stored instance equals the last file with its UID.
    last_by_uid = {}
    for path in files:
        if path.name != "MR_truncated.dcm":
            last_by_uid[str(dcmread(path, stop_before_pixels=True).SOPInstanceUID)] = path
    for sop_uid, path in list(last_by_uid.items())[:40]:
        (location,) = archive.locate_uids(sop_uid=sop_uid)
        assert b"".join(archive.iter_blob(location)) == path.read_bytes()


def test_duplicate_identical_is_noop_and_changed_overwrites(archive: Archive) -> None:
    ds = make_dataset()
    first = archive.store_bytes(to_bytes(ds), ORIGIN)
    assert first.status is Status.STORED
    again = archive.store_bytes(to_bytes(ds), ORIGIN)
    assert again.status is Status.ALREADY_STORED
    assert archive.stats()["instances"] == 1
    blobs_before = list(archive.blobs.iter_keys())
    ds.SeriesDescription = "changed"
    changed = archive.store_bytes(to_bytes(ds), ORIGIN)
    assert changed.status is Status.STORED and changed.warnings
    assert archive.stats()["instances"] == 1
    blobs_after = list(archive.blobs.iter_keys())
    assert len(blobs_after) == 1 and blobs_after != blobs_before
    (row,) = archive.query(_q("IMAGE", SOPInstanceUID=ds.SOPInstanceUID)).rows
    assert row["SOPInstanceUID"] == ds.SOPInstanceUID


def test_keep_first_policy(tmp_path: Path, backend: str) -> None:
    from tests.conftest import db_url_for, make_settings

    settings = make_settings(
        tmp_path / "d", db_url_for(backend, tmp_path / "d"), storage={"duplicates": "keep_first"}
    )
    archive = Archive(settings)
    try:
        ds = make_dataset()
        assert archive.store_bytes(to_bytes(ds), ORIGIN).status is Status.STORED
        ds.SeriesDescription = "changed"
        outcome = archive.store_bytes(to_bytes(ds), ORIGIN)
        assert outcome.status is Status.ALREADY_STORED
        meta = archive.metadata(ds.StudyInstanceUID)[0]
        assert "changed" not in meta
    finally:
        archive.close()


@pytest.mark.parametrize(
    ("payload", "kind"),
    [
        (b"this is not DICOM at all", RejectKind.NOT_DICOM),
        (b"\x00" * 128 + b"DICM" + b"\x02\x00", RejectKind.NOT_DICOM),
    ],
)
def test_garbage_is_rejected_and_nothing_lost(
    archive: Archive, payload: bytes, kind: RejectKind
) -> None:
    kept = archive.store_bytes(make_instance(), ORIGIN)
    outcome = archive.store_bytes(payload, ORIGIN)
    assert outcome.status is Status.REJECTED
    assert outcome.reject_kind in (kind, RejectKind.TRUNCATED)
    assert outcome.reason
    assert archive.stats()["instances"] == 1
    assert archive.locate_uids(sop_uid=kept.sop_instance_uid)
    assert list(archive.blobs.tmp.rglob("*.part")) == []


def test_truncated_file_is_rejected(archive: Archive) -> None:
    data = make_instance(rows=128, columns=128)
    outcome = archive.store_bytes(data[: len(data) - 1000], ORIGIN)
    assert outcome.status is Status.REJECTED
    assert outcome.reject_kind is RejectKind.TRUNCATED
    assert "Pixel Data" in outcome.reason
    assert archive.stats()["instances"] == 0


@pytest.mark.parametrize("missing", ["SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"])
def test_missing_uid_is_rejected(archive: Archive, missing: str) -> None:
    ds = make_dataset()
    delattr(ds, missing)
    ds.preamble = b"\x00" * 128
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=False)
    outcome = archive.store_bytes(buffer.getvalue(), ORIGIN)
    assert outcome.status is Status.REJECTED
    assert outcome.reject_kind is RejectKind.MISSING_ATTRIBUTE
    assert missing in outcome.reason
    assert archive.stats()["instances"] == 0


def test_study_uid_mismatch_is_refused(archive: Archive) -> None:
    outcome = archive.store_bytes(make_instance(), ORIGIN, expected_study_uid=uid())
    assert outcome.status is Status.REJECTED
    assert outcome.reject_kind is RejectKind.STUDY_MISMATCH


def test_failure_between_blob_write_and_commit_leaves_no_orphan(archive: Archive) -> None:
    """A failure after the blob is written but before commit: no index row, no blob."""
    archive.store_bytes(make_instance(), ORIGIN)
    archive.ingestor.fault_after_blob_commit = RuntimeError("injected")
    outcome = archive.store_bytes(make_instance(), ORIGIN)
    archive.ingestor.fault_after_blob_commit = None
    assert outcome.status is Status.FAILED
    assert archive.stats()["instances"] == 1
    report = archive.verify()
    assert report["ok"], report
    assert len(list(archive.blobs.iter_keys())) == 1


def test_counts_after_ingest_and_delete(archive: Archive) -> None:
    study = uid()
    series_a, series_b = uid(), uid()
    sops = []
    for n in range(3):
        ds = make_dataset(study_uid=study, series_uid=series_a, modality="CT", instance_number=n)
        sops.append(ds.SOPInstanceUID)
        archive.store_bytes(to_bytes(ds), ORIGIN)
    for n in range(2):
        archive.store_bytes(
            make_instance(study_uid=study, series_uid=series_b, modality="MR", instance_number=n),
            ORIGIN,
        )
    (row,) = archive.query(_q("STUDY", StudyInstanceUID=study)).rows
    assert row["NumberOfStudyRelatedSeries"] == 2
    assert row["NumberOfStudyRelatedInstances"] == 5
    assert row["ModalitiesInStudy"] == ["CT", "MR"]
    (patient,) = archive.query(_q("PATIENT", PatientID="PID001")).rows
    assert patient["NumberOfPatientRelatedStudies"] == 1
    assert patient["NumberOfPatientRelatedInstances"] == 5

    assert archive.delete(series_uid=series_b) == 2
    (row,) = archive.query(_q("STUDY", StudyInstanceUID=study)).rows
    assert row["NumberOfStudyRelatedSeries"] == 1
    assert row["NumberOfStudyRelatedInstances"] == 3
    assert row["ModalitiesInStudy"] == ["CT"]
    assert archive.delete(sop_uid=sops[0]) == 1
    (series_row,) = archive.query(_q("SERIES", SeriesInstanceUID=series_a)).rows
    assert series_row["NumberOfSeriesRelatedInstances"] == 2
    assert archive.delete(study_uid=study) == 2
    assert archive.stats() == {"patients": 0, "studies": 0, "series": 0, "instances": 0, "bytes": 0}
    assert list(archive.blobs.iter_keys()) == []


def test_counters_match_the_rows_after_mixed_stores_and_deletes(archive: Archive) -> None:
    """Every counter (series, study and patient instance, series and study counts, the
    study's modalities) equals what the rows say, whichever way an instance was counted:
    into a new row, an existing row the instance changes (a new Study Description), or
    an existing unchanged row (counted by the statement that reads it on SQLite);
    instances arriving out of order, new series in existing studies, a replaced
    instance, an instance refused for a series of another study, instances naming
    another patient than their study's, deletions."""
    studies = [uid() for _ in range(3)]
    series = {study: [uid(), uid()] for study in studies}
    stored = []
    for n in range(30):
        study = studies[(n * 7) % 3]
        ds = make_dataset(
            study_uid=study,
            series_uid=series[study][(n // 3) % 2],
            patient_id=f"P{studies.index(study) % 2}",
            modality=("CT", "MR")[(n // 3) % 2],
            instance_number=n,
        )
        if n % 5 == 0:
            ds.StudyDescription = f"changed {n}"
        stored.append(ds)
        assert archive.store_bytes(to_bytes(ds), ORIGIN).status is Status.STORED
    stored[4].InstanceNumber = 99  # the same SOP Instance UID, other content: replaced
    assert archive.store_bytes(to_bytes(stored[4]), ORIGIN).status is Status.STORED
    # A series of another study: refused, its counting rolled back with the rest.
    intruder = make_dataset(study_uid=uid(), series_uid=stored[1].SeriesInstanceUID)
    refused = archive.store_bytes(to_bytes(intruder), ORIGIN)
    assert refused.reject_kind is RejectKind.CONFLICT
    # Another Patient ID in a stored study, a new one and one that exists (unchanged):
    # the instance counts under the study's patient (the one it arrived with first).
    for patient_id in ("P9", "P1"):
        moved = make_dataset(
            study_uid=studies[0],
            series_uid=series[studies[0]][0],
            patient_id=patient_id,
            modality="CT",
        )
        assert archive.store_bytes(to_bytes(moved), ORIGIN).status is Status.STORED
    _assert_counters_match_rows(archive)
    assert archive.delete(sop_uid=stored[0].SOPInstanceUID) == 1
    assert archive.delete(series_uid=series[studies[1]][0]) > 0
    _assert_counters_match_rows(archive)
    assert archive.store_bytes(to_bytes(stored[0]), ORIGIN).status is Status.STORED
    _assert_counters_match_rows(archive)


def _assert_counters_match_rows(archive: Archive) -> None:
    with archive.db.reader() as conn:
        for table, counted in (
            ("series", "i.series_fk = t.id"),
            ("studies", "s.study_fk = t.id"),
            ("patients", "st.patient_fk = t.id"),
        ):
            wrong = conn.all(
                f"SELECT t.id, t.num_instances, (SELECT COUNT(*) FROM instances i"
                f" JOIN series s ON s.id = i.series_fk JOIN studies st ON st.id = s.study_fk"
                f" WHERE {counted}) AS n FROM {table} t"
            )
            assert [(r[0], r[1]) for r in wrong if r[1] != r[2]] == [], table
        wrong = conn.all(
            "SELECT st.id FROM studies st WHERE st.num_series !="
            " (SELECT COUNT(*) FROM series s WHERE s.study_fk = st.id)"
            " OR st.num_series < 1 OR st.num_instances < 1"
        )
        assert wrong == []
        wrong = conn.all(
            "SELECT p.id FROM patients p WHERE p.num_studies !="
            " (SELECT COUNT(*) FROM studies st WHERE st.patient_fk = p.id)"
            " OR p.num_series != (SELECT COUNT(*) FROM series s JOIN studies st"
            " ON st.id = s.study_fk WHERE st.patient_fk = p.id)"
        )
        assert wrong == []
        for study_id, modalities in conn.all("SELECT id, modalities FROM studies"):
            rows = conn.all(
                "SELECT DISTINCT modality FROM series WHERE study_fk = :id", {"id": study_id}
            )
            assert modalities == "\\" + "".join(f"{r[0]}\\" for r in sorted(rows))


def test_verify_and_reindex_round_trip(archive: Archive) -> None:
    for _ in range(5):
        archive.store_bytes(make_instance(), ORIGIN)
    before = archive.stats()
    report = archive.reindex()
    assert report["indexed"] == 5 and report["added"] == 0 and not report["skipped"]
    assert archive.stats() == before
    assert archive.verify()["ok"]
    # A lost index is rebuilt from the blobs; an index entry whose blob is gone is dropped.
    archive.writer.run(
        lambda conn: [
            conn.execute(f"DELETE FROM {t}") for t in ("instances", "series", "studies", "patients")
        ]
    )
    assert archive.stats()["instances"] == 0
    report = archive.reindex()
    assert report["added"] == 5 and archive.stats() == before
    victim = next(iter(archive.blobs.iter_keys()))
    archive.blobs.delete(victim)
    report = archive.reindex()
    assert report["removed"] == 1 and archive.stats()["instances"] == 4
    assert archive.verify()["ok"]
    archive.store_bytes(make_instance(), ORIGIN)  # back to five blobs
    # A blob corrupted on disk, and one removed, are both reported.
    keys = list(archive.blobs.iter_keys())
    assert len(keys) == 5
    overwrite_blob(archive.blobs, keys[0], b"corrupted")
    remove_blob(archive.blobs, keys[1])
    report = archive.verify()
    assert len(report["corrupt"]) == 1 and len(report["missing"]) == 1 and not report["ok"]


def test_native_frame_offsets_slice_the_pixel_bytes(archive: Archive) -> None:
    ds = make_dataset(rows=32, columns=48)
    frames = np.arange(3 * 32 * 48, dtype=np.uint16).reshape(3, 32, 48)
    ds.NumberOfFrames = 3
    ds.PixelData = frames.tobytes()
    outcome = archive.store_bytes(to_bytes(ds), ORIGIN)
    (location,) = archive.locate_uids(sop_uid=outcome.sop_instance_uid)
    for n in range(3):
        assert archive.frame_bytes(location, n + 1) == frames[n].tobytes()
    with pytest.raises(IndexError):
        archive.frame_bytes(location, 4)


def test_encapsulated_frame_offsets_match_pydicom(archive: Archive) -> None:
    """Frame ranges recorded at ingest give the same bytes as pydicom's encaps (PS3.5 A.4)."""
    checked = 0
    for path in bundled_dicom_files():
        ds = dcmread(path)
        if "PixelData" not in ds or not ds.file_meta.TransferSyntaxUID.is_encapsulated:
            continue
        frames_n = int(ds.get("NumberOfFrames", 1) or 1)
        try:
            expected = list(generate_frames(ds.PixelData, number_of_frames=frames_n))
        except ValueError:
            continue  # pydicom itself cannot split this one
        outcome = archive.store_path(path, ORIGIN)
        assert outcome.ok
        (location,) = archive.locate_uids(sop_uid=outcome.sop_instance_uid)
        if location.transfer_syntax_uid != ds.file_meta.TransferSyntaxUID:
            continue  # a later bundled file replaced it
        for n, frame in enumerate(expected, 1):
            assert archive.frame_bytes(location, n) == frame, (path.name, n)
        checked += 1
    assert checked >= 20


def test_metadata_recorded_at_ingest(archive: Archive) -> None:
    import json

    ds = make_dataset(rows=64, columns=64)
    archive.store_bytes(to_bytes(ds), ORIGIN)
    (text,) = archive.metadata(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
    data = json.loads(text)
    assert data["00100010"]["Value"][0]["Alphabetic"] == "Doe^John"
    assert data["7FE00010"]["BulkDataURI"].endswith(f"/instances/{ds.SOPInstanceUID}/bulk/7FE00010")
    assert data["00083002"]["Value"] == [ds.file_meta.TransferSyntaxUID]


def test_origin_is_recorded(archive: Archive) -> None:
    outcome = archive.store_bytes(make_instance(), ORIGIN)
    with archive.db.reader() as conn:
        row = conn.one(
            "SELECT origin_protocol, origin_ae, origin_host, received_at FROM instances"
            " WHERE sop_uid = :u",
            {"u": outcome.sop_instance_uid},
        )
    assert tuple(row[:3]) == ("test", "TESTSCU", "127.0.0.1") and row[3]


def _q(level: str, **keys: str):  # type: ignore[no-untyped-def]
    from noctis_pacs.core.model import Level, Query, build_match

    return Query(
        level=Level.parse(level), matches=tuple(build_match(k, v) for k, v in keys.items())
    )


def test_sqlite_connections_of_ended_threads_are_closed(tmp_path: Path) -> None:
    """Association and threadpool threads come and go; their connections must not pile up."""
    import threading

    from tests.conftest import db_url_for, make_settings

    archive = Archive(make_settings(tmp_path / "d", db_url_for("sqlite", tmp_path / "d")))
    try:
        for _ in range(40):
            thread = threading.Thread(target=archive.stats)
            thread.start()
            thread.join()
        assert archive.db.open_connections() <= 4  # type: ignore[attr-defined]
    finally:
        archive.close()


def test_patient_id_change_within_a_study_leaves_no_empty_patient(archive: Archive) -> None:
    """A study stays with its first patient; no orphan patient row for the other ID."""
    study = uid()
    archive.store_bytes(make_instance(study_uid=study, patient_id="FIRST"), ORIGIN)
    archive.store_bytes(make_instance(study_uid=study, patient_id="SECOND"), ORIGIN)
    patients = archive.query(_q("PATIENT")).rows
    assert [p["PatientID"] for p in patients] == ["FIRST"]
    assert patients[0]["NumberOfPatientRelatedInstances"] == 2


def test_store_encoded_dataset_as_a_dimse_peer_sends_it(archive: Archive) -> None:
    """A dataset plus its transfer syntax (no Part 10 header) is stored behind a new
    File Meta Information header (PS3.10 7.1); range reads return its bytes."""
    ds = make_dataset()
    part10 = to_bytes(ds)
    encoded = part10[part10.index(b"\x08\x00\x16\x00") :]  # the dataset after the meta group
    outcome = archive.store_dataset_bytes(
        encoded,
        transfer_syntax_uid=str(ds.file_meta.TransferSyntaxUID),
        sop_class_uid=str(ds.SOPClassUID),
        sop_instance_uid=str(ds.SOPInstanceUID),
        origin=ORIGIN,
    )
    assert outcome.status is Status.STORED, outcome.reason
    (location,) = archive.locate_uids(sop_uid=ds.SOPInstanceUID)
    stored = dcmread(archive.open_blob(location))
    assert stored.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert stored.PixelData == ds.PixelData
    blob = b"".join(archive.iter_blob(location))
    assert archive.blobs.read_range(location.blob_key, 128, 4) == b"DICM" == blob[128:132]


def test_temporary_files_fan_out_and_leftovers_are_cleaned(archive: Archive) -> None:
    """A blob too big for a pack is written under tmp/a/ (16 folders) and renamed into
    blobs/abc/; leftovers of interrupted writes, flat or in a folder, are removed once old."""
    writer = archive.begin_blob()
    writer.write(to_bytes(make_dataset(rows=1024, columns=1024)))  # 2 MiB of pixels
    writer.finish(False)
    assert writer.path.parent.parent == archive.blobs.tmp
    assert writer.path.parent.name == writer.path.stem[0]
    outcome = archive.store_blob(writer, ORIGIN)
    assert outcome.status is Status.STORED
    (key,) = archive.blobs.iter_keys()
    assert key == writer.path.stem and not writer.path.exists()
    spooled = archive.spool_path()
    assert spooled.parent.is_dir() and archive.blobs.is_temporary(spooled)
    spooled.write_bytes(to_bytes(make_dataset()))
    assert archive.store_path(spooled, ORIGIN, move=True).status is Status.STORED
    assert not spooled.exists()
    old, young = archive.blobs.tmp / "0" / "old.part", archive.blobs.tmp / "f" / "young.part"
    flat_old = archive.blobs.tmp / "flat.part"
    old.parent.mkdir(exist_ok=True)
    young.parent.mkdir(exist_ok=True)
    for path in (old, young, flat_old):
        path.write_bytes(b"partial")
    hour_ago = time.time() - 7200
    os.utime(old, (hour_ago, hour_ago))
    os.utime(flat_old, (hour_ago, hour_ago))
    assert archive.blobs.clean_temporary() == 2
    assert young.exists() and not old.exists() and not flat_old.exists()


def test_prepare_layout_creates_every_fan_out_folder_once(archive: Archive) -> None:
    """``serve`` lays out a fresh store's 4,096 blob folders and 16 temporary ones, so
    stores do not create them; a second run makes none and stores still land."""
    assert archive.blobs.prepare_layout() == 4096 + 16
    assert len(os.listdir(archive.blobs.blobs)) == 4096
    assert sorted(os.listdir(archive.blobs.tmp)) == [f"{n:x}" for n in range(16)]
    assert archive.blobs.prepare_layout() == 0
    assert archive.store_bytes(make_instance(), ORIGIN).status is Status.STORED
    assert len(os.listdir(archive.blobs.blobs)) == 4096


def test_wal_is_checkpointed_in_the_background(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite's checkpoint on commit is only a far bound: a background thread copies the
    WAL into the database file (so stores never wait for its fsyncs) and stops on close."""
    from storage import db as dbmodule
    from tests.conftest import db_url_for, make_settings

    monkeypatch.setattr(dbmodule, "CHECKPOINT_PAGES", 1)
    data = tmp_path / "d"
    archive = Archive(make_settings(data, db_url_for("sqlite", data)))
    index = data / "index.sqlite3"
    before = index.stat().st_size
    for _ in range(5):
        archive.store_bytes(make_instance(), ORIGIN)
    deadline = time.monotonic() + 10
    while index.stat().st_size == before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert index.stat().st_size > before, "the WAL was not checkpointed into the database"
    checkpointer = archive.db._checkpointer  # type: ignore[attr-defined]
    assert checkpointer is not None and checkpointer.is_alive()
    archive.close()
    assert not checkpointer.is_alive()


def test_study_lists_merge_new_values_sorted_and_shrink_on_delete(archive: Archive) -> None:
    """ModalitiesInStudy and SOPClassesInStudy (PS3.4 Table C.6-5, study-level keys) follow every insert,
    sorted whatever the arrival order, and lose a value when its last series goes."""
    study = uid()
    ct_image, mr_image = "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.4"
    us_series, ct_series_uid = uid(), uid()
    for modality, series, sop_class in (
        ("US", us_series, "1.2.840.10008.5.1.4.1.1.7"),
        ("MR", uid(), mr_image),
        ("CT", ct_series_uid, ct_image),
        ("CT", uid(), ct_image),
        ("US", us_series, "1.2.840.10008.5.1.4.1.1.7"),
    ):
        archive.store_bytes(
            make_instance(
                study_uid=study, series_uid=series, modality=modality, sop_class=sop_class
            ),
            ORIGIN,
        )
    (row,) = archive.query(_q("STUDY", StudyInstanceUID=study)).rows
    assert row["ModalitiesInStudy"] == ["CT", "MR", "US"]
    assert row["SOPClassesInStudy"] == sorted([ct_image, mr_image, "1.2.840.10008.5.1.4.1.1.7"])
    assert archive.delete(series_uid=us_series) == 2
    (row,) = archive.query(_q("STUDY", StudyInstanceUID=study)).rows
    assert row["ModalitiesInStudy"] == ["CT", "MR"]
    assert row["SOPClassesInStudy"] == [ct_image, mr_image]


def test_a_stored_file_is_read_back_in_reads_of_its_recorded_size(archive: Archive) -> None:
    """``iter_blob`` reads exactly the recorded size: one read when the file is smaller
    than the chunk (WADO-RS reads 4 MiB chunks of 512 KiB slices), reads of at most the
    chunk otherwise, the whole file either way."""
    data = to_bytes(make_dataset(rows=64, columns=64))
    outcome = archive.store_bytes(data, ORIGIN)
    assert outcome.status is Status.STORED
    (location,) = archive.locate_uids(sop_uid=outcome.sop_instance_uid)
    assert location.size == len(data)
    whole = list(archive.iter_blob(location, 4 << 20))
    assert [len(c) for c in whole] == [len(data)]
    pieces = list(archive.iter_blob(location, 1000))
    assert all(len(c) <= 1000 for c in pieces)
    assert len(pieces) == -(-len(data) // 1000)
    assert b"".join(pieces) == data == whole[0]


def test_a_later_instance_updates_changed_attributes_and_leaves_the_rest(
    archive: Archive,
) -> None:
    """The patient, study and series rows take the values of the latest instance
    (the upserts write only when a value changed: an unchanged instance reads its rows
    instead, with the same counts); PS3.4 C.6.1.1.4 attributes as QIDO/C-FIND return them."""
    study, series = uid(), uid()

    def store(**values: object) -> None:
        ds = make_dataset(study_uid=study, series_uid=series, **values)  # type: ignore[arg-type]
        assert archive.store_bytes(to_bytes(ds), ORIGIN).status is Status.STORED

    store(patient_name="Doe^John", accession="ACC1")
    store(patient_name="Doe^John", accession="ACC1")  # nothing changed: rows read
    (row,) = archive.query(_q("STUDY", StudyInstanceUID=study)).rows
    assert row["AccessionNumber"] == "ACC1"
    assert row["NumberOfStudyRelatedInstances"] == 2
    store(patient_name="Roe^Jane", accession="ACC2")  # changed: rows written
    store(patient_name="Roe^Jane", accession="ACC2")
    (row,) = archive.query(_q("STUDY", StudyInstanceUID=study)).rows
    assert row["AccessionNumber"] == "ACC2"
    assert row["PatientName"] == "Roe^Jane"
    assert row["NumberOfStudyRelatedInstances"] == 4
    (series_row,) = archive.query(_q("SERIES", SeriesInstanceUID=series)).rows
    assert series_row["NumberOfSeriesRelatedInstances"] == 4
    (patient,) = archive.query(_q("PATIENT", PatientID="PID001")).rows
    assert patient["NumberOfPatientRelatedInstances"] == 4
    assert archive.stats()["patients"] == 1


def test_modalities_in_study_follow_a_stored_series_whose_modality_changes(
    archive: Archive,
) -> None:
    """ModalitiesInStudy (PS3.4 Table C.6-5) is the Modality of the study's series as
    their rows say, also when an instance of a stored series arrives with another
    Modality (the series row takes the latest instance's): the new value is listed and
    the old one goes unless another series has it. Whether the instance is new, replaces
    one with the same SOP Instance UID or is corrected in place by an admin modification
    (``keep_uids``: the same ingest path with ``replace``); then after deletes."""
    from noctis_pacs.core.modify import parse_modify

    def listed(study: str) -> list[str]:
        (row,) = archive.query(_q("STUDY", StudyInstanceUID=study)).rows
        return list(row["ModalitiesInStudy"])

    def series_say(study: str) -> list[str]:
        rows = archive.query(_q("SERIES", StudyInstanceUID=study)).rows
        return sorted({row["Modality"] for row in rows})

    def matched(modality: str) -> set[str]:
        rows = archive.query(_q("STUDY", ModalitiesInStudy=modality)).rows
        return {row["StudyInstanceUID"] for row in rows}

    def store(study: str, series: str, modality: str, **values: object) -> str:
        ds = make_dataset(study_uid=study, series_uid=series, modality=modality, **values)  # type: ignore[arg-type]
        assert archive.store_bytes(to_bytes(ds), ORIGIN).status is Status.STORED
        return str(ds.SOPInstanceUID)

    # CT -> MR, MR listed nowhere yet: MR appears, CT goes.
    alone, alone_series = uid(), uid()
    store(alone, alone_series, "CT")
    store(alone, alone_series, "CT")
    store(alone, alone_series, "MR")
    assert series_say(alone) == ["MR"]
    assert listed(alone) == ["MR"]
    assert alone in matched("MR") and alone not in matched("CT")

    # CT -> MR with MR listed already from another series: CT must go.
    study, ct_series, mr_series = uid(), uid(), uid()
    first = store(study, ct_series, "CT")
    second = store(study, ct_series, "CT")
    store(study, mr_series, "MR")
    assert listed(study) == ["CT", "MR"]
    store(study, ct_series, "MR")
    assert series_say(study) == listed(study) == ["MR"]
    assert study not in matched("CT")
    # A replaced instance (same SOP Instance UID, other content) turns the series back.
    store(study, ct_series, "CT", sop_uid=first, instance_number=99)
    assert series_say(study) == listed(study) == ["CT", "MR"]
    # An admin modification in place (replace through the ingest path).
    corrected = parse_modify({"replace": {"Modality": "US"}, "keep_uids": True})
    assert archive.modify(corrected, study_uid=study, series_uid=ct_series, sop_uid=second)
    assert series_say(study) == listed(study) == ["MR", "US"]
    assert study in matched("US") and study not in matched("CT")
    _assert_counters_match_rows(archive)

    assert archive.delete(series_uid=mr_series) == 1
    assert series_say(study) == listed(study) == ["US"]
    assert archive.delete(sop_uid=first) == 1
    assert series_say(study) == listed(study) == ["US"]
    _assert_counters_match_rows(archive)
