"""Structured logging: one line per event, JSON or text, with the request or
association id.  Patient attributes and SQL parameters are never logged;
UIDs only at DEBUG (STYLE.md rule 7)."""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time

#: The id of the association or HTTP request being served, for every log line.
context_id: contextvars.ContextVar[str] = contextvars.ContextVar("noctis_context_id", default="-")


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


def configure_logging(level: str = "INFO", fmt: str = "text") -> None:
    """Set up the root logger once, from the ``[logging]`` settings."""
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
