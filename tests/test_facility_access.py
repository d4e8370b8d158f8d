"""Per-facility access (issue 13 point 4): two facilities, a principal of each.

A study's facility is decided at ingest; a principal with facilities sees only
their studies on every retrieval path (the query engine and the archive façade
are the one place it is enforced); a study of another facility answers 404, never
403; admins and unscoped principals see everything.  HTTP paths run through the
real application (its middleware, routes and handlers) with a test authenticator
standing in for the token one; DIMSE paths over real associations from AEs scoped
by ``[dimse.remotes.NAME] facilities``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, build_context, build_role, evt
from pynetdicom.sop_class import (
    CTImageStorage,
    PatientRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
)
from starlette.requests import HTTPConnection
from starlette.testclient import TestClient

from dicomweb.app import create_app
from noctis_pacs.core.auth import ANONYMOUS, Principal, Role
from noctis_pacs.core.metrics import build_metrics
from noctis_pacs.core.model import Level, Query
from noctis_pacs.core.settings import AccessSettings, Settings
from storage.archive import Archive
from storage.ingest import Origin
from tests.conftest import BACKENDS, RunningServer, db_url_for, free_port, start_server
from tests.factory import ct_series, make_dataset, to_bytes, uid
from tests.test_dimse_support import associate, server_archive

NORTH = Principal.with_role("north-tech", Role.TECHNOLOGIST, facilities=["North"], kind="token")
SOUTH = Principal.with_role("south-tech", Role.TECHNOLOGIST, facilities=["South"], kind="token")
ADMIN = Principal.with_role("admin", Role.ADMIN, facilities=["North"], kind="token")


@dataclass
class Studies:
    north: str
    north_series: str
    north_sop: str
    south: str
    south_series: str
    south_sop: str
    unnamed: str


def _store_volume(archive: Archive, institution: str | None, patient: str) -> list[Dataset]:
    study, series = uid(), uid()
    volume = list(ct_series(6, 32, study_uid=study, series_uid=series))
    for ds in volume:
        ds.PatientID = patient
        if institution is not None:
            ds.InstitutionName = institution
        assert archive.store_bytes(to_bytes(ds), Origin("test")).ok
    return volume


def _corpus(archive: Archive) -> Studies:
    north = _store_volume(archive, "North", "FAC-N")
    south = _store_volume(archive, "South", "FAC-S")
    unnamed = make_dataset(patient_id="FAC-U")
    assert archive.store_bytes(to_bytes(unnamed), Origin("test")).ok
    return Studies(
        north=str(north[0].StudyInstanceUID),
        north_series=str(north[0].SeriesInstanceUID),
        north_sop=str(north[0].SOPInstanceUID),
        south=str(south[0].StudyInstanceUID),
        south_series=str(south[0].SeriesInstanceUID),
        south_sop=str(south[0].SOPInstanceUID),
        unnamed=str(unnamed.StudyInstanceUID),
    )


def _study_uids(archive: Archive, principal: Principal | None, level: Level) -> set[str]:
    rows = archive.query(Query(level=level), principal=principal).rows
    return {str(r["StudyInstanceUID"]) for r in rows if "StudyInstanceUID" in r}


# -- the archive façade and the query engine -------------------------------------------


def test_the_query_engine_shows_a_principal_only_its_facilities(archive: Archive) -> None:
    studies = _corpus(archive)
    mine = {studies.north, studies.south, studies.unnamed}
    for level in (Level.STUDY, Level.SERIES, Level.IMAGE):
        assert _study_uids(archive, NORTH, level) & mine == {studies.north}
        assert _study_uids(archive, SOUTH, level) & mine == {studies.south}
        assert _study_uids(archive, None, level) & mine == mine
        assert _study_uids(archive, ADMIN, level) & mine == mine  # admin: unscoped
        assert _study_uids(archive, ANONYMOUS, level) & mine == mine
    patients = archive.query(Query(level=Level.PATIENT), principal=NORTH).rows
    assert "FAC-N" in {p["PatientID"] for p in patients}
    assert not {"FAC-S", "FAC-U"} & {p["PatientID"] for p in patients}
    assert archive.count(Query(level=Level.STUDY), principal=SOUTH) == 1
    # Retrieval: the other facility's study is as if absent.
    assert archive.locate_uids(studies.south, principal=NORTH) == []
    assert archive.locate_uids(studies.south, studies.south_series, studies.south_sop,
                               principal=NORTH) == []  # fmt: skip
    assert len(archive.locate_uids(studies.north, principal=NORTH)) == 6
    assert archive.metadata(studies.south, principal=NORTH) == []
    assert len(archive.metadata(studies.south, principal=SOUTH)) == 6
    # An empty facility attribute gives the facility "default".
    default = Principal.with_role("d", Role.VIEWER, facilities=["default"], kind="token")
    assert _study_uids(archive, default, Level.STUDY) & mine == {studies.unnamed}


def test_facility_from_the_storing_principal(settings: Settings) -> None:
    by_principal = replace(settings, access=AccessSettings(facility_from="principal"))
    archive = Archive(by_principal)
    try:
        ds = make_dataset(InstitutionName="North")
        origin = Origin("stow", facilities=frozenset({"East"}))
        assert archive.store_bytes(to_bytes(ds), origin).ok
        east = Principal.with_role("e", Role.VIEWER, facilities=["East"], kind="token")
        assert _study_uids(archive, east, Level.STUDY) == {str(ds.StudyInstanceUID)}
        assert str(ds.StudyInstanceUID) not in _study_uids(archive, NORTH, Level.STUDY)
        # A principal of several facilities (or none) leaves it to the attribute.
        other = make_dataset(InstitutionName="North")
        assert archive.store_bytes(to_bytes(other), Origin("stow")).ok
        assert str(other.StudyInstanceUID) in _study_uids(archive, NORTH, Level.STUDY)
    finally:
        archive.close()


def test_a_later_instance_does_not_move_the_study(archive: Archive) -> None:
    study = uid()
    first = make_dataset(study_uid=study, InstitutionName="North")
    later = make_dataset(study_uid=study, InstitutionName="South")
    for ds in (first, later):
        assert archive.store_bytes(to_bytes(ds), Origin("test")).ok
    assert study in _study_uids(archive, NORTH, Level.STUDY)
    assert study not in _study_uids(archive, SOUTH, Level.STUDY)


# -- every HTTP retrieval path ------------------------------------------------------------


class HeaderAuthenticator:
    """Stands in for the token authenticator: ``X-Test-Principal`` names the caller."""

    known = {p.name: p for p in (NORTH, SOUTH, ADMIN)}

    def authenticate(self, conn: HTTPConnection) -> Principal | None:
        return self.known.get(conn.headers.get("x-test-principal", ""))


@pytest.fixture
def http(archive: Archive, settings: Settings) -> Iterator[tuple[TestClient, Studies]]:
    studies = _corpus(archive)
    app = create_app(
        settings=settings,
        archive=archive,
        metrics=build_metrics(),
        authenticator=HeaderAuthenticator(),
    )
    with TestClient(app) as client:
        yield client, studies


def _paths(study: str, series: str, sop: str) -> list[str]:
    root = "/dicom-web"
    instance = f"{root}/studies/{study}/series/{series}/instances/{sop}"
    return [
        f"{root}/studies/{study}",
        f"{root}/studies/{study}/series/{series}",
        instance,
        f"{root}/studies/{study}/metadata",
        f"{root}/studies/{study}/series/{series}/metadata",
        f"{instance}/metadata",
        f"{instance}/frames/1",
        f"{instance}/bulk/7FE00010",
        f"{instance}/rendered",
        f"{instance}/frames/1/rendered",
        f"{root}/studies/{study}/series/{series}/rendered",
        f"{root}/studies/{study}/rendered",
        f"{instance}/thumbnail",
        f"{root}/studies/{study}/thumbnail",
        f"{root}/studies/{study}/series/{series}/mpr?plane=coronal",
        f"{root}/studies/{study}/series/{series}/mip?plane=axial",
        f"/wado?requestType=WADO&studyUID={study}&seriesUID={series}&objectUID={sop}"
        "&contentType=application/dicom",
        f"/wado?requestType=WADO&studyUID={study}&seriesUID={series}&objectUID={sop}"
        "&contentType=image/jpeg",
    ]


def test_every_http_retrieval_path_hides_the_other_facility(
    http: tuple[TestClient, Studies],
) -> None:
    client, s = http
    as_north = {"x-test-principal": NORTH.name, "accept": "*/*"}
    as_admin = {"x-test-principal": ADMIN.name, "accept": "*/*"}
    for path in _paths(s.north, s.north_series, s.north_sop):
        assert client.get(path, headers=as_north).status_code == 200, path
    for path in _paths(s.south, s.south_series, s.south_sop):
        response = client.get(path, headers=as_north)
        assert response.status_code == 404, (path, response.status_code)  # never 403
        assert client.get(path, headers=as_admin).status_code == 200, path
    # QIDO-RS at every level: the other facility's study is not among the matches.
    for path in ("/dicom-web/studies", "/dicom-web/series", "/dicom-web/instances"):
        found = client.get(path, headers=as_north).json()
        uids = {item["0020000D"]["Value"][0] for item in found}
        assert s.north in uids and s.south not in uids and s.unnamed not in uids, path
    by_uid = client.get(f"/dicom-web/studies?StudyInstanceUID={s.south}", headers=as_north)
    assert by_uid.status_code == 200 and by_uid.json() == []
    below = client.get(f"/dicom-web/studies/{s.south}/series", headers=as_north)
    assert below.status_code == 200 and below.json() == []
    south = client.get("/dicom-web/studies", headers={"x-test-principal": SOUTH.name})
    assert {item["0020000D"]["Value"][0] for item in south.json()} == {s.south}


# -- DIMSE: AEs scoped by [dimse.remotes.NAME] facilities -------------------------------


@dataclass
class Scoped:
    server: RunningServer
    studies: Studies
    received: list[str]


@pytest.fixture(scope="module", params=BACKENDS)
def scoped(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Scoped]:
    base = tmp_path_factory.mktemp(f"facility-{request.param}")
    north_port, south_port = free_port(), free_port()
    config = (
        f'[dimse.remotes.north]\nae_title = "NORTHAE"\nhost = "127.0.0.1"\nport = {north_port}\n'
        'facilities = ["North"]\n'
        f'[dimse.remotes.south]\nae_title = "SOUTHAE"\nhost = "127.0.0.1"\nport = {south_port}\n'
        'facilities = ["South"]\n'
    )
    server = start_server(
        base / "data", db_url_for(str(request.param), base / "data"), config=config
    )
    received: list[str] = []

    def on_store(event: Any) -> int:
        received.append(str(event.request.AffectedSOPInstanceUID))
        return 0x0000

    ae = AE(ae_title="NORTHAE")
    ae.add_supported_context(CTImageStorage, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    scp = ae.start_server(
        ("127.0.0.1", north_port), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)]
    )
    with server_archive(server) as archive:
        studies = _corpus(archive)
    try:
        yield Scoped(server, studies, received)
    finally:
        scp.shutdown()
        server.stop()


def _find(port: int, ae_title: str, model: Any, level: str, **keys: str) -> set[str]:
    identifier = Dataset()
    identifier.QueryRetrieveLevel = level
    identifier.StudyInstanceUID = ""
    identifier.PatientID = ""
    for key, value in keys.items():
        setattr(identifier, key, value)
    assoc = associate(port, [build_context(model)], ae_title=ae_title)
    assert assoc.is_established
    found = set()
    for status, ds in assoc.send_c_find(identifier, model):
        if int(status.Status) in (0xFF00, 0xFF01) and ds is not None:
            found.add(str(ds.StudyInstanceUID))
    assoc.release()
    return found


def test_c_find_shows_an_ae_only_its_facilities(scoped: Scoped) -> None:
    """PS3.4 C.4.1: C-FIND at study and patient root, from AEs of two facilities."""
    port, s = scoped.server.dimse_port, scoped.studies
    study_root = StudyRootQueryRetrieveInformationModelFind
    mine = {s.north, s.south, s.unnamed}
    assert _find(port, "NORTHAE", study_root, "STUDY") & mine == {s.north}
    assert _find(port, "SOUTHAE", study_root, "STUDY") & mine == {s.south}
    assert _find(port, "OTHERAE", study_root, "STUDY") & mine == mine  # unscoped caller
    assert _find(port, "NORTHAE", study_root, "STUDY", StudyInstanceUID=s.south) == set()
    patient_root = PatientRootQueryRetrieveInformationModelFind
    assert _find(port, "NORTHAE", patient_root, "STUDY", PatientID="FAC-S") == set()
    assert _find(port, "NORTHAE", patient_root, "STUDY", PatientID="FAC-N") == {s.north}


def _count_store(event: Any, got: list[str]) -> int:
    got.append(str(event.request.AffectedSOPInstanceUID))
    return 0x0000


def _retrieve_identifier(study: str) -> Dataset:
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.StudyInstanceUID = study
    return identifier


def test_c_move_and_c_get_retrieve_nothing_of_another_facility(scoped: Scoped) -> None:
    """PS3.4 C.4.2 / C.4.3: a study outside the caller's facilities has no instances to
    send (a success with zero sub-operations: its existence is not disclosed)."""
    port, s = scoped.server.dimse_port, scoped.studies
    move = StudyRootQueryRetrieveInformationModelMove
    for study, expected in ((s.south, 0), (s.north, 6)):
        scoped.received.clear()
        assoc = associate(port, [build_context(move)], ae_title="NORTHAE")
        responses = list(assoc.send_c_move(_retrieve_identifier(study), "NORTHAE", move))
        assoc.release()
        final = responses[-1][0]
        assert int(final.Status) == 0x0000
        assert int(getattr(final, "NumberOfCompletedSuboperations", 0) or 0) == expected
        assert len(scoped.received) == expected
    get = StudyRootQueryRetrieveInformationModelGet
    for study, expected in ((s.south, 0), (s.north, 6)):
        got: list[str] = []
        ae = AE(ae_title="NORTHAE")
        ae.add_requested_context(get)
        ae.add_requested_context(CTImageStorage, [ExplicitVRLittleEndian])
        assoc = ae.associate(
            "127.0.0.1",
            port,
            ae_title="NOCTIS",
            ext_neg=[build_role(CTImageStorage, scp_role=True)],
            evt_handlers=[(evt.EVT_C_STORE, _count_store, [got])],
        )
        assert assoc.is_established
        responses = list(assoc.send_c_get(_retrieve_identifier(study), get))
        assoc.release()
        assert int(responses[-1][0].Status) == 0x0000
        assert len(got) == expected


def test_c_store_from_a_scoped_ae_with_facility_from_principal(
    tmp_path: Path, backend: str
) -> None:
    """``facility_from = "principal"``: a study stored by an AE of one facility is that
    facility's, whatever its Institution Name says."""
    port = free_port()
    config = (
        '[access]\nfacility_from = "principal"\n'
        f'[dimse.remotes.east]\nae_title = "EASTAE"\nhost = "127.0.0.1"\nport = {port}\n'
        'facilities = ["East"]\n'
    )
    server = start_server(tmp_path / "data", db_url_for(backend, tmp_path / "data"), config=config)
    try:
        ds = next(iter(ct_series(1, 16)))
        ds.InstitutionName = "North"
        assoc = associate(server.dimse_port, [build_context(CTImageStorage)], ae_title="EASTAE")
        assert assoc.send_c_store(ds).Status == 0x0000
        assoc.release()
        find = StudyRootQueryRetrieveInformationModelFind
        study = str(ds.StudyInstanceUID)
        assert _find(server.dimse_port, "EASTAE", find, "STUDY", StudyInstanceUID=study) == {study}
        with server_archive(server) as archive:
            assert study not in _study_uids(archive, NORTH, Level.STUDY)
    finally:
        server.stop()


