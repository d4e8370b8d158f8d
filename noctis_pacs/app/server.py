"""Process wiring: the only module that knows every package.

``serve`` builds the archive, the metrics registry, the DIMSE Application
Entity and the DICOMweb application from one ``Settings`` and runs them in
one process until interrupted.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from noctis_pacs.app import runtime
from noctis_pacs.app.job_runner import JobRunner
from noctis_pacs.app.retention_worker import RetentionWorker
from noctis_pacs.app.router import Router
from noctis_pacs.app.workflow_worker import WorkflowWorker
from noctis_pacs.core.logs import configure_logging
from noctis_pacs.core.metrics import Metrics, build_metrics
from noctis_pacs.core.netfilter import is_loopback_host
from noctis_pacs.core.settings import Settings, SettingsError, load_settings
from storage.archive import Archive

log = logging.getLogger("noctis.server")


def build_dimse(settings: Settings, archive: Archive, metrics: Metrics) -> Any:
    from dimse.server import DimseServer
    from noctis_pacs.app.dimse_workers import spawn_workers

    return DimseServer(
        settings=settings, archive=archive, metrics=metrics, spawn_workers=spawn_workers
    )


def admin_hooks(settings: Settings, wake_jobs: Callable[[], None] | None = None) -> Any:
    """What the admin API borrows from the other packages: C-ECHO through ``dimse.scu``
    and the job runner's wake-up (``dicomweb`` and ``dimse`` never import each other)."""
    from dicomweb.admin_api import AdminHooks
    from dimse.scu import echo
    from noctis_pacs.core.remotes import Remote

    def echo_remote(remote: Remote) -> dict[str, Any]:
        result = echo(
            remote, calling_ae=settings.dimse.ae_title, timeout=settings.jobs.timeout_seconds
        )
        return result.as_json()

    return AdminHooks(echo=echo_remote, wake_jobs=wake_jobs)


def build_http_app(
    settings: Settings,
    archive: Archive,
    metrics: Metrics,
    wake_jobs: Callable[[], None] | None = None,
) -> Any:
    from dicomweb.app import create_app

    return create_app(
        settings=settings,
        archive=archive,
        metrics=metrics,
        admin_hooks=admin_hooks(settings, wake_jobs),
    )


#: How ``serve`` hands its settings to HTTP worker processes (``http.workers`` > 1).
SETTINGS_ENV = "NOCTIS_SETTINGS_JSON"


def settings_json(settings: Settings) -> str:
    return json.dumps(dataclasses.asdict(settings))


def http_worker_app() -> Any:
    """uvicorn factory for HTTP worker processes: each builds its own archive and app
    from the settings ``serve`` resolved (flags, environment and file already merged)."""
    settings = load_settings(environ={}, overrides=json.loads(os.environ[SETTINGS_ENV]))
    configure_logging(settings.logging.level, settings.logging.format)
    return build_http_app(settings, Archive(settings), build_metrics())


def check_exposure(settings: Settings, *, http: bool = True) -> None:
    """Refuse to serve patient data anonymously to the network (safe by default)."""
    if not http or not settings.http.enabled or settings.auth.mode != "none":
        return
    if is_loopback_host(settings.http.host) or settings.auth.allow_anonymous_remote:
        return
    raise SettingsError(
        f"refusing to start: HTTP would listen on {settings.http.host} (not loopback) with "
        'auth.mode = "none", giving anyone on the network full access. Set auth.mode = '
        '"token" or "oidc" (docs/security.md), or listen on 127.0.0.1 (http.host), or set '
        "auth.allow_anonymous_remote = true if this is on purpose"
    )


def _audit_refusal(settings: Settings, reason: str) -> None:
    """A refused start is a security event: on record when the archive exists."""
    import getpass

    from noctis_pacs.core.audit import AuditAction, AuditEvent, AuditOutcome
    from storage.archive import archive_missing

    if archive_missing(settings) is not None:
        return
    try:
        user = getpass.getuser()
    except (OSError, KeyError):
        user = "unknown"
    archive = Archive(settings)
    try:
        archive.audit(
            AuditEvent(
                action=AuditAction.CONFIG_REFUSED,
                outcome=AuditOutcome.DENIED,
                principal=user,
                principal_kind="cli",
                detail=reason[:500],
            )
        )
    finally:
        archive.close()


