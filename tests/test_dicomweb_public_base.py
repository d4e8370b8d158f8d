"""The DICOMweb root URL put into responses (Retrieve URL, PS3.18 10.5.3 and Table
10.5.3-1; BulkDataURI, PS3.18 F.2.6): as the client addressed the server, through a
reverse proxy's X-Forwarded-* headers, or as configured."""

from __future__ import annotations

from starlette.requests import Request

from dicomweb.resources import public_base
from noctis_pacs.core.settings import Settings, load_settings

SERVER = ("127.0.0.1", 8042)


def _request(headers: dict[str, str], *, root_path: str = "", scheme: str = "http") -> Request:
    return Request(
        {
            "type": "http",
            "method": "POST",
            "scheme": scheme,
            "server": SERVER,
            "root_path": root_path,
            "path": f"{root_path}/dicom-web/studies",
            "query_string": b"",
            "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        }
    )


def _settings(public_base_url: str = "") -> Settings:
    return load_settings(environ={}, overrides={"http": {"public_base_url": public_base_url}})


def test_the_request_s_own_host_and_port() -> None:
    request = _request({"host": "pacs.local:8042"})
    assert public_base(request, _settings()) == "http://pacs.local:8042/dicom-web"


def test_a_host_header_without_the_port_gets_the_listening_port() -> None:
    """dicomweb-client 0.61 sends ``Host: 127.0.0.1`` without the port."""
    request = _request({"host": "127.0.0.1"})
    assert public_base(request, _settings()) == "http://127.0.0.1:8042/dicom-web"


def test_root_path_is_kept() -> None:
    request = _request({"host": "pacs.local:8042"}, root_path="/pacs")
    assert public_base(request, _settings()) == "http://pacs.local:8042/pacs/dicom-web"


def test_forwarded_host_proto_and_prefix_first_values_win() -> None:
    request = _request(
        {
            "host": "127.0.0.1:8042",
            "x-forwarded-host": "pacs.example.org, proxy.internal",
            "x-forwarded-proto": "https, http",
            "x-forwarded-prefix": "/archive/, /other",
        }
    )
    assert public_base(request, _settings()) == "https://pacs.example.org/archive/dicom-web"


def test_forwarded_proto_alone_changes_the_scheme() -> None:
    request = _request({"host": "pacs.local:8042", "x-forwarded-proto": "https"})
    assert public_base(request, _settings()) == "https://pacs.local:8042/dicom-web"


def test_the_configured_base_wins_and_the_answer_follows_each_request() -> None:
    """The configured ``http.public_base_url`` wins over the headers; without it, two
    requests with other headers get their own answers (the worked-out base is cached by
    the headers, never shared across different ones)."""
    configured = _settings("https://pacs.example.org/")
    request = _request({"host": "evil.example", "x-forwarded-host": "evil.example"})
    assert public_base(request, configured) == "https://pacs.example.org/dicom-web"
    first = _request({"host": "a.example:8042"})
    second = _request({"host": "b.example:8042"})
    assert public_base(first, _settings()) == "http://a.example:8042/dicom-web"
    assert public_base(second, _settings()) == "http://b.example:8042/dicom-web"
    assert public_base(first, _settings()) == "http://a.example:8042/dicom-web"