# -- the worklist: REST API and Modality Worklist ----------------------------------------


def test_worklist_rest_api_shows_a_principal_only_its_facilities(
    http: tuple[TestClient, Studies],
) -> None:
    client, _ = http
    from tests.workflow_support import item_json, token

    north_patient, south_patient = f"N{token()}", f"S{token()}"
    as_north = {"x-test-principal": NORTH.name}
    as_south = {"x-test-principal": SOUTH.name}
    made = client.post("/workflow/worklist", json=item_json(north_patient), headers=as_north)
    assert made.status_code == 201, made.text
    north_item = made.json()["id"]
    made = client.post("/workflow/worklist", json=item_json(south_patient), headers=as_south)
    south_item = made.json()["id"]
    listed = client.get("/workflow/worklist", headers=as_north).json()
    assert {i["id"] for i in listed} >= {north_item}
    assert south_item not in {i["id"] for i in listed}
    assert client.get(f"/workflow/worklist/{north_item}", headers=as_north).status_code == 200
    for method in ("GET", "DELETE"):
        response = client.request(method, f"/workflow/worklist/{south_item}", headers=as_north)
        assert response.status_code == 404, (method, response.status_code)
    patched = client.patch(
        f"/workflow/worklist/{south_item}", json={"patient_sex": "M"}, headers=as_north
    )
    assert patched.status_code == 404
    as_admin = {"x-test-principal": ADMIN.name}
    everything = {i["id"] for i in client.get("/workflow/worklist", headers=as_admin).json()}
    assert {north_item, south_item} <= everything


