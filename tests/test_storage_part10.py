"""The store's one Part 10 header writer (storage/part10.py, PS3.10 7.1) and the store's
check that a received data set is the instance its sender named (PS3.4 B.2.3)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import UID
from pynetdicom import PYNETDICOM_IMPLEMENTATION_UID, PYNETDICOM_IMPLEMENTATION_VERSION
from pynetdicom.dsutils import create_file_meta

from storage.archive import (
    Archive,
    Expected,
    Implementation,
    Origin,
    RejectKind,
    Status,
    data_set_offset,
    file_header,
)
from tests.factory import make_dataset, to_bytes

ORIGIN = Origin("dimse", "TEST")
PYNETDICOM = Implementation(PYNETDICOM_IMPLEMENTATION_UID, PYNETDICOM_IMPLEMENTATION_VERSION)


@pytest.mark.parametrize(
    ("sop_class", "sop_instance", "syntax"),
    [
        ("1.2.840.10008.5.1.4.1.1.2", "1.2.826.0.1.3680043.8.498.1", "1.2.840.10008.1.2"),
        ("1.2.840.10008.5.1.4.1.1.7", "1.2.3.44", "1.2.840.10008.1.2.4.50"),
        ("1.2.840.10008.5.1.4.1.1.4", "1.2." + "9" * 60, "1.2.840.10008.1.2.1"),
    ],
)
def test_header_equals_pydicoms_for_pynetdicoms_values(
    sop_class: str, sop_instance: str, syntax: str
) -> None:
    """PS3.10 7.1: byte for byte the header pynetdicom's receive file gets from pydicom."""
    expected = DicomBytesIO()
    expected.write(b"\x00" * 128 + b"DICM")
    write_file_meta_info(
        expected,
        create_file_meta(
            sop_class_uid=UID(sop_class),
            sop_instance_uid=UID(sop_instance),
            transfer_syntax=UID(syntax),
        ),
    )
    header = file_header(
        sop_class_uid=sop_class,
        sop_instance_uid=sop_instance,
        transfer_syntax_uid=syntax,
        implementation_class_uid=PYNETDICOM.class_uid,
        implementation_version_name=PYNETDICOM.version_name,
    )
    assert header == expected.getvalue()
    assert data_set_offset(header) == len(header)


def _data_set(ds: object) -> bytes:
    data = to_bytes(ds)
    offset = data_set_offset(data)
    assert offset is not None
    return data[offset:]


def _receive(archive: Archive, ds: object, expected: Expected) -> object:
    syntax = str(ds.file_meta.TransferSyntaxUID)  # type: ignore[attr-defined]
    writer = archive.begin_received(expected, transfer_syntax_uid=syntax, implementation=PYNETDICOM)
    writer.write(_data_set(ds))
    return archive.store_blob(writer, ORIGIN, expected=expected)


def test_a_received_data_set_is_stored_behind_the_stores_header(archive: Archive) -> None:
    ds = make_dataset()
    outcome = _receive(archive, ds, Expected(str(ds.SOPClassUID), str(ds.SOPInstanceUID)))
    assert outcome.status is Status.STORED, outcome.reason  # type: ignore[attr-defined]
    (location,) = archive.locate_uids(sop_uid=str(ds.SOPInstanceUID))
    with archive.open_blob(location) as fh:
        stored = dcmread(fh)
    assert stored.file_meta.ImplementationClassUID == PYNETDICOM_IMPLEMENTATION_UID
    assert stored == ds


def test_another_sop_class_or_instance_than_named_is_refused(archive: Archive) -> None:
    """PS3.4 B.2.3: the data set's SOP Class / Instance UID must be the request's
    Affected SOP Class / Instance UID; nothing is stored otherwise."""
    ds = make_dataset()
    wrong_class = _receive(archive, ds, Expected("1.2.3", str(ds.SOPInstanceUID)))
    assert wrong_class.reject_kind is RejectKind.CLASS_MISMATCH  # type: ignore[attr-defined]
    wrong_instance = _receive(archive, ds, Expected(str(ds.SOPClassUID), "1.2.3"))
    assert wrong_instance.reject_kind is RejectKind.INSTANCE_MISMATCH  # type: ignore[attr-defined]
    assert not archive.locate_uids(sop_uid=str(ds.SOPInstanceUID))
    assert not [p for p in archive.blobs.tmp.rglob("*") if p.is_file()]


def test_another_librarys_receive_file_keeps_its_data_set_under_our_header(
    archive: Archive, tmp_path: Path
) -> None:
    """Stock pynetdicom's receive file: the store copies the data set after the file's
    own File Meta Information behind its header, and checks the identity too."""
    ds = make_dataset()
    received = tmp_path / "received.dcm"
    received.write_bytes(to_bytes(ds))  # pydicom's header, as pynetdicom writes it
    expected = Expected(str(ds.SOPClassUID), str(ds.SOPInstanceUID))
    outcome = archive.store_received_file(
        received,
        expected,
        transfer_syntax_uid=str(ds.file_meta.TransferSyntaxUID),
        implementation=PYNETDICOM,
        origin=ORIGIN,
    )
    assert outcome.status is Status.STORED, outcome.reason
    (location,) = archive.locate_uids(sop_uid=str(ds.SOPInstanceUID))
    blob = b"".join(archive.iter_blob(location))
    offset = data_set_offset(blob)
    assert offset is not None and blob[offset:] == _data_set(ds)
    assert dcmread(received).file_meta.ImplementationClassUID != PYNETDICOM_IMPLEMENTATION_UID
    assert dcmread(archive.open_blob(location)).file_meta.ImplementationClassUID == (
        PYNETDICOM_IMPLEMENTATION_UID
    )
