"""Settings: one place, safe defaults, validated at start-up.

Precedence (DESIGN.md): defaults < TOML file < ``NOCTIS_<SECTION>_<KEY>``
environment variables < command-line flags.  Every field here is documented
in ``config/noctis.example.toml``; a test keeps the two in step.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class SettingsError(ValueError):
    """A setting is missing, malformed or out of range; the message says which."""


@dataclass(frozen=True)
class StorageSettings:
    data_dir: str = "./data"
    #: Index URL: ``sqlite:///path`` or ``postgresql://...``; empty = SQLite in data_dir.
    db: str = ""
    #: ``always``: fsync every blob and its directory before acknowledging (survives power loss);
    #: ``never``: rely on the OS (survives a process crash, not a power cut).
    fsync: str = "always"
    #: What a second instance with a known SOP Instance UID does: ``overwrite`` or ``keep_first``.
    duplicates: str = "overwrite"
    #: Refuse new instances (out of resources) when free disk falls below this many MiB.
    min_free_mb: int = 64
    #: Largest number of index writes grouped into one transaction.
    max_batch: int = 256
    #: Blobs up to 1 MiB are appended to pack files (one durable write shared by
    #: concurrent stores) rather than each written as a file of its own.
    packs: bool = True


@dataclass(frozen=True)
class QuerySettings:
    #: Server-side maximum of results per query (QIDO-RS limit, C-FIND responses).
    max_results: int = 1000
    #: PN matching ignores case and accents (PS3.4 C.2.2.2.4 allows it as an option).
    case_insensitive_pn: bool = True


@dataclass(frozen=True)
class RemoteAE:
    ae_title: str
    host: str
    port: int
    #: Permissions when access control is on: any of store, query, retrieve.
    permissions: tuple[str, ...] = ("store", "query", "retrieve")
    #: When true, an association from this AE title must come from ``host``.
    check_host: bool = False
    #: The facilities whose studies this AE sees (C-FIND, C-MOVE, C-GET, MWL); empty = all.
    facilities: tuple[str, ...] = ()


@dataclass(frozen=True)
class DimseSettings:
    enabled: bool = True
    ae_title: str = "NOCTIS"
    host: str = "0.0.0.0"
    port: int = 4242
    max_associations: int = 32
    acse_timeout: float = 30.0
    dimse_timeout: float = 60.0
    network_timeout: float = 60.0
    max_pdu: int = 0
    #: Seconds between pending C-MOVE / C-GET responses (PS3.4 C.4.2.3.1: optional);
    #: the first sub-operation is always reported; 0 = after every sub-operation.
    pending_interval: float = 0.1
    #: ``open`` accepts any calling AE title; ``allow_list`` only the remotes below.
    access_control: str = "open"
    #: Peer addresses (CIDR) that may associate; empty = any.  ``deny`` wins over ``allow``.
    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()
    tls_certificate: str = ""
    tls_key: str = ""
    tls_ca: str = ""
    tls_require_client_certificate: bool = False
    #: Number of DIMSE processes serving the port (the serve process hands each
    #: association to the least busy one); 1 = in-process. ``"auto"`` (the default)
    #: is one per usable CPU, at most ``AUTO_WORKERS_MAX`` (``auto_workers``).
    #: /metrics counts the associations of every process.
    workers: int = field(default_factory=lambda: auto_workers())
    #: pynetdicom's transport tuned by ``dimse/fastpath/`` (only with the pynetdicom
    #: version it was validated against); false: stock pynetdicom throughout.
    fast_path: bool = True
    remotes: Mapping[str, RemoteAE] = field(default_factory=dict)


@dataclass(frozen=True)
class HttpLimits:
    """Abuse limits (per process: with ``http.workers`` > 1 each worker counts its own)."""

    #: Sustained requests per minute for one principal and for one client address; 0 = off.
    requests_per_minute: int = 12000
    #: Requests allowed at once above the sustained rate (a viewer opening a study).
    burst: int = 2000
    #: Failed authentications from one address within ``auth_failure_window_seconds``
    #: after which that address is blocked for ``block_seconds``; 0 = never block.
    auth_failures: int = 10
    auth_failure_window_seconds: float = 60.0
    block_seconds: float = 300.0


@dataclass(frozen=True)
class HttpSettings:
    enabled: bool = True
    #: Loopback by default: listening on the network needs auth, or auth.allow_anonymous_remote.
    host: str = "127.0.0.1"
    port: int = 8042
    #: Public base URL used in RetrieveURL / BulkDataURI; empty = from the request
    #: (honouring X-Forwarded-Host / X-Forwarded-Proto).
    public_base_url: str = ""
    cors_origins: tuple[str, ...] = ("*",)
    #: STOW-RS request body limit in MiB (413 above it).
    max_upload_mb: int = 4096
    workers: int = 1
    #: Client addresses (CIDR) that may connect; empty = any.  ``deny`` wins over ``allow``.
    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()
    #: HTTPS: PEM certificate chain and key; both empty = plain HTTP.
    tls_cert: str = ""
    tls_key: str = ""
    #: PEM CA bundle for client certificates; set = clients may present one.
    tls_client_ca: str = ""
    tls_require_client_certificate: bool = False
    #: Strict-Transport-Security max-age sent when TLS is on; 0 = no header.
    hsts_max_age: int = 31536000
    limits: HttpLimits = field(default_factory=HttpLimits)


@dataclass(frozen=True)
class OidcSettings:
    """OpenID Connect bearer tokens (JWT) from an identity provider such as Keycloak."""

    #: Expected ``iss`` (e.g. ``https://sso.example.org/realms/hospital``).
    issuer: str = ""
    #: Expected ``aud`` (the client id the tokens are issued for).
    audience: str = ""
    #: Where the provider publishes its signing keys; or a local JWKS file.
    jwks_url: str = ""
    jwks_file: str = ""
    #: Signature algorithms accepted (RS256 and/or ES256; never ``none`` or HMAC).
    algorithms: tuple[str, ...] = ("RS256", "ES256")
    #: Clock skew tolerated on ``exp`` / ``nbf`` / ``iat``, in seconds.
    leeway_seconds: float = 30.0
    #: Claims read for the principal; dotted paths reach nested claims.
    name_claim: str = "preferred_username"
    roles_claim: str = "realm_access.roles"
    facilities_claim: str = "facilities"
    #: The JWKS is re-read after this many seconds, and on an unknown ``kid``
    #: at most once per ``jwks_min_refresh_seconds``.
    jwks_cache_seconds: float = 300.0
    jwks_min_refresh_seconds: float = 10.0
    #: The web application's sign-in with the provider (authorization code flow with
    #: PKCE, RFC 7636): its authorization and token endpoints. Empty: API tokens only.
    authorization_url: str = ""
    token_url: str = ""
    #: The client the web application signs in as (``audience`` when empty) and, for a
    #: confidential client, its secret (a public client relies on PKCE alone).
    client_id: str = ""
    client_secret: str = ""
    scopes: str = "openid profile"
    #: The provider's name on the sign-in button.
    display_name: str = "single sign-on"


@dataclass(frozen=True)
class AuthSettings:
    #: ``none`` (everybody has every permission), ``token`` (API tokens) or
    #: ``oidc`` (JWTs from an identity provider, and API tokens).
    mode: str = "none"
    #: Let ``serve`` listen on a non-loopback address with ``mode = "none"``.
    allow_anonymous_remote: bool = False
    #: Seconds a token look-up is cached per process (how long a revoke takes to apply).
    token_cache_seconds: float = 5.0
    oidc: OidcSettings = field(default_factory=OidcSettings)


@dataclass(frozen=True)
class LoggingSettings:
    level: str = "INFO"
    #: ``json`` (one object per line) or ``text``.
    format: str = "text"


@dataclass(frozen=True)
class RenderingSettings:
    #: Memory bound of the MPR/MIP volume cache, in MiB.
    volume_cache_mb: int = 1024
    thumbnail_size: int = 128
    jpeg_quality: int = 90


@dataclass(frozen=True)
class WorkflowSettings:
    #: Seconds without a new instance after which a study is stable.
    stable_after_seconds: float = 60.0
    #: Offer IN PROGRESS steps in worklist answers as well as SCHEDULED ones.
    worklist_include_in_progress: bool = False
    webhooks: tuple[str, ...] = ()
    #: How often the workflow worker looks for new instances, stable studies, due webhooks.
    poll_interval_seconds: float = 1.0
    #: Seconds a webhook receiver has to answer one POST.
    webhook_timeout_seconds: float = 10.0
    #: First retry delay of a failed webhook delivery; doubled per attempt up to the maximum.
    webhook_retry_initial_seconds: float = 2.0
    webhook_retry_max_seconds: float = 300.0
    #: Attempts before a delivery is given up (status ``failed``); 0 = never give up.
    webhook_max_attempts: int = 100


@dataclass(frozen=True)
class AuditSyslogSettings:
    """A copy of every audit record sent to a syslog collector as a DICOM audit message
    (PS3.15 A.5) in an RFC 5424 message over TCP (RFC 6587 octet counting) or TLS
    (RFC 5425): the IHE ATNA transport. Off while ``host`` is empty."""

    host: str = ""
    #: 6514 is the port RFC 5425 assigns to syslog over TLS.
    port: int = 6514
    tls: bool = True
    #: PEM CA bundle the collector's certificate must chain to; empty = the system's.
    ca_file: str = ""
    #: Our PEM certificate and key, for collectors that require mutual TLS (ATNA does).
    cert_file: str = ""
    key_file: str = ""
    #: RFC 5424 APP-NAME and the messages' AuditSourceID.
    app_name: str = "noctis-pacs"
    #: Records kept per process while the collector is unreachable; the oldest are
    #: dropped (and counted) above it.
    max_queued: int = 10000


@dataclass(frozen=True)
class AuditSettings:
    #: Keep an audit trail of every access to patient data and every security event.
    enabled: bool = True
    #: Days an audit record is kept; 0 = for ever.
    retention_days: int = 0
    #: Seconds between appends of queued audit records (one transaction each).
    flush_interval: float = 0.5
    syslog: AuditSyslogSettings = field(default_factory=AuditSyslogSettings)


@dataclass(frozen=True)
class AccessSettings:
    #: The attribute whose value is a study's facility at ingest (empty value: ``default``).
    facility_attribute: str = "InstitutionName"
    #: ``attribute``: from ``facility_attribute``; ``principal``: the storing principal's
    #: single facility (the attribute when it has none or several).
    facility_from: str = "attribute"


@dataclass(frozen=True)
class UiSettings:
    """The web application at ``/ui/`` (``dicomweb/ui.py``)."""

    enabled: bool = True
    #: An OHIF viewer's base URL; when set, studies get "Open in OHIF"
    #: (``{ohif_url}/viewer?StudyInstanceUIDs=...``). Empty = no such link.
    ohif_url: str = ""
    #: Offer "Open in Weasis" (a ``weasis://`` launch URL pointing at this archive).
    weasis: bool = True


@dataclass(frozen=True)
class JobSettings:
    """Send jobs (``POST /api/jobs/send``, ``noctis-pacs send``) and their runner."""

    #: Run queued jobs in this ``serve`` process (several processes share the queue).
    enabled: bool = True
    #: How often the runner looks for due jobs when nothing woke it.
    poll_interval_seconds: float = 1.0
    #: First retry delay of a failed attempt; doubled per attempt up to the maximum.
    retry_initial_seconds: float = 5.0
    retry_max_seconds: float = 300.0
    #: Seconds a claimed job stays this process's before another may take it over
    #: (renewed while it runs; a crashed process's jobs resume after it).
    lease_seconds: float = 120.0
    #: Instances per STOW-RS request to a DICOMweb peer.
    stow_batch: int = 50
    #: Seconds to wait for a peer (connect, association, each response).
    timeout_seconds: float = 30.0


@dataclass(frozen=True)
class RoutingSettings:
    """Routing rules' durable queue and its consumer (docs/admin.md)."""

    #: Consume the routing inbox and deliver the queue in this ``serve`` process.
    enabled: bool = True
    #: How often the router looks for new work when the last round found none.
    poll_interval_seconds: float = 0.5
    #: First retry delay of a failed delivery; doubled per attempt up to the maximum.
    retry_initial_seconds: float = 5.0
    retry_max_seconds: float = 600.0
    #: Seconds a leased group of queue items stays this process's.
    lease_seconds: float = 120.0
    #: Inbox rows turned into queue items per transaction; queue items per delivery.
    batch: int = 500


