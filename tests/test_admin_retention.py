"""Retention: policies by age and by quota, per facility or modality, protected
studies, the dry run equal to the run, every deletion audited; over the wire."""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import RunningServer
from tests.factory import ct_series, to_bytes, uid
from tests.test_dimse_support import server_archive


def _code() -> str:
    """A modality code of its own per test (policies are scoped by it: tests share a
    server; a study's facility comes with the security issue's ingest change)."""
    return f"T{uid()[-8:]}"


def _study(server: RunningServer, modality: str, date: str, n: int = 2) -> str:
    from storage.ingest import Origin

    study = uid()
    with server_archive(server) as archive:
        for ds in ct_series(n, 16, study_uid=study):
            ds.StudyDate = date
            ds.Modality = modality
            assert archive.store_bytes(to_bytes(ds), Origin("test")).ok
    return study


def _api(server: RunningServer, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.request(method, f"{server.http_url}/api{path}", timeout=30, **kwargs)


def _exists(server: RunningServer, study: str) -> bool:
    answer = httpx.get(f"{server.dicomweb_url}/studies?StudyInstanceUID={study}", timeout=10)
    return answer.status_code == 200 and len(answer.json()) == 1


def _run(server: RunningServer, *, dry_run: bool, code: str) -> list[str]:
    answer = _api(server, "POST", f"/retention/run?dry_run={'true' if dry_run else 'false'}")
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert result["dry_run"] is dry_run
    mine = {s["study_uid"] for s in result["studies"] if s["policy"].endswith(code)}
    return sorted(mine)


def test_age_policy_dry_run_equals_the_run_and_protected_studies_stay(
    server: RunningServer,
) -> None:
    code = _code()
    today = datetime.date.today().strftime("%Y%m%d")
    old = _study(server, code, "20000101")
    kept_old = _study(server, code, "20010101")
    new = _study(server, code, today)
    other = _study(server, _code(), "20000101")  # another modality
    answer = _api(server, "PUT", f"/studies/{kept_old}/protected", json={"reason": "legal hold"})
    assert answer.status_code == 201
    policy = {"name": f"age-{code}", "max_age_days": 365, "modality": code}
    assert _api(server, "POST", "/retention/policies", json=policy).status_code == 201
    try:
        dry = _run(server, dry_run=True, code=code)
        assert dry == [old]
        assert all(_exists(server, s) for s in (old, kept_old, new, other))
        done = _run(server, dry_run=False, code=code)
        assert done == dry
        assert not _exists(server, old)
        assert all(_exists(server, s) for s in (kept_old, new, other))
        with server_archive(server) as archive:
            records = archive.audit_records(action="admin.retention.delete", study_uid=old)
        assert len(records) == 1 and f"age-{code}" in records[0].detail
    finally:
        _api(server, "DELETE", f"/retention/policies/age-{code}")
        _api(server, "DELETE", f"/studies/{kept_old}/protected")


def test_quota_policy_deletes_the_oldest_until_it_fits_for_its_modality(
    server: RunningServer,
) -> None:
    code = _code()
    oldest = _study(server, code, "20100101")
    middle = _study(server, code, "20110101")
    newest = _study(server, code, "20120101")
    mr = _study(server, _code(), "20000101")
    with server_archive(server) as archive:
        size = next(c.size for c in archive.retention.candidates() if c.study_uid == newest)
    policy = {
        "name": f"quota-{code}",
        "quota_bytes": int(size * 1.5),
        "modality": code,
    }
    assert _api(server, "POST", "/retention/policies", json=policy).status_code == 201
    try:
        dry = _run(server, dry_run=True, code=code)
        assert dry == sorted([oldest, middle])
        assert _run(server, dry_run=False, code=code) == dry
        assert _exists(server, newest) and _exists(server, mr)
        assert not _exists(server, oldest) and not _exists(server, middle)
    finally:
        _api(server, "DELETE", f"/retention/policies/quota-{code}")


@pytest.mark.parametrize(
    ("policy", "reason"),
    [
        ({"name": "p"}, "max_age_days, quota_bytes"),
        ({"name": "p", "max_age_days": -1}, "whole number"),
        ({"name": "p", "max_age_days": 1, "basis": "moon"}, "basis"),
        ({"name": "p", "quota_bytes": 5, "modality": "c t!"}, "modality"),
        ({"name": "p", "max_age_days": 1, "colour": 1}, "unknown field"),
    ],
)
def test_a_malformed_policy_is_refused_and_saves_nothing(
    server: RunningServer, policy: dict[str, Any], reason: str
) -> None:
    before = _api(server, "GET", "/retention/policies").json()
    answer = _api(server, "POST", "/retention/policies", json=policy)
    assert answer.status_code == 400 and reason in answer.json()["detail"], answer.text
    assert _api(server, "GET", "/retention/policies").json() == before


def test_cli_dry_run_lists_what_the_run_deletes(server: RunningServer, tmp_path: Path) -> None:
    code = _code()
    old = _study(server, code, "19990101")
    cli = Path(sys.executable).parent / "noctis-pacs"
    common = ["--config", str(server.config_path)]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(cli), "retention", *args, *common], capture_output=True, text=True, timeout=60
        )

    added = run("add", f"cli-{code}", "--max-age-days", "30", "--modality", code)
    assert added.returncode == 0, added.stderr
    try:
        dry = json.loads(run("run", "--dry-run", "--json").stdout)
        planned = [s["study_uid"] for s in dry["studies"] if s["policy"] == f"cli-{code}"]
        assert planned == [old] and _exists(server, old)
        real = json.loads(run("run", "--json").stdout)
        done = [s["study_uid"] for s in real["studies"] if s["policy"] == f"cli-{code}"]
        assert done == planned and not _exists(server, old)
    finally:
        run("remove", f"cli-{code}")


def test_policies_are_scoped_by_facility_and_protected_studies_count_in_quotas() -> None:
    """The pure rules: a facility's policy never selects another facility's studies;
    a protected study is never selected but its bytes count toward the quota."""
    from noctis_pacs.core.retention import Candidate, Policy, select

    def study(uid_: str, date: str, facility: str, protected: bool = False) -> Candidate:
        return Candidate(uid_, date, "2020-01-01T00:00:00.000000Z", 100, facility,
                         frozenset({"CT"}), protected)  # fmt: skip

    candidates = [
        study("1", "20000101", "north", protected=True),
        study("2", "20010101", "north"),
        study("3", "20020101", "north"),
        study("4", "19990101", "south"),
    ]
    chosen = select([Policy("q", quota_bytes=150, facility="north")], candidates)
    assert [c.study_uid for c in chosen] == ["2", "3"]
    aged = select([Policy("a", max_age_days=1, facility="south")], candidates)
    assert [c.study_uid for c in aged] == ["4"]
    assert select([Policy("off", max_age_days=1, enabled=False)], candidates) == []
