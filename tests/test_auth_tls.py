"""HTTPS with a test CA (keys and certificates made here with ``cryptography``):
HSTS, a required client certificate, and CORS for a browser viewer with auth on."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.auth_support import NO_LIMITS, create_token
from tests.conftest import RunningServer, db_url_for, start_server

VIEWER_ORIGIN = "https://ohif.example.org"


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _write_key(key: Any, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def make_pki(folder: Path) -> None:
    """A throw-away CA, a server certificate for 127.0.0.1 and a client certificate."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("Noctis Test CA"))
        .issuer_name(_name("Noctis Test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    (folder / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    for name, usage in (
        ("server", x509.oid.ExtendedKeyUsageOID.SERVER_AUTH),
        ("client", x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH),
    ):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
                ),
                critical=False,
            )
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        (folder / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(key, folder / f"{name}.key")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("pki")
    make_pki(folder)
    return folder


@pytest.fixture(scope="module")
def tls_server(pki: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    base = tmp_path_factory.mktemp("tls")
    env = {
        "NOCTIS_HTTP_TLS_CERT": str(pki / "server.pem"),
        "NOCTIS_HTTP_TLS_KEY": str(pki / "server.key"),
        "NOCTIS_HTTP_TLS_CLIENT_CA": str(pki / "ca.pem"),
        "NOCTIS_HTTP_TLS_REQUIRE_CLIENT_CERTIFICATE": "true",
        "NOCTIS_HTTP_CORS_ORIGINS": f"*,{VIEWER_ORIGIN}",
    }
    server = start_server(
        base / "data",
        db_url_for("sqlite", base / "data"),
        config='[auth]\nmode = "token"\n' + NO_LIMITS,
        env=env,
        wait_http=False,
    )
    yield server
    server.stop()


def client(pki: Path, *, with_certificate: bool = True, **kwargs: Any) -> httpx.Client:
    context = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    if with_certificate:
        context.load_cert_chain(str(pki / "client.pem"), str(pki / "client.key"))
    return httpx.Client(verify=context, timeout=10, **kwargs)


def url(server: RunningServer, path: str) -> str:
    return f"https://127.0.0.1:{server.http_port}{path}"


def wait_https(server: RunningServer, pki: Path) -> None:
    import time

    deadline = time.monotonic() + 30
    with client(pki) as http:
        while True:
            try:
                http.get(url(server, "/readyz"))
                return
            except httpx.TransportError:
                assert time.monotonic() < deadline, server.log()
                time.sleep(0.2)


def test_https_with_hsts_and_a_required_client_certificate(
    tls_server: RunningServer, pki: Path
) -> None:
    """RFC 6797: Strict-Transport-Security on HTTPS answers; a client without a
    certificate from the configured CA cannot complete the handshake."""
    wait_https(tls_server, pki)
    secret = create_token(tls_server, "tls-viewer", "viewer")
    with client(pki, headers={"Authorization": f"Bearer {secret}"}) as http:
        response = http.get(url(tls_server, "/dicom-web/studies"))
        assert response.status_code == 200
        assert response.headers["strict-transport-security"].startswith("max-age=")
        assert http.get(url(tls_server, "/healthz")).headers["strict-transport-security"]
    with client(pki, with_certificate=False) as http, pytest.raises(httpx.TransportError):
        http.get(url(tls_server, "/healthz"))
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{tls_server.http_port}/healthz", timeout=5)
    assert "TLS on" in tls_server.log()


def test_cors_for_a_browser_viewer_with_auth_on(tls_server: RunningServer, pki: Path) -> None:
    """OHIF on another origin with Basic credentials: the preflight allows Authorization
    and credentials for the configured origin; '*' is never answered with auth on."""
    wait_https(tls_server, pki)
    secret = create_token(tls_server, "ohif", "viewer")
    with client(pki) as http:
        preflight = http.options(
            url(tls_server, "/dicom-web/studies"),
            headers={
                "Origin": VIEWER_ORIGIN,
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "authorization",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == VIEWER_ORIGIN
        assert preflight.headers["access-control-allow-credentials"] == "true"
        assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
        answer = http.get(
            url(tls_server, "/dicom-web/studies"),
            headers={"Origin": VIEWER_ORIGIN},
            auth=("ohif", secret),
        )
        assert answer.status_code == 200
        assert answer.headers["access-control-allow-origin"] == VIEWER_ORIGIN
        other = http.get(
            url(tls_server, "/dicom-web/studies"),
            headers={"Origin": "https://evil.example.org"},
            auth=("ohif", secret),
        )
        assert other.headers.get("access-control-allow-origin") is None
