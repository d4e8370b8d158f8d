"""Modality Worklist C-FIND SCP against the real server, both backends (PS3.4 Annex K)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from tests.conftest import BIN, RunningServer
from tests.test_dimse_support import dcmtk
from tests.workflow_support import (
    MWL_FIND,
    association,
    create_item,
    item_json,
    mwl_find,
    mwl_identifier,
    token,
)

DCMTK_WLISTDB = Path("/usr/share/doc/dcmtk/examples/wlistdb/OFFIS")


def _ids(found: list[Dataset]) -> list[str]:
    return sorted(str(ds.PatientID) for ds in found)


def test_each_matching_key(server: RunningServer) -> None:
    """PS3.4 K.6.1.2 matching keys with the C.2.2.2 matching types (single, wildcard, list)."""
    pid = token()
    item = create_item(
        server.http_url,
        item_json(
            pid,
            patient_name="DOE^Jane^^^",
            steps=[
                {
                    "step_id": "S1",
                    "modality": "MR",
                    "station_ae_title": ["MR01", "MR02"],
                    "start_date": "20240301",
                    "start_time": "081500",
                    "performing_physician_name": "Grey^Meredith",
                }
            ],
        ),
    )
    other = token()
    create_item(server.http_url, item_json(other, patient_name="Roe^Richard"))
    port = server.dimse_port
    cases = [
        {"PatientID": pid},
        {"PatientID": pid, "PatientName": "doe*"},  # wildcard, case-insensitive (C.2.2.2.4)
        {"PatientID": pid, "PatientName": "Doe^Jane"},  # trailing empty components ignored
        {"PatientID": pid, "AccessionNumber": pid},
        {"PatientID": pid, "RequestedProcedureID": f"RP{pid}"},
        {"PatientID": pid, "StudyInstanceUID": item["study_instance_uid"]},
        {"PatientID": pid, "sps_Modality": "MR"},
        {"PatientID": pid, "sps_ScheduledStationAETitle": "MR02"},
        {"PatientID": pid, "sps_ScheduledPerformingPhysicianName": "grey*"},
        {"PatientID": pid, "sps_ScheduledProcedureStepID": "S1"},
        {"PatientID": f"{pid}\\{other}", "sps_Modality": "MR"},  # value list
    ]
    for keys in cases:
        found, final = mwl_find(port, mwl_identifier(**keys))
        assert final == 0x0000, keys
        assert _ids(found) == [pid], keys
    misses = [
        {"PatientID": pid, "PatientName": "Smith*"},
        {"PatientID": pid, "sps_Modality": "CT"},
        {"PatientID": pid, "sps_ScheduledStationAETitle": "CT01"},
        {"PatientID": pid, "AccessionNumber": "NOPE"},
        {"PatientID": pid, "RequestedProcedureID": "NOPE"},
    ]
    for keys in misses:
        found, final = mwl_find(port, mwl_identifier(**keys))
        assert final == 0x0000 and found == [], keys


def test_date_and_time_ranges(server: RunningServer) -> None:
    """PS3.4 C.2.2.2.5 range matching on Scheduled Procedure Step Start Date / Time."""
    pid = token()
    steps = [
        {"step_id": "A", "modality": "CT", "start_date": "20240110", "start_time": "0800"},
        {"step_id": "B", "modality": "CT", "start_date": "20240115", "start_time": "1300"},
        {"step_id": "C", "modality": "CT", "start_date": "20240120", "start_time": "1730"},
    ]
    create_item(server.http_url, item_json(pid, steps=steps))

    def step_ids(**keys: str) -> list[str]:
        found, final = mwl_find(server.dimse_port, mwl_identifier(PatientID=pid, **keys))
        assert final == 0
        return sorted(
            str(ds.ScheduledProcedureStepSequence[0].ScheduledProcedureStepID) for ds in found
        )

    assert step_ids(sps_ScheduledProcedureStepStartDate="20240110-20240115") == ["A", "B"]
    assert step_ids(sps_ScheduledProcedureStepStartDate="20240116-") == ["C"]
    assert step_ids(sps_ScheduledProcedureStepStartDate="-20240110") == ["A"]
    assert step_ids(sps_ScheduledProcedureStepStartDate="20240115") == ["B"]
    assert step_ids(sps_ScheduledProcedureStepStartTime="1200-1800") == ["B", "C"]
    assert step_ids(sps_ScheduledProcedureStepStartTime="-0900") == ["A"]
    assert step_ids(
        sps_ScheduledProcedureStepStartDate="20240101-20240131",
        sps_ScheduledProcedureStepStartTime="1300",
    ) == ["B"]


def test_one_response_per_step_and_return_keys(server: RunningServer) -> None:
    """PS3.4 K.6.1.2: one response per matching step; type 1 and 2 keys present even when empty."""
    pid = token()
    steps = [
        {"step_id": "S1", "modality": "CT", "start_date": "20240115", "station_ae_title": "CT01"},
        {"step_id": "S2", "modality": "CT", "start_date": "20240116"},
    ]
    item = item_json(pid, steps=steps, patient_birth_date="", patient_sex="")
    item.pop("requested_procedure_description")
    created = create_item(server.http_url, item)
    request = mwl_identifier(PatientID=pid)
    request.RequestedProcedureCodeSequence = Sequence()
    request.PatientWeight = ""
    request.ScheduledProcedureStepSequence[0].ScheduledProtocolCodeSequence = Sequence()
    found, final = mwl_find(server.dimse_port, request)
    assert final == 0
    assert len(found) == 2
    by_step = {
        str(ds.ScheduledProcedureStepSequence[0].ScheduledProcedureStepID): ds for ds in found
    }
    assert set(by_step) == {"S1", "S2"}
    ds = by_step["S1"]
    for keyword in request.dir():
        assert keyword in ds, keyword  # every requested key answered
    # Type 2 without a value: present, zero length.
    for keyword in (
        "PatientBirthDate",
        "PatientSex",
        "RequestedProcedureDescription",
        "PatientWeight",
    ):
        assert ds[keyword].value in ("", None), keyword
    assert ds.StudyInstanceUID == created["study_instance_uid"]
    assert ds.PatientName == "Doe^Jane"
    sps = ds.ScheduledProcedureStepSequence[0]
    assert len(ds.ScheduledProcedureStepSequence) == 1
    assert sps.Modality == "CT" and sps.ScheduledStationAETitle == "CT01"
    assert sps.ScheduledProcedureStepStartDate == "20240115"
    assert "ScheduledStationName" in sps and sps.ScheduledStationName in ("", None)
    assert "ScheduledProtocolCodeSequence" in sps
    # Keys not asked for are not returned.
    assert "ScheduledProcedureStepStatus" not in sps


def test_only_scheduled_steps_are_offered(server: RunningServer) -> None:
    """PS3.4 K.6.1: the worklist offers SCHEDULED steps (IN PROGRESS only when configured)."""
    pid = token()
    steps = [
        {"step_id": "S1", "modality": "CT", "start_date": "20240115"},
        {"step_id": "S2", "modality": "CT", "start_date": "20240115", "status": "IN PROGRESS"},
        {"step_id": "S3", "modality": "CT", "start_date": "20240115", "status": "COMPLETED"},
    ]
    created = create_item(server.http_url, item_json(pid, steps=steps))
    found, _ = mwl_find(server.dimse_port, mwl_identifier(PatientID=pid))
    assert [str(d.ScheduledProcedureStepSequence[0].ScheduledProcedureStepID) for d in found] == [
        "S1"
    ]
    cancelled = httpx.delete(f"{server.http_url}/workflow/worklist/{created['id']}", timeout=10)
    assert cancelled.status_code == 200
    found, _ = mwl_find(server.dimse_port, mwl_identifier(PatientID=pid))
    assert found == []


def test_include_in_progress_setting(server_factory: object) -> None:
    """``workflow.worklist_include_in_progress`` adds IN PROGRESS steps (PS3.4 K.6.1)."""
    srv = server_factory("[workflow]\nworklist_include_in_progress = true\n")  # type: ignore[operator]
    pid = token()
    steps = [
        {"step_id": "S1", "modality": "CT", "start_date": "20240115"},
        {"step_id": "S2", "modality": "CT", "start_date": "20240115", "status": "IN PROGRESS"},
        {"step_id": "S3", "modality": "CT", "start_date": "20240115", "status": "DISCONTINUED"},
    ]
    create_item(srv.http_url, item_json(pid, steps=steps))
    found, _ = mwl_find(srv.dimse_port, mwl_identifier(PatientID=pid))
    assert sorted(
        str(d.ScheduledProcedureStepSequence[0].ScheduledProcedureStepID) for d in found
    ) == [
        "S1",
        "S2",
    ]


def test_cancel_stops_the_answers(server: RunningServer) -> None:
    """PS3.4 K.4.1.3.2 / C.4.1.3.2: a C-CANCEL ends the matching with status FE00."""
    pid = token()
    steps = [{"step_id": f"S{n}", "modality": "CT", "start_date": "20240115"} for n in range(300)]
    create_item(server.http_url, item_json(pid, steps=steps))
    with association(server.dimse_port, MWL_FIND) as assoc:
        responses = assoc.send_c_find(mwl_identifier(PatientID=pid), MWL_FIND, msg_id=7)
        count, final = 0, None
        for status, _ in responses:
            code = int(status.Status)
            if code == 0xFF00:
                count += 1
                if count == 1:
                    context_id = assoc._get_valid_context(MWL_FIND, "", "scu").context_id
                    assoc.send_c_cancel(7, context_id)
            else:
                final = code
    assert final == 0xFE00
    assert 1 <= count < 300


def _findscu_worklist(port: int, query: Path, out_dir: Path) -> list[Dataset]:
    """dcmtk ``findscu -W`` with ``query``; the answers it wrote, in order."""
    out_dir.mkdir()
    result = dcmtk(
        "findscu", "-W", "-aec", "NOCTIS", "-X", "--output-directory", str(out_dir),
        "127.0.0.1", str(port), str(query),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return [dcmread(p, force=True) for p in sorted(out_dir.glob("rsp*.dcm"))]


def _dump_to_dicom(dump: str, path: Path) -> Path:
    source = path.with_suffix(".dump")
    source.write_text(dump)
    subprocess.run(["dump2dcm", "-q", str(source), str(path)], check=True)
    return path


@pytest.mark.dcmtk
def test_dcmtk_findscu_with_imported_wl_files(server_factory: object, tmp_path: Path) -> None:
    """dcmtk's example ``.wl`` worklist imported by the CLI, queried with ``findscu -W``."""
    srv = server_factory()  # type: ignore[operator]
    wl_dir = tmp_path / "wlistdb"
    wl_dir.mkdir()
    for dump in sorted(DCMTK_WLISTDB.glob("wklist*.dump")):
        subprocess.run(["dump2dcm", "-q", str(dump), str(wl_dir / (dump.stem + ".wl"))], check=True)
    imported = subprocess.run(
        [
            str(BIN / "noctis-pacs"),
            "worklist",
            "import",
            "--config",
            str(srv.config_path),
            str(wl_dir),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert imported.returncode == 0, imported.stderr
    assert "imported 10, refused 0" in imported.stdout
    query = _dump_to_dicom(
        "(0010,0010) PN []\n(0010,0020) LO [AV35674]\n(0020,000d) UI []\n"
        "(0040,1001) SH []\n(0032,1060) LO []\n(0040,0100) SQ\n(fffe,e000) -\n"
        "(0008,0060) CS [MR]\n(0040,0001) AE []\n(0040,0002) DA [19950101-19961231]\n"
        "(0040,0003) TM []\n(0040,0006) PN []\n(0040,0009) SH []\n(0040,0010) SH []\n"
        "(fffe,e00d) -\n(fffe,e0dd) -\n",
        tmp_path / "query.dcm",
    )
    answers = _findscu_worklist(srv.dimse_port, query, tmp_path / "rsp")
    assert len(answers) == 1
    answer = answers[0]
    assert answer.PatientName == "VIVALDI^ANTONIO"
    assert answer.StudyInstanceUID == "1.2.276.0.7230010.3.2.101"
    assert answer.RequestedProcedureID == "RP454G234"
    sps = answer.ScheduledProcedureStepSequence[0]
    assert sps.ScheduledProcedureStepID == "SPD3445"
    assert list(sps.ScheduledStationAETitle) == ["AA32", "AA33"]
    # The example's universal query: every imported step answers, with its procedure code.
    example = _dump_to_dicom(
        "(0010,0010) PN []\n(0032,1064) SQ\n(fffe,e000) -\n(0008,0100) SH []\n"
        "(0008,0102) SH []\n(0008,0104) LO []\n(fffe,e00d) -\n(fffe,e0dd) -\n",
        tmp_path / "wlistqry0.dcm",
    )
    assert len(_findscu_worklist(srv.dimse_port, example, tmp_path / "all")) == 10