def test_modality_worklist_shows_an_ae_only_its_facilities(scoped: Scoped) -> None:
    """PS3.4 K.6.1: MWL C-FIND from an AE scoped to one facility."""
    import httpx

    from tests.workflow_support import MWL_FIND, item_json, mwl_identifier, token

    patient = f"W{token()}"
    made = httpx.post(
        f"{scoped.server.http_url}/workflow/worklist", json=item_json(patient), timeout=30
    )
    assert made.status_code == 201  # anonymous: facility "default"
    identifier = mwl_identifier(PatientID=patient)

    def mwl(ae_title: str) -> int:
        assoc = associate(scoped.server.dimse_port, [build_context(MWL_FIND)], ae_title=ae_title)
        assert assoc.is_established
        found = [
            ds
            for status, ds in assoc.send_c_find(identifier, MWL_FIND)
            if int(status.Status) in (0xFF00, 0xFF01)
        ]
        assoc.release()
        return len(found)

    assert mwl("OTHERAE") == 1  # unscoped
    assert mwl("NORTHAE") == 0  # the item is not North's


def test_the_event_stream_shows_a_principal_only_its_facilities(archive: Archive) -> None:
    """Workflow events carry their study's (else their item's) facility; the stream of a
    scoped principal (``GET /workflow/events``) reads only those."""
    from storage.workflow_events import EventLog
    from storage.worklist import WorklistStore
    from tests.workflow_support import item_json, token

    store = WorklistStore(archive.db)
    north = store.create(item_json(f"N{token()}"), facility="North")
    south = store.create(item_json(f"S{token()}"), facility="South")
    studies = _corpus(archive)
    archive.db.transaction(
        lambda conn: store.emit(
            conn, "study.received", studies.south, {"study_instance_uid": studies.south}
        )
    )
    log = EventLog(archive.db)
    seen_by_north = log.after(0, 1000, facilities=frozenset({"North"}))
    subjects = {e.subject for e in seen_by_north}
    assert north.item_uid in subjects
    assert south.item_uid not in subjects and studies.south not in subjects
    everything = {e.subject for e in log.after(0, 1000)}
    assert {north.item_uid, south.item_uid, studies.south} <= everything
    seen_by_south = {e.subject for e in log.after(0, 1000, facilities=frozenset({"South"}))}
    assert {south.item_uid, studies.south} <= seen_by_south


def test_study_status_views_show_a_principal_only_its_facilities(
    http: tuple[TestClient, Studies], archive: Archive
) -> None:
    from storage.tracking import StudyTracker
    from storage.worklist import WorklistStore

    client, s = http
    StudyTracker(WorklistStore(archive.db)).scan()
    as_north = {"x-test-principal": NORTH.name}
    as_admin = {"x-test-principal": ADMIN.name}
    listed = client.get("/workflow/studies?limit=1000", headers=as_north).json()
    uids = {v["study_instance_uid"] for v in listed}
    assert s.north in uids and s.south not in uids and s.unnamed not in uids
    assert client.get(f"/workflow/studies/{s.north}", headers=as_north).status_code == 200
    assert client.get(f"/workflow/studies/{s.south}", headers=as_north).status_code == 404
    assert client.get(f"/workflow/studies/{s.south}", headers=as_admin).status_code == 200