def tls_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's TLS options for ``[http] tls_*`` (empty when TLS is off)."""
    import ssl

    http = settings.http
    if not http.tls_cert:
        return {}
    options: dict[str, Any] = {"ssl_certfile": http.tls_cert, "ssl_keyfile": http.tls_key}
    if http.tls_client_ca:
        options["ssl_ca_certs"] = http.tls_client_ca
        options["ssl_cert_reqs"] = (
            ssl.CERT_REQUIRED if http.tls_require_client_certificate else ssl.CERT_OPTIONAL
        )
    return options


def log_security_posture(settings: Settings, *, http: bool, dimse: bool) -> None:
    """One start-up line saying how exposed this server is."""
    parts = [f"auth mode {settings.auth.mode}"]
    if http and settings.http.enabled:
        tls = "on" if settings.http.tls_cert else "off"
        parts.append(f"HTTP on {settings.http.host}:{settings.http.port} (TLS {tls})")
    if dimse and settings.dimse.enabled:
        tls = "on" if settings.dimse.tls_certificate else "off"
        parts.append(
            f"DIMSE on {settings.dimse.host}:{settings.dimse.port} (TLS {tls}, "
            f"access {settings.dimse.access_control})"
        )
    log.info("security: %s", "; ".join(parts))
    if settings.auth.mode == "none" and not is_loopback_host(settings.http.host):
        log.warning("security: anonymous HTTP access from the network (allow_anonymous_remote)")


def run_http(
    settings: Settings,
    archive: Archive,
    metrics: Metrics,
    wake_jobs: Callable[[], None] | None = None,
) -> None:
    """Serve HTTP until interrupted: in this process, or in ``http.workers`` processes
    sharing the port (each with its own index connections; /metrics then reports the
    worker that answers, so scrape the DIMSE and workflow figures from one process)."""
    import uvicorn

    common: dict[str, Any] = {
        "host": settings.http.host,
        "port": settings.http.port,
        "log_level": "warning",
        "access_log": False,
        "timeout_graceful_shutdown": 5,
        **tls_options(settings),
    }
    log.info(
        "HTTP listening on %s:%d (%d worker(s))",
        settings.http.host,
        settings.http.port,
        settings.http.workers,
    )
    if settings.http.workers > 1:
        os.environ[SETTINGS_ENV] = settings_json(settings)
        uvicorn.run(
            "noctis_pacs.app.server:http_worker_app",
            factory=True,
            workers=settings.http.workers,
            **common,
        )
        return
    app = build_http_app(settings, archive, metrics, wake_jobs)
    uvicorn.Server(uvicorn.Config(app, lifespan="on", **common)).run()


def _index_for_logs(url: str) -> str:
    """The index URL without a password."""
    import re

    return re.sub(r"//([^:@/]+):[^@/]*@", r"//\1:***@", url)


def _prepare_layout(archive: Archive) -> None:
    """Create the blob store's missing fan-out folders (a fresh store's first start), and
    remove the packs whose every record was deleted while a process still appended to
    them (a scan of each pack stops at its first live record)."""
    started = time.monotonic()
    try:
        made = archive.blobs.prepare_layout()
        swept = archive.blobs.sweep_packs()
    except OSError as exc:
        log.warning("could not prepare the blob store's folders: %s", exc)
        return
    if made:
        log.info("prepared %d blob store folders in %.1f s", made, time.monotonic() - started)
    if swept:
        log.info("removed %d pack files with nothing left in them", swept)


class PortInUseError(OSError):
    """A port ``serve`` needs is taken; the message names it and the flag that moves it."""