@dataclass(frozen=True)
class RetentionSettings:
    """Retention policies applied in the background (docs/admin.md)."""

    #: Apply the policies in this ``serve`` process every ``interval_seconds``.
    enabled: bool = True
    interval_seconds: float = 3600.0


@dataclass(frozen=True)
class ModifySettings:
    """Modify attributes and de-identify (``/api/.../modify``, ``/api/jobs/deidentify``)."""

    #: Keep the original study / series / instances next to the modified copy (new UIDs);
    #: false removes them once every modified instance is stored. A request may say.
    keep_original: bool = False


@dataclass(frozen=True)
class Settings:
    storage: StorageSettings = field(default_factory=StorageSettings)
    query: QuerySettings = field(default_factory=QuerySettings)
    dimse: DimseSettings = field(default_factory=DimseSettings)
    http: HttpSettings = field(default_factory=HttpSettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)
    rendering: RenderingSettings = field(default_factory=RenderingSettings)
    workflow: WorkflowSettings = field(default_factory=WorkflowSettings)
    audit: AuditSettings = field(default_factory=AuditSettings)
    access: AccessSettings = field(default_factory=AccessSettings)
    ui: UiSettings = field(default_factory=UiSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    jobs: JobSettings = field(default_factory=JobSettings)
    routing: RoutingSettings = field(default_factory=RoutingSettings)
    retention: RetentionSettings = field(default_factory=RetentionSettings)
    modify: ModifySettings = field(default_factory=ModifySettings)

    @property
    def db_url(self) -> str:
        if self.storage.db:
            return self.storage.db
        return f"sqlite:///{Path(self.storage.data_dir) / 'index.sqlite3'}"


SECTIONS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Settings))
_CHOICES: Mapping[tuple[str, str], tuple[str, ...]] = {
    ("storage", "fsync"): ("always", "never"),
    ("storage", "duplicates"): ("overwrite", "keep_first"),
    ("dimse", "access_control"): ("open", "allow_list"),
    ("auth", "mode"): ("none", "token", "oidc"),
    ("logging", "format"): ("json", "text"),
    ("access", "facility_from"): ("attribute", "principal"),
    ("logging", "level"): ("DEBUG", "INFO", "WARNING", "ERROR"),
}


