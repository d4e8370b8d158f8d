"""Worklist management over REST (/workflow) and the CLI, round trip, both backends."""

from __future__ import annotations

import json
import subprocess

import httpx

from tests.conftest import BIN, RunningServer
from tests.workflow_support import create_item, item_json, token


def cli(server: RunningServer, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(BIN / "noctis-pacs"),
            "worklist",
            args[0],
            "--config",
            str(server.config_path),
            *args[1:],
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_rest_validation_errors_are_clear(server: RunningServer) -> None:
    url = f"{server.http_url}/workflow/worklist"
    bad = {
        "patient_name": "",
        "patient_id": "P",
        "patient_sex": "X",
        "patient_birth_date": "1980-01-01",
        "steps": [{"modality": "XYZ", "start_date": "20240230", "start_time": "2561"}],
        "colour": "blue",
    }
    response = httpx.post(url, json=bad, timeout=10)
    assert response.status_code == 400
    problems = response.json()["problems"]
    text = "\n".join(problems)
    for fragment in (
        "patient_name: required",
        "patient_sex",
        "patient_birth_date: '1980-01-01' is not a date",
        "steps[0].modality: 'XYZ' is not a modality defined term",
        "steps[0].start_date: '20240230' is not a date",
        "steps[0].start_time: '2561' is not a time",
        "unknown field(s) colour",
    ):
        assert fragment in text, (fragment, problems)
    assert httpx.post(url, json={"steps": []}, timeout=10).status_code == 400
    assert httpx.post(url, content=b"{not json", timeout=10).status_code == 400
    assert httpx.get(f"{url}/nope", timeout=10).status_code == 404
    assert httpx.get(url, params={"colour": "x"}, timeout=10).status_code == 400
    assert httpx.get(url, params={"status": "DONE"}, timeout=10).status_code == 400


def test_rest_round_trip(server: RunningServer) -> None:
    url = f"{server.http_url}/workflow/worklist"
    pid = token()
    created = create_item(
        server.http_url,
        item_json(
            pid,
            requested_procedure_code={"value": "CTHD", "scheme": "99LOCAL", "meaning": "CT head"},
        ),
    )
    item_id = created["id"]
    assert created["status"] == "SCHEDULED"
    assert created["study_instance_uid"]  # assigned when absent
    fetched = httpx.get(f"{url}/{item_id}", timeout=10).json()
    assert fetched["requested_procedure_code"]["value"] == "CTHD"
    assert fetched["studies"] == []
    for params in (
        {"patient_id": pid},
        {"patient_id": pid, "patient_name": "DOE*"},
        {"patient_id": pid, "modality": "CT", "start_date": "20240101-20240131"},
        {"patient_id": pid, "status": "SCHEDULED"},
        {"accession_number": pid},
    ):
        listed = httpx.get(url, params=params, timeout=10).json()
        assert [i["id"] for i in listed] == [item_id], params
    assert httpx.get(url, params={"patient_id": pid, "modality": "MR"}, timeout=10).json() == []
    patched = httpx.patch(f"{url}/{item_id}", json={"patient_sex": "O"}, timeout=10)
    assert patched.status_code == 200 and patched.json()["patient_sex"] == "O"
    assert patched.json()["study_instance_uid"] == created["study_instance_uid"]
    replaced_body = item_json(pid, study_instance_uid=created["study_instance_uid"])
    replaced_body["steps"][0]["modality"] = "MR"
    replaced = httpx.put(f"{url}/{item_id}", json=replaced_body, timeout=10)
    assert replaced.status_code == 200 and replaced.json()["steps"][0]["modality"] == "MR"
    invalid = httpx.patch(f"{url}/{item_id}", json={"patient_birth_date": "tomorrow"}, timeout=10)
    assert invalid.status_code == 400
    cancelled = httpx.delete(f"{url}/{item_id}", timeout=10)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "DISCONTINUED"
    assert httpx.post(f"{url}/{item_id}/cancel", timeout=10).status_code == 409
    status = httpx.get(
        f"{server.http_url}/workflow/studies/{created['study_instance_uid']}", timeout=10
    )
    assert status.status_code == 200 and status.json()["phase"] == "scheduled"


def test_cli_round_trip_while_the_server_runs(server: RunningServer, tmp_path: object) -> None:
    pid = token()
    added = cli(
        server,
        "add",
        "--patient-name",
        "Cli^Test",
        "--patient-id",
        pid,
        "--accession",
        pid,
        "--modality",
        "us",
        "--start-date",
        "20240201",
        "--start-time",
        "1015",
        "--station-ae-title",
        "US01",
    )
    assert added.returncode == 0, added.stderr
    item_id = added.stdout.strip()
    over_rest = httpx.get(f"{server.http_url}/workflow/worklist/{item_id}", timeout=10).json()
    assert over_rest["steps"][0]["modality"] == "US"
    listed = cli(server, "list", "--patient-id", pid, "--json")
    assert listed.returncode == 0 and [i["id"] for i in json.loads(listed.stdout)] == [item_id]
    shown = cli(server, "show", item_id)
    assert shown.returncode == 0 and json.loads(shown.stdout)["patient_name"] == "Cli^Test"
    rest_item = create_item(server.http_url, item_json(token()))
    assert cli(server, "show", rest_item["id"]).returncode == 0
    cancelled = cli(server, "cancel", item_id)
    assert cancelled.returncode == 0 and "DISCONTINUED" in cancelled.stdout
    assert (
        httpx.get(f"{server.http_url}/workflow/worklist/{item_id}", timeout=10).json()["status"]
        == "DISCONTINUED"
    )
    again = cli(server, "cancel", item_id)
    assert again.returncode == 1 and "already" in again.stderr
    refused = cli(server, "add", "--patient-id", pid, "--modality", "QQ", "--start-date", "2024")
    assert refused.returncode == 1
    assert "modality" in refused.stderr and "start_date" in refused.stderr
    json_file = tmp_path / "item.json"  # type: ignore[operator]
    json_file.write_text(json.dumps(item_json(token())))
    from_file = cli(server, "add", "--json-file", str(json_file))
    assert from_file.returncode == 0, from_file.stderr
    assert cli(server, "show", "no-such-item").returncode == 1
    status = cli(server, "status", "--study", over_rest["study_instance_uid"], "--json")
    assert status.returncode == 0 and json.loads(status.stdout)["item_id"] == item_id
