"""C-MOVE and C-GET to peers that accept one transfer syntax only (issue 14, defect 1).

A study holding implicit, explicit and big-endian little MR images, a deflated image
and a JPEG one is moved and got, over the wire, by peers that accept exactly one
native syntax each (pynetdicom), and by dcmtk's movescu/storescp and getscu with
their default preferences (explicit little endian first): every instance arrives in
the accepted syntax with its pixel values (PS3.4 C.4.2.3.1, C.4.3.3.1; PS3.5 A).
"""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, build_context, build_role, evt
from pynetdicom.presentation import StoragePresentationContexts
from pynetdicom.sop_class import (
    PatientRootQueryRetrieveInformationModelGet as PatientRootGet,
)
from pynetdicom.sop_class import (
    StudyRootQueryRetrieveInformationModelMove as StudyRootMove,
)

from noctis_pacs.core.transcode import NATIVE_SYNTAXES
from tests.conftest import BACKENDS, RunningServer, db_url_for, free_port, start_server
from tests.factory import mixed_syntax_study, uid
from tests.test_dimse_support import associate, dcmtk, server_archive, storescp

#: What ``storescp +xe`` accepts.
UNCOMPRESSED = (ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian)


@dataclass
class Peer:
    """A Storage SCP accepting one transfer syntax for every storage SOP class."""

    syntax: str
    port: int
    received: list[Dataset] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class Corpus:
    server: RunningServer
    study: str
    pixels: dict[str, np.ndarray]  # SOP Instance UID -> decoded pixels as stored
    sop_classes: set[str]
    peers: dict[str, Peer]
    storescp_port: int
    storescp_folder: Path
    syntaxes: dict[str, str]  # SOP Instance UID -> stored transfer syntax


def _on_store(event: Any, peer: Peer) -> int:
    ds = event.dataset
    ds.file_meta = event.file_meta
    with peer.lock:
        peer.received.append(ds)
    return 0x0000


def _aet(syntax: str) -> str:
    return "ONLY" + syntax.replace(".", "")[-10:]


@pytest.fixture(scope="module", params=BACKENDS)
def corpus(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Corpus]:
    base = tmp_path_factory.mktemp(f"conversion-{request.param}")
    peers = {syntax: Peer(syntax, free_port()) for syntax in NATIVE_SYNTAXES}
    storescp_port = free_port()
    config = "".join(
        f'[dimse.remotes.p{i}]\nae_title = "{_aet(p.syntax)}"\nhost = "127.0.0.1"\n'
        f"port = {p.port}\n"
        for i, p in enumerate(peers.values())
    ) + (f'[dimse.remotes.dcmtk]\nae_title = "DEST"\nhost = "127.0.0.1"\nport = {storescp_port}\n')
    server = start_server(
        base / "data", db_url_for(str(request.param), base / "data"), config=config
    )
    scps = []
    for peer in peers.values():
        ae = AE(ae_title=_aet(peer.syntax))
        for cx in StoragePresentationContexts:
            ae.add_supported_context(cx.abstract_syntax, [peer.syntax])
        scps.append(
            ae.start_server(
                ("127.0.0.1", peer.port),
                block=False,
                evt_handlers=[(evt.EVT_C_STORE, _on_store, [peer])],
            )
        )
    study = uid()
    pixels: dict[str, np.ndarray] = {}
    sop_classes: set[str] = set()
    syntaxes: dict[str, str] = {}
    with server_archive(server) as archive:
        from storage.ingest import Origin

        for data in mixed_syntax_study(study):
            outcome = archive.store_bytes(data, Origin("test"))
            assert outcome.ok, outcome.reason
            ds = dcmread(io.BytesIO(data))
            pixels[str(ds.SOPInstanceUID)] = ds.pixel_array
            syntaxes[str(ds.SOPInstanceUID)] = str(ds.file_meta.TransferSyntaxUID)
            sop_classes.add(str(ds.SOPClassUID))
    yield Corpus(server, study, pixels, sop_classes, peers, storescp_port, base / "dcmtk", syntaxes)
    for scp in scps:
        scp.shutdown()
    server.stop()


@pytest.fixture
def dcmtk_destination(corpus: Corpus) -> Iterator[Path]:
    """storescp as ``DEST``: uncompressed syntaxes only, explicit VR little endian first."""
    with storescp(corpus.storescp_port, corpus.storescp_folder, "+xe"):
        yield corpus.storescp_folder


def _check_received(corpus: Corpus, received: list[Dataset], *syntaxes: str) -> None:
    assert sorted(str(ds.SOPInstanceUID) for ds in received) == sorted(corpus.pixels)
    for ds in received:
        assert ds.file_meta.TransferSyntaxUID in syntaxes
        assert ds.StudyInstanceUID == corpus.study
        assert np.array_equal(ds.pixel_array, corpus.pixels[str(ds.SOPInstanceUID)])


def _study_identifier(corpus: Corpus) -> Dataset:
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.StudyInstanceUID = corpus.study
    return identifier


