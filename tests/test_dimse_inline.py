"""C-STORE and C-ECHO requests are served on the association's DUL thread
(dimse/fastpath/inline.py); every other request still goes to the reactor. Stores over the wire are covered by
tests/test_dimse_store.py; here, where each request was served."""

from __future__ import annotations

import inspect
import threading
import time
from pathlib import Path
from typing import Any

import pynetdicom.association
import pynetdicom.dimse
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE, evt
from pynetdicom.sop_class import SecondaryCaptureImageStorage, Verification

from tests.factory import make_dataset
from tests.test_dimse_support import ON_PYNETDICOM, in_process_dimse


def test_pynetdicom_queues_decoded_requests_and_serves_them_by_request() -> None:
    assert "self.msg_queue.put(" in inspect.getsource(
        pynetdicom.dimse.DIMSEServiceProvider.receive_primitive
    )
    assert "service_class.SCP(msg, context)" in inspect.getsource(
        pynetdicom.association.Association._serve_request
    )


def test_store_and_echo_are_served_on_the_dul_thread(tmp_path: Path) -> None:
    with in_process_dimse(tmp_path) as (server, archive):
        ae = AE(ae_title="INLINE")
        ae.add_requested_context(Verification)
        ae.add_requested_context(SecondaryCaptureImageStorage, ExplicitVRLittleEndian)
        ae.add_requested_context(ON_PYNETDICOM)
        assoc = ae.associate("127.0.0.1", server.port, ae_title="NOCTIS")
        assert assoc.is_established
        try:
            (accepted,) = server._server.active_associations
            queue = accepted.dimse.msg_queue
            served: list[tuple[str, bool, bool]] = []
            inner = queue.serve_inline

            def record(item: Any) -> bool:
                result = inner(item)
                on_dul = threading.current_thread() is accepted.dul
                served.append((type(item[1]).__name__, result, on_dul))
                return bool(result)

            queue.serve_inline = record
            ds = make_dataset()
            assert assoc.send_c_store(ds).Status == 0x0000
            assert assoc.send_c_echo().Status == 0x0000
        finally:
            assoc.release()
        assert served == [("C_STORE", True, True), ("C_ECHO", True, True)]
        assert archive.locate_uids(sop_uid=str(ds.SOPInstanceUID))


def test_a_store_that_arrives_before_the_association_is_marked_established(
    tmp_path: Path,
) -> None:
    """The reactor marks the association established only after sending the A-ASSOCIATE-AC;
    a C-STORE sent at once is answered all the same (it waits for the reactor)."""
    with in_process_dimse(tmp_path) as (server, archive):
        server._server.bind(evt.EVT_ACCEPTED, lambda event: time.sleep(0.5))
        ae = AE(ae_title="EARLY")
        ae.add_requested_context(SecondaryCaptureImageStorage, ExplicitVRLittleEndian)
        ae.add_requested_context(ON_PYNETDICOM)
        ae.dimse_timeout = 10
        assoc = ae.associate("127.0.0.1", server.port, ae_title="NOCTIS")
        assert assoc.is_established
        try:
            ds = make_dataset()
            status = assoc.send_c_store(ds)
            assert status.Status == 0x0000
        finally:
            assoc.release()
        assert archive.locate_uids(sop_uid=str(ds.SOPInstanceUID))


def test_a_refused_store_answers_with_its_status_and_error_comment(tmp_path: Path) -> None:
    """PS3.4 B.2.3 / PS3.7 C.11.2: a store refused for a missing attribute answers A900
    with an Error Comment saying which, written without pynetdicom's service class."""
    with in_process_dimse(tmp_path) as (server, archive):
        ae = AE(ae_title="REFUSED")
        ae.add_requested_context(SecondaryCaptureImageStorage, ExplicitVRLittleEndian)
        ae.add_requested_context(ON_PYNETDICOM)
        assoc = ae.associate("127.0.0.1", server.port, ae_title="NOCTIS")
        try:
            ds = make_dataset()
            del ds.StudyInstanceUID
            status = assoc.send_c_store(ds)
            good = make_dataset()
            after = assoc.send_c_store(good)
        finally:
            assoc.release()
        assert status.Status == 0xA900
        assert "StudyInstanceUID" in status.ErrorComment
        assert after.Status == 0x0000
        assert archive.locate_uids(sop_uid=str(good.SOPInstanceUID))


def test_an_exception_in_the_store_handler_answers_c211(tmp_path: Path) -> None:
    """As pynetdicom's Storage service class does: C211H, and the association goes on."""
    with in_process_dimse(tmp_path) as (server, _):

        def broken(event: Any) -> Any:
            raise RuntimeError("boom")

        server._server.bind(evt.EVT_C_STORE, broken)
        ae = AE(ae_title="BROKEN")
        ae.add_requested_context(SecondaryCaptureImageStorage, ExplicitVRLittleEndian)
        ae.add_requested_context(ON_PYNETDICOM)
        ae.add_requested_context(Verification)
        assoc = ae.associate("127.0.0.1", server.port, ae_title="NOCTIS")
        try:
            status = assoc.send_c_store(make_dataset())
            echo = assoc.send_c_echo()
        finally:
            assoc.release()
        assert status.Status == 0xC211
        assert echo.Status == 0x0000


def test_a_store_is_answered_without_pynetdicoms_service_class(
    tmp_path: Path, monkeypatch: Any
) -> None:
    from dimse.fastpath import inline

    served: list[bool] = []

    def spy(assoc: Any, request: Any, context_id: int) -> bool:
        result = original(assoc, request, context_id)
        served.append(result)
        return result

    original = inline.store_directly
    monkeypatch.setattr(inline, "store_directly", spy)
    with in_process_dimse(tmp_path) as (server, _):
        ae = AE(ae_title="DIRECT")
        ae.add_requested_context(SecondaryCaptureImageStorage, ExplicitVRLittleEndian)
        ae.add_requested_context(ON_PYNETDICOM)
        assoc = ae.associate("127.0.0.1", server.port, ae_title="NOCTIS")
        try:
            assert assoc.send_c_store(make_dataset()).Status == 0x0000
        finally:
            assoc.release()
    assert served == [True]
