"""`noctis-pacs serve` start-up as a new user meets it (issue 14 defect 10)."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest

from tests.conftest import BIN, RunningServer, free_port


def _serve(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "noctis-pacs"), "serve", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("busy", ["dimse", "http"])
def test_busy_port_names_the_port_and_the_flag(tmp_path: Path, busy: str) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        ports = {"dimse": free_port(), "http": free_port()}
        ports[busy] = taken
        result = _serve(
            tmp_path,
            "--data-dir", str(tmp_path / "data"),
            "--http-host", "127.0.0.1", "--http-port", str(ports["http"]),
            "--dimse-host", "127.0.0.1", "--dimse-port", str(ports["dimse"]),
        )  # fmt: skip
    assert result.returncode == 1
    output = result.stdout + result.stderr
    assert "Traceback" not in output
    assert f"127.0.0.1:{taken}" in result.stderr
    assert f"--{busy}-port" in result.stderr and f"NOCTIS_{busy.upper()}_PORT" in result.stderr
    assert not (tmp_path / "data").exists(), "a refused start creates nothing"


def test_startup_log_names_config_data_dir_and_url(server: RunningServer) -> None:
    log = server.log()
    assert f"configuration {server.config_path}" in log
    assert f"data directory {server.data_dir}" in log
    assert f"http://127.0.0.1:{server.http_port}/dicom-web" in log


def test_dimse_host_flag_chooses_the_listening_address(tmp_path: Path) -> None:
    """``--dimse-host`` binds DIMSE to one address only: 127.0.0.2 is served, 127.0.0.1
    is not."""
    from tests.conftest import start_server

    srv = start_server(
        tmp_path / "data",
        f"sqlite:///{tmp_path / 'data' / 'index.sqlite3'}",
        args=["--dimse-host", "127.0.0.2"],
    )
    try:
        assert f"listening on 127.0.0.2:{srv.dimse_port}" in srv.log()
        with socket.create_connection(("127.0.0.2", srv.dimse_port), timeout=5):
            pass
        with (
            pytest.raises(OSError),
            socket.create_connection(("127.0.0.1", srv.dimse_port), timeout=5),
        ):
            pass
    finally:
        srv.stop()
