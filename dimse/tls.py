"""TLS for the DIMSE port: PS3.15 Annex B.9, the BCP 195 TLS Secure Transport profile.

TLS 1.2 or later, forward-secret AEAD cipher suites; the server certificate and
key from the settings; with a CA file, client certificates are verified and,
when ``tls_require_client_certificate`` is set, required.
"""

from __future__ import annotations

import ssl

from noctis_pacs.core.settings import DimseSettings

#: BCP 195 (RFC 9325) recommended TLS 1.2 suites; TLS 1.3 suites are all acceptable.
BCP195_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM"


def server_context(dimse: DimseSettings) -> ssl.SSLContext | None:
    """The server-side context, or ``None`` when no certificate is configured."""
    if not dimse.tls_certificate:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(BCP195_CIPHERS)
    context.load_cert_chain(dimse.tls_certificate, dimse.tls_key)
    if dimse.tls_ca:
        context.load_verify_locations(dimse.tls_ca)
        context.verify_mode = (
            ssl.CERT_REQUIRED if dimse.tls_require_client_certificate else ssl.CERT_OPTIONAL
        )
    elif dimse.tls_require_client_certificate:
        raise ValueError("dimse.tls_require_client_certificate needs dimse.tls_ca")
    return context
