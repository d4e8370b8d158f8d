"""The receive spool (dimse/spool.py): what pynetdicom writes a received data set
into on associations Noctis accepts. The stores it serves are tested over the wire
in test_dimse_store.py; here, the pynetdicom internals it relies on and its bound."""

from __future__ import annotations

import inspect
from pathlib import Path

import pynetdicom.dimse_messages

from dimse import spool


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
