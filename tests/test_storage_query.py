"""The one query engine: PS3.4 C.2.2.2 matching on both backends, identical results."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from noctis_pacs.core.model import Level, Match, MatchKind, OrderDirection, Query, build_match
from storage.archive import Archive, Origin, QueryError
from tests.conftest import db_url_for, make_settings
from tests.factory import make_instance, uid

ORIGIN = Origin("test")

PATIENTS = [
    # name, id, date, time, accession, modality
    ("Doe^John", "P1", "20240101", "083000", "A100", "CT"),
    ("Doe^Jane", "P2", "20240215", "120000", "A200", "MR"),
    ("DOE^JOSÉ^^^", "P3", "20231231", "235959", "B300", "CT"),
    ("Smith^Anna", "P4", "20240301", "070000", "A_4%", "US"),
    ("Müller^Jürgen", "P5", "", "", "C500", "CR"),
]


def _load(archive: Archive) -> dict[str, str]:
    studies = {}
    for name, pid, date, time, accession, modality in PATIENTS:
        study = uid()
        studies[pid] = study
        archive.store_bytes(
            make_instance(
                study_uid=study,
                patient_name=name,
                patient_id=pid,
                study_date=date,
                study_time=time,
                accession=accession,
                modality=modality,
            ),
            ORIGIN,
        )
    # P1 has a second series of another modality.
    archive.store_bytes(
        make_instance(
            study_uid=studies["P1"],
            patient_name="Doe^John",
            patient_id="P1",
            study_date="20240101",
            study_time="083000",
            accession="A100",
            modality="SR",
            series_number=2,
        ),
        ORIGIN,
    )
    return studies


@pytest.fixture
def loaded(archive: Archive) -> Iterator[tuple[Archive, dict[str, str]]]:
    yield archive, _load(archive)


def _pids(
    archive: Archive, level: Level = Level.STUDY, fuzzy: bool = False, ci: bool = True, **keys: str
) -> list[str]:
    query = Query(
        level=level,
        matches=tuple(build_match(k, v) for k, v in keys.items()),
        fuzzy=fuzzy,
        case_insensitive_pn=ci,
    )
    return sorted({str(r["PatientID"]) for r in archive.query(query).rows})


def test_universal_matching(loaded: tuple[Archive, dict[str, str]]) -> None:
    """PS3.4 C.2.2.2.3: an empty value, or `*` alone, matches everything."""
    archive, _ = loaded
    assert _pids(archive, PatientName="") == ["P1", "P2", "P3", "P4", "P5"]
    assert _pids(archive, PatientName="*") == ["P1", "P2", "P3", "P4", "P5"]


def test_single_value_matching(loaded: tuple[Archive, dict[str, str]]) -> None:
    """PS3.4 C.2.2.2.1: exact match; PN trailing empty components not significant."""
    archive, _ = loaded
    assert _pids(archive, PatientID="P2") == ["P2"]
    assert _pids(archive, AccessionNumber="A100") == ["P1"]
    assert _pids(archive, PatientName="Doe^John", ci=False) == ["P1"]
    assert _pids(archive, PatientName="DOE^JOSÉ", ci=False) == ["P3"]
    assert _pids(archive, PatientName="Doe", ci=False) == []


def test_case_and_accent_insensitive_pn(loaded: tuple[Archive, dict[str, str]]) -> None:
    """PS3.4 C.2.2.2.4: case-insensitive PN matching as an option (accents folded too)."""
    archive, _ = loaded
    assert _pids(archive, PatientName="doe^jose") == ["P3"]
    assert _pids(archive, PatientName="muller*") == ["P5"]
    assert _pids(archive, PatientName="doe^john", ci=False) == []


def test_wildcard_matching(loaded: tuple[Archive, dict[str, str]]) -> None:
    """PS3.4 C.2.2.2.4: `*` any run, `?` one character; SQL wildcards in data are literal."""
    archive, _ = loaded
    assert _pids(archive, PatientName="Doe*") == ["P1", "P2", "P3"]
    assert _pids(archive, PatientName="Doe^J??n") == ["P1"]
    assert _pids(archive, PatientName="Doe^J?n?") == ["P2"]
    assert _pids(archive, PatientName="*^Anna") == ["P4"]
    assert _pids(archive, AccessionNumber="A*") == ["P1", "P2", "P4"]
    assert _pids(archive, AccessionNumber="A_4%") == ["P4"]
    assert _pids(archive, AccessionNumber="A_*") == ["P4"]
    assert _pids(archive, AccessionNumber="A?00") == ["P1", "P2"]


def test_date_and_time_range_matching(loaded: tuple[Archive, dict[str, str]]) -> None:
    """PS3.4 C.2.2.2.5: closed and open ranges; empty values never match a range."""
    archive, _ = loaded
    assert _pids(archive, StudyDate="20240101-20240228") == ["P1", "P2"]
    assert _pids(archive, StudyDate="20240201-") == ["P2", "P4"]
    assert _pids(archive, StudyDate="-20240101") == ["P1", "P3"]
    assert _pids(archive, StudyDate="20231231") == ["P3"]
    assert _pids(archive, StudyTime="0800-1200") == ["P1", "P2"]
    assert _pids(archive, StudyTime="23-") == ["P3"]


def test_list_of_uid_matching(loaded: tuple[Archive, dict[str, str]]) -> None:
    """PS3.4 C.2.2.2.2: a backslash-separated list of UIDs matches any of them."""
    archive, studies = loaded
    value = "\\".join([studies["P1"], studies["P4"], uid()])
    assert _pids(archive, StudyInstanceUID=value) == ["P1", "P4"]


def test_modalities_in_study(loaded: tuple[Archive, dict[str, str]]) -> None:
    """ModalitiesInStudy matches any of the study's modalities (PS3.4 C.6.2.1.2)."""
    archive, _ = loaded
    assert _pids(archive, ModalitiesInStudy="CT") == ["P1", "P3"]
    assert _pids(archive, ModalitiesInStudy="SR") == ["P1"]
    assert _pids(archive, ModalitiesInStudy="MR\\US") == ["P2", "P4"]