@pytest.mark.parametrize("syntax", NATIVE_SYNTAXES)
def test_move_converts_to_the_one_syntax_the_destination_accepts(
    corpus: Corpus, syntax: str
) -> None:
    """PS3.4 C.4.2.3.1: each C-STORE sub-operation goes out in a syntax the destination
    accepted; implicit, explicit, big-endian, deflated and JPEG instances all convert to
    each native syntax (issue 14: implicit -> explicit failed every sub-operation)."""
    peer = corpus.peers[syntax]
    peer.received.clear()
    assoc = associate(corpus.server.dimse_port, [build_context(StudyRootMove)])
    assert assoc.is_established
    try:
        responses = list(assoc.send_c_move(_study_identifier(corpus), _aet(syntax), StudyRootMove))
    finally:
        assoc.release()
    final = responses[-1][0]
    assert final.Status == 0x0000, final
    assert final.NumberOfCompletedSuboperations == len(corpus.pixels)
    assert final.get("NumberOfFailedSuboperations", 0) == 0
    _check_received(corpus, peer.received, syntax)


@pytest.mark.parametrize("syntax", NATIVE_SYNTAXES)
def test_get_converts_to_the_one_syntax_the_requestor_offered(corpus: Corpus, syntax: str) -> None:
    """PS3.4 C.4.3.3.1 / PS3.7 D.3.3.4: C-GET sub-operations use the storage contexts the
    requestor offered with SCP role selection; with one syntax offered, every instance is
    converted to it (Patient Root, C.6.1.2)."""
    received: list[Dataset] = []
    lock = threading.Lock()

    def on_store(event: Any) -> int:
        ds = event.dataset
        ds.file_meta = event.file_meta
        with lock:
            received.append(ds)
        return 0x0000

    ae = AE(ae_title="GETTER")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    ae.add_requested_context(PatientRootGet)
    for sop in sorted(corpus.sop_classes):
        ae.add_requested_context(sop, [syntax])
    roles = [build_role(sop, scp_role=True) for sop in sorted(corpus.sop_classes)]
    assoc = ae.associate(
        "127.0.0.1", corpus.server.dimse_port, ae_title="NOCTIS", ext_neg=roles,
        evt_handlers=[(evt.EVT_C_STORE, on_store)],
    )  # fmt: skip
    assert assoc.is_established
    identifier = _study_identifier(corpus)
    identifier.PatientID = "MIXED"
    try:
        responses = list(assoc.send_c_get(identifier, PatientRootGet))
    finally:
        assoc.release()
    final = responses[-1][0]
    assert final.Status == 0x0000, final
    assert final.NumberOfCompletedSuboperations == len(corpus.pixels)
    _check_received(corpus, received, syntax)


@pytest.mark.dcmtk
def test_movescu_to_storescp_preferring_explicit_little_endian(
    corpus: Corpus, dcmtk_destination: Path
) -> None:
    """The issue's case with dcmtk: movescu moves the study to a storescp that takes
    the uncompressed syntaxes, explicit little endian first. PS3.4 C.4.2.3.1: each
    instance goes out in a syntax the destination accepted, as stored where it accepted
    the stored syntax (implicit, explicit, big endian), converted to explicit little
    endian otherwise (deflated, JPEG); every instance with its pixels, the implicit
    one with its Image Type (0008,0008) decoded as CS."""
    for old in dcmtk_destination.iterdir():
        old.unlink()
    result = dcmtk(
        "movescu", "-S", "-aec", corpus.server.ae_title, "-aem", "DEST",
        "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={corpus.study}",
        "127.0.0.1", str(corpus.server.dimse_port),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "0xa702" not in (result.stdout + result.stderr).lower()
    received = [dcmread(p) for p in dcmtk_destination.iterdir()]
    _check_received(corpus, received, *UNCOMPRESSED)
    for ds in received:
        stored = corpus.syntaxes[str(ds.SOPInstanceUID)]
        expected = stored if stored in UNCOMPRESSED else ExplicitVRLittleEndian
        assert ds.file_meta.TransferSyntaxUID == expected, stored
    implicit = [ds for ds in received if ds.Modality == "MR"]
    assert implicit and all(ds["ImageType"].VR == "CS" for ds in implicit)


@pytest.mark.dcmtk
def test_getscu_gets_every_syntax_converted(corpus: Corpus, tmp_path: Path) -> None:
    """getscu proposes the uncompressed storage syntaxes, explicit little endian first:
    every instance arrives in one of them with its pixels (the implicit one may go as
    stored; the big-endian, deflated and JPEG ones are converted)."""
    out = tmp_path / "get"
    out.mkdir()
    result = dcmtk(
        "getscu", "-S", "-aec", corpus.server.ae_title, "-od", str(out), "+xe",
        "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={corpus.study}",
        "127.0.0.1", str(corpus.server.dimse_port),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    received = [dcmread(p) for p in out.iterdir()]
    _check_received(corpus, received, ExplicitVRLittleEndian, ImplicitVRLittleEndian)
