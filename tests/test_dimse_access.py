"""Access control (allow list, permissions, host check) and TLS on the DIMSE port."""

from __future__ import annotations

import ssl
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import build_context
from pynetdicom.sop_class import (
    SecondaryCaptureImageStorage,
    StudyRootQueryRetrieveInformationModelFind,
    Verification,
)

from tests.conftest import RunningServer
from tests.factory import make_dataset
from tests.test_dimse_support import associate, dcmtk

ALLOW = 'access_control = "allow_list"'
REMOTES = """
[dimse.remotes.full]
ae_title = "FULL"
host = "127.0.0.1"
port = 11112
[dimse.remotes.reader]
ae_title = "READER"
host = "127.0.0.1"
port = 11113
permissions = ["query"]
[dimse.remotes.elsewhere]
ae_title = "ELSEWHERE"
host = "192.0.2.10"
port = 104
check_host = true
"""


@pytest.fixture
def guarded(server_factory: Callable[..., RunningServer]) -> RunningServer:
    return server_factory(REMOTES, dimse_extra=ALLOW)


@pytest.mark.dcmtk
def test_unknown_calling_ae_rejected(guarded: RunningServer) -> None:
    """PS3.8 9.3.4 Table 9-21: A-ASSOCIATE-RJ, rejected-permanent, service-user,
    reason 3 "calling-AE-title-not-recognized"; known AEs associate."""
    assoc = associate(guarded.dimse_port, ae_title="STRANGER")
    assert assoc.is_rejected
    rj = assoc.acceptor.primitive
    assert (rj.result, rj.result_source, rj.diagnostic) == (0x01, 0x01, 0x03)
    result = dcmtk(
        "echoscu", "-aet", "STRANGER", "-aec", "NOCTIS", "127.0.0.1", str(guarded.dimse_port)
    )
    assert result.returncode != 0
    assert "Calling AE Title Not Recognized" in result.stderr
    ok = dcmtk("echoscu", "-aet", "FULL", "-aec", "NOCTIS", "127.0.0.1", str(guarded.dimse_port))
    assert ok.returncode == 0, ok.stderr


def test_host_check(guarded: RunningServer) -> None:
    """A remote with check_host must come from its configured host (PS3.8 9.3.4 reason 3)."""
    assoc = associate(guarded.dimse_port, ae_title="ELSEWHERE")
    assert assoc.is_rejected


def test_per_ae_permissions(guarded: RunningServer) -> None:
    """A caller without the store permission cannot store (its storage context is
    rejected, PS3.8 9.3.3.2); with the query permission it can query."""
    contexts = [
        build_context(SecondaryCaptureImageStorage, ExplicitVRLittleEndian),
        build_context(StudyRootQueryRetrieveInformationModelFind),
        build_context(Verification),
    ]
    assoc = associate(guarded.dimse_port, contexts, ae_title="READER")
    assert assoc.is_established
    accepted = {cx.abstract_syntax for cx in assoc.accepted_contexts}
    assert SecondaryCaptureImageStorage not in accepted
    assert StudyRootQueryRetrieveInformationModelFind in accepted
    with pytest.raises(ValueError):
        assoc.send_c_store(make_dataset())
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = ""
    statuses = [
        s.Status for s, _ in assoc.send_c_find(query, StudyRootQueryRetrieveInformationModelFind)
    ]
    assert statuses[-1] == 0x0000
    assoc.release()
    full = associate(guarded.dimse_port, contexts, ae_title="FULL")
    assert full.send_c_store(make_dataset()).Status == 0x0000
    full.release()


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _make_pki(folder: Path) -> None:
    """A throw-away CA, a server certificate for 127.0.0.1 and a client certificate."""
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key",
             "-out", "ca.pem", "-days", "2", "-subj", "/CN=Noctis Test CA", cwd=folder)  # fmt: skip
    (folder / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name in ("server", "client"):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
                 "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=folder)  # fmt: skip
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                 "-CAcreateserial", "-out", f"{name}.pem", "-days", "2",
                 "-extfile", "san.cnf", cwd=folder)  # fmt: skip


@pytest.mark.dcmtk
@pytest.mark.parametrize("workers", [1, 2])
def test_tls_association_with_client_certificate(
    server_factory: Callable[..., RunningServer], tmp_path: Path, workers: int
) -> None:
    """PS3.15 B.9 (BCP 195 TLS profile): TLS 1.2+ with a certificate from the configured
    CA; a required client certificate is enforced; plain TCP gets nothing; the
    listener keeps serving TLS peers afterwards. With two processes the worker's
    connections are handed over before the handshake, which the worker then runs."""
    pki = tmp_path / "pki"
    pki.mkdir()
    _make_pki(pki)
    server = server_factory(
        dimse_extra=(
            f'tls_certificate = "{pki / "server.pem"}"\ntls_key = "{pki / "server.key"}"\n'
            f'tls_ca = "{pki / "ca.pem"}"\ntls_require_client_certificate = true\n'
            f"workers = {workers}"
        )
    )

    def client_context(with_cert: bool) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(pki / "ca.pem"))
        if with_cert:
            context.load_cert_chain(str(pki / "client.pem"), str(pki / "client.key"))
        return context

    plain = associate(server.dimse_port)
    assert not plain.is_established
    anonymous = associate(server.dimse_port, tls_args=(client_context(False), "127.0.0.1"))
    assert not anonymous.is_established
    assoc = associate(server.dimse_port, tls_args=(client_context(True), "127.0.0.1"))
    assert assoc.is_established
    assert assoc.send_c_echo().Status == 0x0000
    assoc.release()
    result = dcmtk(
        "echoscu", "+tls", str(pki / "client.key"), str(pki / "client.pem"),
        "+cf", str(pki / "ca.pem"), "-aec", "NOCTIS", "127.0.0.1", str(server.dimse_port),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
