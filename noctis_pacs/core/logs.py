"""Structured logging: one line per event, JSON or text, with the request or
association id.  Patient attributes and SQL parameters are never logged;
UIDs only at DEBUG (STYLE.md rule 7)."""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import threading
import time
import warnings
from typing import TextIO

#: The id of the association or HTTP request being served, for every log line.
context_id: contextvars.ContextVar[str] = contextvars.ContextVar("noctis_context_id", default="-")


#: Per HTTP request: set by the edge that already logged the request's failure with its
#: reason (STOW-RS logs each refused part), so the request line does not repeat it.
failure_logged: contextvars.ContextVar[list[bool] | None] = contextvars.ContextVar(
    "noctis_failure_logged", default=None
)


def mark_failure_logged() -> None:
    """Say that this request's failure has its line already (see ``failure_logged``)."""
    holder = failure_logged.get()
    if holder is not None:
        holder[0] = True


_UID = re.compile(r"\b\d+(?:\.\d+){3,}\b")


def scrub_uids(text: str) -> str:
    """``text`` with every UID-like token replaced by ``<uid>``: failure reasons are
    logged at INFO and above, where UIDs must not appear (STYLE.md rule 7)."""
    return _UID.sub("<uid>", text)


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.context_id = context_id.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "ctx": getattr(record, "context_id", "-"),
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class _DemoteToDebug(logging.Filter):
    """Libraries' chatter about the data they read (pydicom: "Invalid value for VR DA")
    says nothing an operator can act on: each such record becomes DEBUG, shown only
    when the log level is DEBUG. What failed, and why, our own line says."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger().isEnabledFor(logging.DEBUG)


class _PynetdicomFailures(logging.Filter):
    """pynetdicom logs a refused or unreachable peer as two or three ERROR lines on two
    threads, the reason on one and the association on another. The first two become
    DEBUG; the one naming the failed operation is rewritten as our one line, carrying
    the reason the transport saw last (kept a few seconds)."""

    _DEMOTED = ("Association request failed", "TCP Initialisation Error", "Unable to connect")
    _KEEP_SECONDS = 10.0

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._last: tuple[float, str] = (0.0, "")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message.startswith(self._DEMOTED):
            if "Error:" in message:
                with self._lock:
                    self._last = (time.monotonic(), message.split("Error:", 1)[1].strip())
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger().isEnabledFor(logging.DEBUG)
        if "Unable to associate with destination AE" in message:
            with self._lock:
                at, reason = self._last
            if time.monotonic() - at > self._KEEP_SECONDS:
                reason = "it refused the association or did not answer"
            record.msg = "C-MOVE failed (0xA801): cannot associate with the Move Destination: %s"
            record.args = (reason,)
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.name = "noctis.dimse.retrieve"
        return True


_warnings_log = logging.getLogger("noctis.warnings")


def _warning_at_debug(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """``warnings.showwarning``: one DEBUG line instead of two lines on stderr."""
    _warnings_log.debug("%s: %s", category.__name__, message)


#: Loggers of libraries whose WARNING records are about input data, demoted to DEBUG.
DEMOTED_LOGGERS = ("pydicom",)


def configure_logging(level: str = "INFO", fmt: str = "text") -> None:
    """Set up the root logger once, from the ``[logging]`` settings, and the library
    globals that decide what reaches it: Python warnings (pydicom warns about every
    odd value it reads) become DEBUG lines, pydicom's own WARNING records too."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_ContextFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(context_id)s] %(message)s")
        )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # pynetdicom logs dataset contents at DEBUG; keep it at WARNING unless asked for.
    logging.getLogger("pynetdicom").setLevel("WARNING" if level != "DEBUG" else "INFO")
    pynetdicom_failures = _PynetdicomFailures()
    for name, new_filter in (
        *((name, _DemoteToDebug()) for name in DEMOTED_LOGGERS),
        ("pynetdicom.transport", pynetdicom_failures),
        ("pynetdicom.service_class", pynetdicom_failures),
    ):
        library = logging.getLogger(name)
        for old_filter in [f for f in library.filters if type(f) is type(new_filter)]:
            library.removeFilter(old_filter)
        library.addFilter(new_filter)
    warnings.showwarning = _warning_at_debug
