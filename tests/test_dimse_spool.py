"""The receive spool (dimse/fastpath/spool.py): what a received data set is written
into on associations accepted with the fast path, a blob writer of the store. The
stores it serves are tested over the wire in test_dimse_store.py; here, the pynetdicom
internals it relies on and what it writes."""

from __future__ import annotations

import inspect
from pathlib import Path

import pynetdicom.dimse_messages

from dimse.fastpath import spool
from storage.archive import Archive, file_header


def test_pynetdicom_creates_its_receive_file_through_the_module_name() -> None:
    source = inspect.getsource(pynetdicom.dimse_messages.DIMSEMessage.decode_msg)
    assert "NamedTemporaryFile(" in source
    assert "_data_set_file.write(" in source and "_data_set_file.file.flush()" in source
    spool.install()
    assert pynetdicom.dimse_messages.NamedTemporaryFile is spool._receive_file


def test_a_spool_writes_the_stores_header_then_the_data_set_into_a_blob_writer(
    archive: Archive,
) -> None:
    """The spool keeps nothing of its own: the store's writer holds the bytes (one
    writer, one copy of each fragment), behind the store's Part 10 header."""
    received = spool.ReceiveSpool(archive)
    meta = spool.FileMeta("1.2.840.10008.5.1.4.1.1.7", "1.2.3.4", "1.2.840.10008.1.2.1")
    received.begin(meta)
    received.write(b"\x08\x00")
    writer = received.take()
    assert writer is not None and received.take() is None
    header = file_header(
        sop_class_uid=meta.sop_class_uid,
        sop_instance_uid=meta.sop_instance_uid,
        transfer_syntax_uid=meta.transfer_syntax,
        implementation_class_uid=meta.implementation_uid,
        implementation_version_name=meta.implementation_version,
    )
    writer.finish(False)
    assert writer.in_memory == header + b"\x08\x00"
    assert writer.in_memory is writer.in_memory  # frozen once, not copied per look
    archive.abort_blob(writer)


def test_pynetdicoms_own_preamble_is_replaced_by_the_stores_header(archive: Archive) -> None:
    """pynetdicom writes the preamble and DICM, then its header through the module name
    (``_write_meta``), then the data set: the blob holds the store's header once."""
    received = spool.ReceiveSpool(archive)
    received.write(b"\x00" * 128)
    received.write(b"DICM")
    spool._write_meta(received, spool.FileMeta("1.2.3", "1.2.4", "1.2.840.10008.1.2"))
    received.write(b"data")
    writer = received.take()
    assert writer is not None
    writer.finish(False)
    data = writer.in_memory
    assert data is not None and data.count(b"DICM") == 1 and data.endswith(b"data")
    archive.abort_blob(writer)


def test_a_discarded_spool_leaves_no_file(archive: Archive) -> None:
    received = spool.ReceiveSpool(archive)
    received.begin(spool.FileMeta("1.2.3", "1.2.4", "1.2.840.10008.1.2"))
    received.write(b"x" * (3 << 20))  # past the memory bound: the blob's file exists
    assert received.writer is not None and received.writer.path.exists()
    path = received.writer.path
    received.discard()
    assert not path.exists() and received.take() is None


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


def test_threads_without_a_spool_get_pydicoms_file_meta() -> None:
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import UID

    meta = spool._create_meta(
        sop_class_uid=UID("1.2.3"),
        sop_instance_uid=UID("1.2.4"),
        transfer_syntax=UID("1.2.840.10008.1.2"),
    )
    assert isinstance(meta, FileMetaDataset)


def test_a_full_store_fails_the_spool_and_the_store_answers_out_of_resources(
    tmp_path: Path,
) -> None:
    """PS3.4 B.2.3 (A7xx): a store below its free-space reserve takes no blob; the spool
    drops what arrives and the handler's store step says storage full."""
    from dimse.store import outcome_status, store_spooled
    from storage.archive import Expected, Origin, Status
    from tests.conftest import db_url_for, make_settings

    settings = make_settings(
        tmp_path / "data", db_url_for("sqlite", tmp_path / "data"), storage={"min_free_mb": 1 << 40}
    )
    archive = Archive(settings)
    try:
        received = spool.ReceiveSpool(archive)
        assert received.error is not None and received.writer is None
        assert not Path(received.name).exists()
        received.begin(spool.FileMeta("1.2.3", "1.2.4", "1.2.840.10008.1.2"))
        received.write(b"data")
        outcome = store_spooled(archive, received, Expected("1.2.3", "1.2.4"), origin=Origin("t"))
        assert outcome.status is Status.STORAGE_FULL
        assert int(outcome_status(outcome).Status) == 0xA700
    finally:
        archive.close()
