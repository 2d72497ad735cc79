"""One logging setup for `runwire serve` and `worker`: text or JSON lines carrying the ids in play.

The ids travel in context variables: the runner sets `execution_id` in each execution's task
and `step` in each step's, the HTTP layer sets `request_id` per request or socket. Tasks copy
the context they are created in, so every line logged beneath (ours, uvicorn's, Piccolo's,
Strawberry's) carries them without being passed anything.
"""

from __future__ import annotations

import json
import logging
import logging.config
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TextIO

from runwire.settings import Settings

execution_id: ContextVar[str | None] = ContextVar("runwire_execution_id", default=None)
step: ContextVar[str | None] = ContextVar("runwire_step", default=None)
request_id: ContextVar[str | None] = ContextVar("runwire_request_id", default=None)

# The record attribute each id is put in, and its short name in text lines.
_IDS = (
    ("execution_id", "execution", execution_id),
    ("step", "step", step),
    ("request_id", "request", request_id),
)

# Libraries' chatter, shown only when DEBUG is asked for: Piccolo's "Running Sqlite version
# 3.x" for every engine it makes, and `websockets`' per-socket lines (uvicorn hands it its own
# logger: see _DropSocketChatter).
_CHATTY_LIBRARIES = ("websockets", "piccolo")
# What `websockets` logs for every socket, at INFO, on the logger uvicorn gives it.
_SOCKET_CHATTER = frozenset({"connection open", "connection closed"})


class _WithIds(logging.Filter):
    """Copies the context's ids onto each record (unless the call passed its own in `extra`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for attribute, _, variable in _IDS:
            if getattr(record, attribute, None) is None:
                setattr(record, attribute, variable.get())
        return True


class _DropSocketAccessLines(logging.Filter):
    """uvicorn logs each accepted or refused socket on its error logger, not its access log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith('%s - "WebSocket %s"')


class _DropSocketChatter(logging.Filter):
    """Drops "connection open" and "connection closed", logged for every WebSocket."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.msg not in _SOCKET_CHATTER


class TextFormatter(logging.Formatter):
    """`time LEVEL logger [execution=… step=… request=…] message`, then any traceback."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(ids)s%(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        ids = " ".join(
            f"{short}={value}"
            for attribute, short, _ in _IDS
            if (value := getattr(record, attribute, None)) is not None
        )
        record.ids = f"[{ids}] " if ids else ""
        return super().formatMessage(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the ids known, any traceback."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for attribute, _, _ in _IDS:
            if (value := getattr(record, attribute, None)) is not None:
                entry[attribute] = value
        if record.exc_info:
            # The traceback inside the object (escaped newlines): still one line per record.
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str)


def handler(log_format: str, stream: TextIO | None = None) -> logging.Handler:
    """Writes records to `stream` (stderr) in `log_format` (text or json), with their ids."""
    found = logging.StreamHandler(sys.stderr if stream is None else stream)
    found.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    found.addFilter(_WithIds())
    return found


def config(settings: Settings) -> dict[str, Any]:
    """The `logging.config.dictConfig` of a server process; uvicorn applies it (`log_config`).

    Every logger reaches one handler on stderr through the root, so uvicorn's, Litestar's,
    Piccolo's and Strawberry's lines look like ours.
    """
    quiet = "DEBUG" if settings.log_level == "DEBUG" else "WARNING"
    socket_filters = [] if settings.access_log else ["drop_socket_access_lines"]
    if settings.log_level != "DEBUG":
        socket_filters.append("drop_socket_chatter")
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {
            "drop_socket_access_lines": {"()": _DropSocketAccessLines},
            "drop_socket_chatter": {"()": _DropSocketChatter},
        },
        "handlers": {"stderr": {"()": handler, "log_format": settings.log_format}},
        "root": {"level": settings.log_level, "handlers": ["stderr"]},
        "loggers": {
            # uvicorn's own config would give these handlers of their own: through the root.
            "uvicorn": {"handlers": [], "propagate": True},
            "uvicorn.error": {"filters": socket_filters, "propagate": True},
            "uvicorn.access": {"handlers": [], "propagate": True},
            **{name: {"level": quiet, "propagate": True} for name in _CHATTY_LIBRARIES},
        },
    }


def configure(settings: Settings) -> None:
    """Apply `config(settings)` now, so lines logged before uvicorn starts look the same."""
    logging.config.dictConfig(config(settings))
