"""DICOM JSON builders of QIDO-RS responses (PS3.18 F.2)."""

from __future__ import annotations

from dicomweb.dicomjson import element, single


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
