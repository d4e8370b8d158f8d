"""Shared fixtures: both index backends, a real archive, a real running server.

PostgreSQL tests use ``NOCTIS_TEST_PG_URL`` (default the local server) with one
throw-away schema per archive; with ``NOCTIS_REQUIRE_PG=1`` (CI) an unreachable
server fails the run instead of skipping.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from noctis_pacs.core.settings import Settings, load_settings

PG_URL = os.environ.get("NOCTIS_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REQUIRE_PG = os.environ.get("NOCTIS_REQUIRE_PG") == "1"
#: Set by ``make test-fast``: a test reaching PostgreSQL or dcmtk without its marker
#: fails instead of quietly making the fast subset slow or dependent on them.
FAST = os.environ.get("NOCTIS_TEST_FAST") == "1"
#: Backend parameters; the PostgreSQL one carries the ``postgres`` marker, so
#: ``-m "not postgres"`` (``make test-fast``) deselects every test that needs it.
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
#: ``dimse.workers`` of the servers tests start (``start_server``), as TOML.
TEST_DIMSE_WORKERS = json.dumps(
    int(value) if (value := os.environ.get("NOCTIS_TEST_DIMSE_WORKERS", "1")).isdigit() else value
)

warnings.filterwarnings("ignore", module="pydicom")


def _pg_reachable() -> str | None:
    try:
        import psycopg

        with psycopg.connect(PG_URL, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
        return None
    except Exception as exc:  # noqa: BLE001
        return str(exc)


_PG_STATE: dict[str, str | None] = {}
_SCHEMAS: list[str] = []


def pg_schema_url() -> str:
    """A fresh schema in the test database; dropped at the end of the session."""
    if FAST:
        pytest.fail("this test reaches PostgreSQL: mark it @pytest.mark.postgres")
    if "error" not in _PG_STATE:
        _PG_STATE["error"] = _pg_reachable()
    error = _PG_STATE["error"]
    if error is not None:
        message = f"PostgreSQL at {PG_URL} unreachable: {error}"
        if REQUIRE_PG:
            pytest.fail(message)
        pytest.skip(message)
    import psycopg

    name = f"noctis_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{name}"')
    _SCHEMAS.append(name)
    sep = "&" if "?" in PG_URL else "?"
    return f"{PG_URL}{sep}schema={name}"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not _SCHEMAS:
        return
    import psycopg

    try:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            for name in _SCHEMAS:
                conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    except Exception:  # noqa: BLE001
        pass


def db_url_for(backend: str, data_dir: Path) -> str:
    if backend == "sqlite":
        return f"sqlite:///{data_dir / 'index.sqlite3'}"
    return pg_schema_url()


def make_settings(data_dir: Path, db_url: str, **sections: dict[str, object]) -> Settings:
    overrides: dict[str, dict[str, object]] = {"storage": {"data_dir": str(data_dir), "db": db_url}}
    for name, values in sections.items():
        overrides.setdefault(name, {}).update(values)
    return load_settings(environ={}, overrides=overrides)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def settings(tmp_path: Path, backend: str) -> Settings:
    return make_settings(tmp_path / "data", db_url_for(backend, tmp_path / "data"))


@pytest.fixture
def archive(settings: Settings) -> Iterator[object]:
    from storage.archive import Archive

    arch = Archive(settings)
    yield arch
    arch.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RunningServer:
    """A real ``noctis-pacs serve`` process on free ports."""

    process: subprocess.Popen[bytes]
    http_port: int
    dimse_port: int
    ae_title: str
    data_dir: Path
    db_url: str
    config_path: Path
    log_path: Path
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb_url(self) -> str:
        return f"{self.http_url}/dicom-web"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        if self.alive():
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()


def start_server(
    data_dir: Path,
    db_url: str,
    *,
    config: str = "",
    env: dict[str, str] | None = None,
    args: list[str] | None = None,
    wait_http: bool = True,
    dimse_extra: str = "",
) -> RunningServer:
    """Start ``noctis-pacs serve`` with ``config`` (TOML) appended to the defaults.

    ``dimse_extra`` holds ``key = value`` lines placed under the ``[dimse]`` table.
    Without a ``workers`` line there the server runs ``TEST_DIMSE_WORKERS`` DIMSE
    processes: one unless ``NOCTIS_TEST_DIMSE_WORKERS`` says otherwise (``auto``, the
    shipped default, starts a worker process per server: the whole suite passes that
    way too, but takes minutes longer; ``tests/test_dimse_workers.py`` covers it).
    """
    if not re.search(r"^\s*workers\s*=", dimse_extra, re.MULTILINE):
        dimse_extra = f"{dimse_extra}\nworkers = {TEST_DIMSE_WORKERS}"
    http_port, dimse_port = free_port(), free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    config_path = data_dir.parent / f"noctis-{uuid.uuid4().hex[:6]}.toml"
    config_path.write_text(
        f'[storage]\ndata_dir = "{data_dir}"\ndb = "{db_url}"\nfsync = "never"\n'
        f'[http]\nhost = "127.0.0.1"\nport = {http_port}\n'
        f'[dimse]\nhost = "127.0.0.1"\nport = {dimse_port}\nae_title = "NOCTIS"\n'
        + (dimse_extra.strip() + "\n" if dimse_extra.strip() else "")
        + config
    )
    log_path = data_dir.parent / f"server-{http_port}.log"
    full_env = {**os.environ, **(env or {})}
    process = subprocess.Popen(
        [str(BIN / "noctis-pacs"), "serve", "--config", str(config_path), *(args or [])],
        stdout=open(log_path, "wb"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
        env=full_env,
        cwd=data_dir.parent,
    )
    server = RunningServer(
        process, http_port, dimse_port, "NOCTIS", data_dir, db_url, config_path, log_path
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if not server.alive():
            raise RuntimeError(f"server exited early:\n{server.log()}")
        try:
            if wait_http:
                if httpx.get(f"{server.http_url}/readyz", timeout=1).status_code == 200:
                    break
            else:
                with socket.create_connection(("127.0.0.1", dimse_port), timeout=1):
                    break
        except (httpx.HTTPError, OSError):
            time.sleep(0.02)  # the fault trial's restart time is measured through this
    else:
        server.stop()
        raise RuntimeError(f"server did not become ready:\n{server.log()}")
    if wait_http and "dimse-only" not in " ".join(args or []):
        for _ in range(100):
            try:
                with socket.create_connection(("127.0.0.1", dimse_port), timeout=1):
                    break
            except OSError:
                time.sleep(0.05)
    return server


@pytest.fixture(scope="module", params=BACKENDS)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    """One real server per test module and backend (tests use fresh UIDs)."""
    base = tmp_path_factory.mktemp(f"server-{request.param}")
    srv = start_server(base / "data", db_url_for(str(request.param), base / "data"))
    yield srv
    srv.stop()


@pytest.fixture
def server_factory(tmp_path: Path, backend: str) -> Iterator[Callable[..., RunningServer]]:
    """Start servers with a custom configuration; all stopped after the test."""
    started: list[RunningServer] = []

    def factory(config: str = "", **kwargs: object) -> RunningServer:
        data_dir = tmp_path / f"data{len(started)}"
        srv = start_server(
            data_dir,
            kwargs.pop("db_url", None) or db_url_for(backend, data_dir),  # type: ignore[arg-type]
            config=config,
            **kwargs,  # type: ignore[arg-type]
        )
        started.append(srv)
        return srv

    yield factory
    for srv in started:
        srv.stop()
