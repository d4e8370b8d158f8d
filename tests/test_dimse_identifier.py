"""C-FIND response identifiers written as encoded bytes equal pydicom's own encoding
(PS3.4 C.4.1.1.3.2 return keys, PS3.5 6.1.2.3 character sets, PS3.5 6.2 padding)."""

from __future__ import annotations

import inspect
from io import BytesIO

import pynetdicom.service_class
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom.dsutils import decode, encode

from dimse.fastpath import encoded
from dimse.fastpath.encoded import EncodedIdentifier
from dimse.fastpath.encoded import install as install_encoded
from dimse.identifier import parse_identifier, response_identifier

SYNTAXES = [ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian]

ROW = {
    "StudyInstanceUID": "1.2.826.0.1.3680043.8.498.1234567",  # odd length: NUL pad
    "PatientName": "SMITH12^P45",
    "PatientID": "P0012",  # odd length: space pad
    "StudyDate": "20150203",
    "ModalitiesInStudy": ["CT", "MR"],
    "AccessionNumber": "",
    "NumberOfStudyRelatedInstances": 5,
}


def _request(charset: str | None = None, **extra: str) -> Dataset:
    query = Dataset()
    if charset:
        query.SpecificCharacterSet = charset
    query.QueryRetrieveLevel = "STUDY"
    for keyword in ROW:
        setattr(query, keyword, "")
    query.add_new(0x00100040, "CS", "")  # PatientSex: requested, not in the row
    query.add_new(0x00081110, "SQ", [])  # ReferencedStudySequence: returned empty
    for keyword, value in extra.items():
        setattr(query, keyword, value)
    return query


def _sent(identifier: Dataset, implicit: bool, little: bool) -> bytes | None:
    encoded.install()
    return pynetdicom.service_class.encode(identifier, implicit, little)  # type: ignore[no-any-return]


def test_pynetdicom_encodes_find_identifiers_through_the_module_name() -> None:
    source = inspect.getsource(pynetdicom.service_class.ServiceClass._c_find_scp)
    assert "enc = encode(" in source


@pytest.mark.parametrize("syntax", SYNTAXES)
@pytest.mark.parametrize(
    ("charset", "name"),
    [
        (None, "SMITH12^P45"),
        ("ISO_IR 100", "Müller^Jürgen"),
        ("ISO_IR 192", "Ρωμαίος^Γιάννης"),
        (None, "Ρωμαίος^Γιάννης"),  # no charset requested: UTF-8 chosen
        ("\\ISO 2022 IR 87", "やまだ^たろう"),  # code extensions: pydicom encodes
    ],
)
def test_direct_encoding_equals_pydicom(syntax: str, charset: str | None, name: str) -> None:
    install_encoded()  # the fast path's: identifiers built as bytes only once it is in
    request = _request(charset)
    level = parse_identifier(request, "study", case_insensitive_pn=False).level
    row = {**ROW, "PatientName": name}
    direct = response_identifier(request, level, row, ae_title="NOCTIS", transfer_syntax=syntax)
    reference = response_identifier(request, level, row, ae_title="NOCTIS")
    implicit, little = syntax == ImplicitVRLittleEndian, syntax != ExplicitVRBigEndian
    # What pynetdicom's service classes send: an EncodedIdentifier's own bytes.
    encoded = _sent(direct, implicit, little)
    assert encoded is not None
    assert isinstance(direct, EncodedIdentifier) is little
    assert encoded == encode(reference, implicit, little)
    back = decode(BytesIO(encoded), implicit, little)
    assert str(back.PatientName) == name
    assert back.ModalitiesInStudy == ["CT", "MR"]
    assert back.StudyInstanceUID == ROW["StudyInstanceUID"]
    assert back.PatientSex == "" and back.AccessionNumber == ""
    assert back.ReferencedStudySequence == []
    assert back.NumberOfStudyRelatedInstances == 5
    assert len(back.PatientID) == 5  # the pad is not part of the value
