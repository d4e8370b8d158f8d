"""DICOM JSON builders of QIDO-RS responses (PS3.18 F.2)."""

from __future__ import annotations

from dicomweb.json_builders import element, single


def test_person_name_groups_are_split() -> None:
    """PS3.18 F.2.2: PN values carry Alphabetic, Ideographic and Phonetic groups."""
    assert single("PN", "Yamada^Tarou=山田^太郎=やまだ^たろう") == {
        "vr": "PN",
        "Value": [
            {"Alphabetic": "Yamada^Tarou", "Ideographic": "山田^太郎", "Phonetic": "やまだ^たろう"}
        ],
    }
    assert single("PN", "Doe^John") == {"vr": "PN", "Value": [{"Alphabetic": "Doe^John"}]}


def test_empty_values_have_no_value_member() -> None:
    """PS3.18 F.2.5: an empty attribute is present without a Value."""
    assert single("DA", "") == {"vr": "DA"}
    assert element("CS", []) == {"vr": "CS"}
    assert single("IS", 12) == {"vr": "IS", "Value": [12]}
    assert single("CS", ["CT", "MR"]) == {"vr": "CS", "Value": ["CT", "MR"]}


def test_busy_index_is_503_with_retry_after() -> None:
    """An overloaded index answers 503 with Retry-After (RFC 9110 15.6.4), never a 500."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.routing import Route
    from starlette.testclient import TestClient

    from dicomweb.errors import EXCEPTION_HANDLERS
    from storage.archive import IndexBusyError

    def busy(request: Request) -> None:
        raise IndexBusyError("all 8 connections stayed busy")

    app = Starlette(routes=[Route("/x", busy)], exception_handlers=EXCEPTION_HANDLERS)
    response = TestClient(app).get("/x")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5" and "busy" in response.json()["detail"]
