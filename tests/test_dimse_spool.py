"""The receive spool (dimse/spool.py): what pynetdicom writes a received data set
into on associations Noctis accepts. The stores it serves are tested over the wire
in test_dimse_store.py; here, the pynetdicom internals it relies on and its bound."""

from __future__ import annotations

import inspect
from pathlib import Path

import pynetdicom.dimse_messages
import pytest

from dimse.fastpath import spool


def test_pynetdicom_creates_its_receive_file_through_the_module_name() -> None:
    source = inspect.getsource(pynetdicom.dimse_messages.DIMSEMessage.decode_msg)
    assert "NamedTemporaryFile(" in source
    assert "_data_set_file.write(" in source and "_data_set_file.file.flush()" in source
    spool.install()
    assert pynetdicom.dimse_messages.NamedTemporaryFile is spool._receive_file


def test_spool_keeps_memory_up_to_its_limit_then_continues_in_its_file(
    tmp_path: Path,
) -> None:
    path = tmp_path / "x.part"
    small = spool.ReceiveSpool(path, limit=100)
    small.write(b"a" * 60)
    small.file.flush()
    assert small.in_memory == bytearray(b"a" * 60) and not path.exists()
    small.write(b"b" * 60)  # now past the limit: everything so far goes to the file
    small.write(b"c" * 10)
    assert small.in_memory is None
    small.close()
    assert path.read_bytes() == b"a" * 60 + b"b" * 60 + b"c" * 10
    small.discard()
    assert not path.exists()


def test_threads_without_a_spool_get_pynetdicoms_temporary_file() -> None:
    handle = spool._receive_file(delete=False, mode="wb", suffix=".dcm")
    try:
        assert not isinstance(handle, spool.ReceiveSpool)
        assert Path(handle.name).exists()
    finally:
        handle.close()
        Path(handle.name).unlink()


def test_pynetdicom_writes_its_receive_files_header_through_the_module_names() -> None:
    source = inspect.getsource(pynetdicom.dimse_messages.DIMSEMessage.decode_msg)
    assert "write_file_meta_info(" in source and "create_file_meta(" in source
    spool.install()
    assert pynetdicom.dimse_messages.create_file_meta is spool._create_meta
    assert pynetdicom.dimse_messages.write_file_meta_info is spool._write_meta


@pytest.mark.parametrize(
    ("sop_class", "sop_instance", "syntax"),
    [
        ("1.2.840.10008.5.1.4.1.1.2", "1.2.826.0.1.3680043.8.498.1", "1.2.840.10008.1.2"),
        ("1.2.840.10008.5.1.4.1.1.7", "1.2.3.44", "1.2.840.10008.1.2.4.50"),
        ("1.2.840.10008.5.1.4.1.1.4", "1.2." + "9" * 60, "1.2.840.10008.1.2.1"),
    ],
)
def test_direct_file_meta_equals_pydicoms(sop_class: str, sop_instance: str, syntax: str) -> None:
    """PS3.10 7.1: the header a spool gets is the one pydicom writes for pynetdicom."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_file_meta_info
    from pydicom.uid import UID
    from pynetdicom.dsutils import create_file_meta

    expected = DicomBytesIO()
    write_file_meta_info(
        expected,
        create_file_meta(
            sop_class_uid=UID(sop_class),
            sop_instance_uid=UID(sop_instance),
            transfer_syntax=UID(syntax),
        ),
    )
    direct = spool.file_meta_bytes(spool.FileMeta(sop_class, sop_instance, syntax))
    assert direct == expected.getvalue()


def test_threads_without_a_spool_get_pydicoms_file_meta() -> None:
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import UID

    meta = spool._create_meta(
        sop_class_uid=UID("1.2.3"),
        sop_instance_uid=UID("1.2.4"),
        transfer_syntax=UID("1.2.840.10008.1.2"),
    )
    assert isinstance(meta, FileMetaDataset)


def test_a_data_set_past_the_limit_is_hashed_as_it_is_written(tmp_path: Path) -> None:
    """The store adopts the spool's file with the hash computed while it was written."""
    import hashlib

    payload = bytes(range(251)) * 100
    received = spool.ReceiveSpool(tmp_path / "x.part", limit=1000)
    for start in range(0, len(payload), 700):
        received.write(payload[start : start + 700])
    assert received.written is None  # not closed yet
    received.close()
    written = received.written
    assert written is not None and received.in_memory is None
    assert (tmp_path / "x.part").read_bytes() == payload
    assert written.size == len(payload)
    assert written.digest.hexdigest() == hashlib.sha256(payload).hexdigest()


def test_a_data_set_in_memory_has_no_file(tmp_path: Path) -> None:
    received = spool.ReceiveSpool(tmp_path / "x.part", limit=1000)
    received.write(b"a" * 1000)
    received.close()
    assert received.written is None and received.in_memory == bytearray(b"a" * 1000)
    assert not (tmp_path / "x.part").exists()