#: ``dimse.workers = "auto"`` never starts more processes than this.
AUTO_WORKERS_MAX = 8


def auto_workers() -> int:
    """``dimse.workers = "auto"``: one DIMSE process per CPU this process may run on
    (its affinity, as a container's cpuset sets it), at most ``AUTO_WORKERS_MAX``.
    One process is bound by one interpreter lock: several modalities sending at once
    use the other cores only through more processes (docs/performance.md)."""
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count() or 1
    return max(1, min(usable, AUTO_WORKERS_MAX))


def _convert(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if hint is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off", ""):
            return False
        raise SettingsError(f"{where}: expected true or false, got {value!r}")
    if hint is int or hint is float:
        try:
            return hint(value)
        except (TypeError, ValueError):
            raise SettingsError(f"{where}: expected a number, got {value!r}") from None
    if hint is str:
        if not isinstance(value, str | int | float):
            raise SettingsError(f"{where}: expected text, got {value!r}")
        return str(value)
    if origin is tuple:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list | tuple):
            raise SettingsError(f"{where}: expected a list, got {value!r}")
        return tuple(str(v) for v in value)
    return value


def _remotes(raw: Any) -> dict[str, RemoteAE]:
    if not isinstance(raw, Mapping):
        raise SettingsError("dimse.remotes: expected a table of [dimse.remotes.NAME]")
    out: dict[str, RemoteAE] = {}
    for name, spec in raw.items():
        where = f"dimse.remotes.{name}"
        if not isinstance(spec, Mapping):
            raise SettingsError(f"{where}: expected ae_title, host, port")
        missing = [k for k in ("ae_title", "host", "port") if k not in spec]
        if missing:
            raise SettingsError(f"{where}: missing {', '.join(missing)}")
        perms = _convert(
            spec.get("permissions", ["store", "query", "retrieve"]), tuple[str, ...], where
        )
        bad = set(perms) - {"store", "query", "retrieve"}
        if bad:
            raise SettingsError(f"{where}.permissions: unknown {sorted(bad)}")
        out[str(name)] = RemoteAE(
            ae_title=str(spec["ae_title"]),
            host=str(spec["host"]),
            port=_convert(spec["port"], int, f"{where}.port"),
            permissions=perms,
            check_host=_convert(spec.get("check_host", False), bool, where),
            facilities=_convert(spec.get("facilities", []), tuple[str, ...], f"{where}.facilities"),
        )
    return out