def test_fuzzy_pn(loaded: tuple[Archive, dict[str, str]]) -> None:
    """Fuzzy matching: each word prefixes a name component, any order, any case."""
    archive, _ = loaded
    assert _pids(archive, fuzzy=True, PatientName="jo") == ["P1", "P3"]
    assert _pids(archive, fuzzy=True, PatientName="john doe") == ["P1"]
    assert _pids(archive, fuzzy=True, PatientName="jurg") == ["P5"]


def test_relational_and_lower_level_keys(loaded: tuple[Archive, dict[str, str]]) -> None:
    """Series/instance queries may carry study keys; lower keys become EXISTS at study level."""
    archive, studies = loaded
    rows = archive.query(Query(level=Level.SERIES, matches=(build_match("PatientID", "P1"),))).rows
    assert sorted(r["Modality"] for r in rows) == ["OT", "SR"] or sorted(
        r["Modality"] for r in rows
    ) == ["CT", "SR"]
    assert _pids(archive, Modality="SR") == ["P1"]
    images = archive.query(
        Query(level=Level.IMAGE, matches=(build_match("StudyInstanceUID", studies["P1"]),))
    ).rows
    assert len(images) == 2 and all(r["StudyInstanceUID"] == studies["P1"] for r in images)


def test_sequence_matching(archive: Archive) -> None:
    """PS3.4 C.2.2.2.6: RequestAttributesSequence item keys match the series."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    from tests.factory import make_dataset, to_bytes

    ds = make_dataset(patient_id="SEQ")
    item = Dataset()
    item.RequestedProcedureID = "RP77"
    item.ScheduledProcedureStepID = "SPS9"
    ds.RequestAttributesSequence = Sequence([item])
    archive.store_bytes(to_bytes(ds), ORIGIN)
    archive.store_bytes(make_instance(patient_id="OTHER"), ORIGIN)

    def series_for(value: str) -> list[str]:
        match = Match(
            "RequestAttributesSequence",
            MatchKind.SEQUENCE,
            (),
            (build_match("RequestedProcedureID", value),),
        )
        rows = archive.query(Query(level=Level.SERIES, matches=(match,))).rows
        return [str(r["PatientID"]) for r in rows]

    assert series_for("RP77") == ["SEQ"]
    assert series_for("RP*") == ["SEQ"]
    assert series_for("NOPE") == []


def test_limit_offset_total_and_server_maximum(tmp_path: Path, backend: str) -> None:
    settings = make_settings(
        tmp_path / "d", db_url_for(backend, tmp_path / "d"), query={"max_results": 4}
    )
    archive = Archive(settings)
    try:
        _load(archive)
        everything = archive.query(Query(level=Level.STUDY, limit=3, count_total=True))
        assert len(everything.rows) == 3 and everything.total == 5 and not everything.truncated
        assert archive.count(Query(level=Level.STUDY, limit=1, offset=4)) == 5
        assert (
            archive.count(Query(level=Level.STUDY, matches=(build_match("PatientID", "P2"),))) == 1
        )
        page = archive.query(Query(level=Level.STUDY, limit=3, offset=3))
        assert len(page.rows) == 2
        cut = archive.query(Query(level=Level.STUDY))
        assert len(cut.rows) == 4 and cut.truncated
        ordered = archive.query(
            Query(
                level=Level.STUDY,
                order_by=(("PatientID", OrderDirection.DESC),),
                limit=10,
                count_total=True,
            )
        )
        assert [r["PatientID"] for r in ordered.rows] == ["P5", "P4", "P3", "P2"]
    finally:
        archive.close()


def test_bad_values_raise_query_error(archive: Archive) -> None:
    with pytest.raises(QueryError, match="SeriesNumber"):
        archive.query(Query(level=Level.SERIES, matches=(build_match("SeriesNumber", "abc"),)))
    with pytest.raises(QueryError, match="PatientName"):
        archive.query(
            Query(level=Level.STUDY, matches=(Match("PatientName", MatchKind.RANGE, ("a", "b")),))
        )


@pytest.mark.postgres
def test_both_backends_return_identical_results(tmp_path: Path) -> None:
    """Same data, same queries: SQLite and PostgreSQL answer the same rows in the same order."""
    archives = []
    for backend in ("sqlite", "postgresql"):
        data = tmp_path / backend
        archives.append(Archive(make_settings(data, db_url_for(backend, data))))
    try:
        shared_uids = [uid() for _ in PATIENTS]
        for arch in archives:
            for (name, pid, date, time, acc, mod), study in zip(PATIENTS, shared_uids, strict=True):
                arch.store_bytes(
                    make_instance(
                        study_uid=study,
                        series_uid=study + ".1",
                        sop_uid=study + ".1.1",
                        patient_name=name,
                        patient_id=pid,
                        study_date=date,
                        study_time=time,
                        accession=acc,
                        modality=mod,
                    ),
                    ORIGIN,
                )
        queries = [
            Query(level=Level.STUDY),
            Query(level=Level.STUDY, matches=(build_match("PatientName", "doe*"),)),
            Query(level=Level.STUDY, matches=(build_match("StudyDate", "20240101-"),)),
            Query(level=Level.SERIES, matches=(build_match("Modality", "CT"),)),
            Query(level=Level.IMAGE, matches=(build_match("AccessionNumber", "A*"),)),
            Query(level=Level.PATIENT, matches=(build_match("PatientName", "*j*"),)),
            Query(level=Level.STUDY, fuzzy=True, matches=(build_match("PatientName", "jo"),)),
        ]
        for query in queries:
            results = []
            for arch in archives:
                rows = arch.query(query).rows
                results.append([{k: v for k, v in r.items()} for r in rows])
            assert results[0] == results[1], query
    finally:
        for arch in archives:
            arch.close()