def check_port(host: str, port: int, *, what: str, flag: str, setting: str) -> None:
    """Bind ``host:port`` as the listener will (SO_REUSEADDR), and let go: a port in use
    (or a host that is not this machine's) becomes one message naming the flag."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            env = "NOCTIS_" + setting.replace(".", "_").upper()
            raise PortInUseError(
                exc.errno,
                f"cannot listen for {what} on {host}:{port}: {exc.strerror}. Another server "
                f"(perhaps another noctis-pacs) holds the port: stop it, or choose another "
                f"port with {flag} PORT ({setting} in the config, {env}).",
            ) from None


def _browser_url(settings: Settings) -> str:
    host = settings.http.host
    if host in ("0.0.0.0", "::", ""):
        host = "localhost"
    elif ":" in host:
        host = f"[{host}]"
    scheme = "https" if settings.http.tls_cert else "http"
    return f"{scheme}://{host}:{settings.http.port}"


def serve(
    settings: Settings,
    *,
    http: bool = True,
    dimse: bool = True,
    config_file: str | None = None,
) -> None:
    """Run HTTP and/or DIMSE until SIGINT / SIGTERM."""
    try:
        check_exposure(settings, http=http)
    except SettingsError as exc:
        _audit_refusal(settings, str(exc))
        raise
    log_security_posture(settings, http=http, dimse=dimse)
    run_dimse = dimse and settings.dimse.enabled
    run_web = http and settings.http.enabled
    if run_dimse:
        check_port(
            settings.dimse.host,
            settings.dimse.port,
            what="DIMSE",
            flag="--dimse-port",
            setting="dimse.port",
        )
    if run_web:
        check_port(
            settings.http.host,
            settings.http.port,
            what="HTTP",
            flag="--http-port",
            setting="http.port",
        )
    log.info(
        "noctis-pacs starting: configuration %s; data directory %s; index %s",
        config_file or "none (defaults and NOCTIS_* environment)",
        Path(settings.storage.data_dir).resolve(),
        _index_for_logs(settings.db_url),
    )
    metrics = build_metrics()
    archive = Archive(settings)
    removed = archive.blobs.clean_temporary()
    if removed:
        log.info("removed %d leftover temporary files of interrupted writes", removed)
    threading.Thread(
        target=_prepare_layout, args=(archive,), name="blob-layout", daemon=True
    ).start()
    dimse_server = None
    # Study tracking, stability and webhook delivery (noctis_pacs/app/workflow_worker.py).
    # A study that becomes stable feeds routing rules `on: stable` in the same transaction.
    archive.tracker.on_stable = archive.record_stable
    workflow_worker = WorkflowWorker(settings, tracker=archive.tracker, deliveries=archive.events)
    workflow_worker.start()
    # Send jobs kept in the index (noctis_pacs/app/job_runner.py).
    job_runner = (
        JobRunner(
            settings,
            archive,
            fast_path=lambda: dimse_server.fast if dimse_server is not None else None,
        )
        if settings.jobs.enabled
        else None
    )
    # Routing rules' inbox and durable queue (noctis_pacs/app/router.py).
    router = (
        Router(
            settings,
            archive,
            metrics,
            fast_path=lambda: dimse_server.fast if dimse_server is not None else None,
        )
        if settings.routing.enabled
        else None
    )
    retention = RetentionWorker(settings, archive) if settings.retention.enabled else None
    if retention is not None:
        retention.start()
    try:
        if run_dimse:
            dimse_server = build_dimse(settings, archive, metrics)
            dimse_server.start()
            log.info(
                "DIMSE %s listening on %s:%d",
                settings.dimse.ae_title,
                settings.dimse.host,
                settings.dimse.port,
            )
        # Started once DIMSE is up: their C-STOREs use its fast path from the first one
        # (a queue drained right after a restart went out on stock pynetdicom).
        for worker in (job_runner, router):
            if worker is not None:
                worker.start()
        runtime.settle()
        if run_web:
            log.info(
                "DICOMweb at %s/dicom-web (point a viewer there; health at %s/healthz)",
                _browser_url(settings),
                _browser_url(settings),
            )
            run_http(
                settings, archive, metrics, job_runner.wake if job_runner is not None else None
            )
        else:
            stop = threading.Event()
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, lambda *_: stop.set())
            stop.wait()
    finally:
        if retention is not None:
            retention.stop()
        if router is not None:
            router.stop()
        if job_runner is not None:
            job_runner.stop()
        workflow_worker.stop()
        if dimse_server is not None:
            dimse_server.stop()
        archive.close()
        log.info("stopped")