def _nested(cls: type[Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """Fold ``limits_burst``-style keys (from ``NOCTIS_HTTP_LIMITS_BURST``) into their
    sub-table (``[http.limits]``)."""
    hints = typing.get_type_hints(cls)
    tables = [k for k, h in hints.items() if dataclasses.is_dataclass(h)]
    out: dict[str, Any] = {}
    for key, value in values.items():
        table = next((t for t in tables if key.startswith(t + "_")), None)
        if table is None or key in hints:
            if key in tables and isinstance(value, Mapping):
                out.setdefault(key, {}).update(value)
            else:
                out[key] = value
            continue
        out.setdefault(table, {})[key[len(table) + 1 :]] = value
    return out


def _section(cls: type[Any], name: str, values: Mapping[str, Any]) -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    values = _nested(cls, values)
    unknown = set(values) - known
    if unknown:
        raise SettingsError(f"[{name}]: unknown setting(s) {', '.join(sorted(unknown))}")
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        where = f"{name}.{key}"
        if name == "dimse" and key == "remotes":
            kwargs[key] = _remotes(value)
            continue
        if dataclasses.is_dataclass(hints[key]):
            if not isinstance(value, Mapping):
                raise SettingsError(f"{where}: expected a table [{where}]")
            kwargs[key] = _section(hints[key], where, value)
            continue
        if (name, key) == ("dimse", "workers") and isinstance(value, str):
            text = value.strip().lower()
            if text != "auto" and not text.isdigit():
                raise SettingsError(
                    f'{where}: expected a number of processes or "auto", got {value!r}'
                )
            kwargs[key] = auto_workers() if text == "auto" else int(text)
            continue
        converted = _convert(value, hints[key], where)
        choices = _CHOICES.get((name, key))
        if choices is not None:
            if key == "level":
                converted = str(converted).upper()
            if converted not in choices:
                raise SettingsError(f"{where}: {converted!r} is not one of {', '.join(choices)}")
        kwargs[key] = converted
    return cls(**kwargs)


def _env_values(environ: Mapping[str, str]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for section in SECTIONS:
        prefix = f"NOCTIS_{section.upper()}_"
        for var, value in environ.items():
            if var.startswith(prefix):
                out.setdefault(section, {})[var[len(prefix) :].lower()] = value
    return out


def load_settings(
    config_file: str | os.PathLike[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> Settings:
    """Merge defaults, the TOML file, the environment and flag overrides.

    ``overrides`` is ``{section: {key: value}}`` with ``None`` values ignored.
    """
    environ = os.environ if environ is None else environ
    merged: dict[str, dict[str, Any]] = {s: {} for s in SECTIONS}
    path = config_file or environ.get("NOCTIS_CONFIG")
    if path:
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            raise SettingsError(f"config file {path} not found") from None
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"config file {path}: {exc}") from None
        unknown = set(data) - set(SECTIONS)
        if unknown:
            raise SettingsError(f"{path}: unknown section(s) {', '.join(sorted(unknown))}")
        for section, values in data.items():
            merged[section].update(values)
    for section, values in _env_values(environ).items():
        merged[section].update(values)
    for section, values in (overrides or {}).items():
        merged[section].update({k: v for k, v in values.items() if v is not None})
    sections = {
        f.name: _section(typing.get_type_hints(Settings)[f.name], f.name, merged[f.name])
        for f in dataclasses.fields(Settings)
    }
    settings = Settings(**sections)
    _validate(settings)
    return settings


def _validate(settings: Settings) -> None:
    for where, port in (("http.port", settings.http.port), ("dimse.port", settings.dimse.port)):
        if not 0 <= port <= 65535:
            raise SettingsError(f"{where}: {port} is not a TCP port")
    title = settings.dimse.ae_title
    if not 0 < len(title) <= 16 or "\\" in title:
        raise SettingsError("dimse.ae_title: 1 to 16 characters, no backslash (PS3.5 AE VR)")
    url = settings.db_url
    if not (url.startswith("sqlite:///") or url.startswith(("postgresql://", "postgres://"))):
        raise SettingsError(f"storage.db: {url!r} is neither sqlite:///PATH nor postgresql://...")
    for where, count in (
        ("http.workers", settings.http.workers),
        ("dimse.workers", settings.dimse.workers),
    ):
        if not 1 <= count <= 64:
            raise SettingsError(f"{where}: {count} is not between 1 and 64")
    if settings.query.max_results < 1:
        raise SettingsError("query.max_results: must be at least 1")
    if settings.dimse.pending_interval < 0:
        raise SettingsError("dimse.pending_interval: must be 0 (every sub-operation) or more")
    tls = settings.dimse
    if bool(tls.tls_certificate) != bool(tls.tls_key):
        raise SettingsError("dimse.tls_certificate and dimse.tls_key go together")
    for url in settings.workflow.webhooks:
        if not url.startswith(("http://", "https://")):
            raise SettingsError(f"workflow.webhooks: {url!r} is not an http:// or https:// URL")
    attribute = settings.access.facility_attribute
    if attribute:
        from pydicom.datadict import tag_for_keyword

        if tag_for_keyword(attribute) is None:
            raise SettingsError(
                f"access.facility_attribute: {attribute!r} is not a DICOM keyword"
                " (e.g. InstitutionName)"
            )
    if settings.audit.retention_days < 0:
        raise SettingsError("audit.retention_days: 0 (keep for ever) or more")
    if settings.audit.flush_interval <= 0:
        raise SettingsError("audit.flush_interval: must be positive")
    syslog = settings.audit.syslog
    if syslog.host:
        if not 0 < syslog.port < 65536:
            raise SettingsError("audit.syslog.port: 1 to 65535")
        if bool(syslog.cert_file) != bool(syslog.key_file):
            raise SettingsError("audit.syslog.cert_file and audit.syslog.key_file go together")
        if (syslog.ca_file or syslog.cert_file) and not syslog.tls:
            raise SettingsError("audit.syslog.ca_file and cert_file need audit.syslog.tls = true")
        if syslog.max_queued < 1:
            raise SettingsError("audit.syslog.max_queued: 1 or more")
        if not 0 < len(syslog.app_name) <= 48 or not all(
            33 <= ord(c) <= 126 for c in syslog.app_name
        ):
            raise SettingsError(
                "audit.syslog.app_name: 1 to 48 printable ASCII characters, no space"
                " (RFC 5424 APP-NAME)"
            )
    if settings.workflow.poll_interval_seconds <= 0:
        raise SettingsError("workflow.poll_interval_seconds: must be positive")
    jobs = settings.jobs
    for where, value in (
        ("jobs.poll_interval_seconds", jobs.poll_interval_seconds),
        ("jobs.retry_initial_seconds", jobs.retry_initial_seconds),
        ("jobs.lease_seconds", jobs.lease_seconds),
        ("jobs.timeout_seconds", jobs.timeout_seconds),
    ):
        if value <= 0:
            raise SettingsError(f"{where}: must be positive")
    if jobs.retry_max_seconds < jobs.retry_initial_seconds:
        raise SettingsError("jobs.retry_max_seconds: must be at least jobs.retry_initial_seconds")
    routing = settings.routing
    for where, value in (
        ("routing.poll_interval_seconds", routing.poll_interval_seconds),
        ("routing.retry_initial_seconds", routing.retry_initial_seconds),
        ("routing.lease_seconds", routing.lease_seconds),
    ):
        if value <= 0:
            raise SettingsError(f"{where}: must be positive")
    if routing.retry_max_seconds < routing.retry_initial_seconds:
        raise SettingsError(
            "routing.retry_max_seconds: must be at least routing.retry_initial_seconds"
        )
    if settings.retention.interval_seconds <= 0:
        raise SettingsError("retention.interval_seconds: must be positive")
    if not 1 <= routing.batch <= 10000:
        raise SettingsError("routing.batch: must be between 1 and 10000")
    if not 1 <= jobs.stow_batch <= 1000:
        raise SettingsError("jobs.stow_batch: must be between 1 and 1000")
    _validate_security(settings)


def _validate_security(settings: Settings) -> None:
    import ipaddress

    http = settings.http
    if bool(http.tls_cert) != bool(http.tls_key):
        raise SettingsError("http.tls_cert and http.tls_key go together")
    if http.tls_client_ca and not http.tls_cert:
        raise SettingsError("http.tls_client_ca needs http.tls_cert and http.tls_key")
    if http.tls_require_client_certificate and not http.tls_client_ca:
        raise SettingsError("http.tls_require_client_certificate needs http.tls_client_ca")
    for where, networks in (
        ("http.allow", http.allow),
        ("http.deny", http.deny),
        ("dimse.allow", settings.dimse.allow),
        ("dimse.deny", settings.dimse.deny),
    ):
        for network in networks:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise SettingsError(f"{where}: {network!r} is not an address or CIDR") from None
    limits = http.limits
    if limits.requests_per_minute < 0 or limits.burst < 0 or limits.auth_failures < 0:
        raise SettingsError("http.limits: requests_per_minute, burst, auth_failures >= 0")
    if limits.requests_per_minute and limits.burst < 1:
        raise SettingsError("http.limits.burst: at least 1 when requests_per_minute is set")
    auth = settings.auth
    if auth.token_cache_seconds < 0 or auth.token_cache_seconds > 300:
        raise SettingsError("auth.token_cache_seconds: between 0 and 300")
    oidc = auth.oidc
    if auth.mode == "oidc":
        if not oidc.issuer or not oidc.audience:
            raise SettingsError('auth.mode = "oidc" needs auth.oidc.issuer and auth.oidc.audience')
        if bool(oidc.jwks_url) == bool(oidc.jwks_file):
            raise SettingsError("auth.oidc: set exactly one of jwks_url and jwks_file")
    if bool(oidc.authorization_url) != bool(oidc.token_url):
        raise SettingsError("auth.oidc: set both authorization_url and token_url (or neither)")
    for key in ("authorization_url", "token_url"):
        url = getattr(oidc, key)
        if url and not url.startswith(("https://", "http://")):
            raise SettingsError(f"auth.oidc.{key}: an http(s) URL")
    bad = set(oidc.algorithms) - {"RS256", "ES256"}
    if bad or not oidc.algorithms:
        raise SettingsError(f"auth.oidc.algorithms: RS256 and/or ES256 (not {sorted(bad)})")
