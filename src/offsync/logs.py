"""offsync's logs: events on the standard ``logging`` module, as text or JSON lines.

Everything offsync logs goes to the logger ``offsync`` or a child of it
(``offsync.server``: what the HTTP server did; ``offsync.client``: what a server
answered a client; ``offsync.cli``: what a command did). An integrator's own logging
configuration receives them like any library's; ``offsync serve`` and the ``offsync``
command install one handler with ``install`` (or give uvicorn ``dict_config``).

Each record offsync makes is an *event*: a dotted name (``upload.applied``) and a few
fields, sent with ``event(logger, level, name, **fields)``. The record's message is the
event and its fields in logfmt (``upload.applied site=3ab0992f14c2 applied=12``), so a
plain ``%(message)s`` format shows everything; ``JSONFormatter`` writes one JSON object
per line with the fields as members.

What an event may carry is decided where it is sent: site keys (shortened), labels,
bundle ids, counts, sizes, durations, error classes and reasons. Never a record's key
(a NIK) nor a field's value: those are personal data, and logs are kept, copied and
read far more widely than the registry (docs/operations.md, "Logs").
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import logging.handlers
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any, TextIO

from .errors import UsageError

__all__ = [
    "FORMATS",
    "LEVELS",
    "LOGGERS",
    "JSONFormatter",
    "TextFormatter",
    "dict_config",
    "event",
    "install",
    "short_key",
]

#: The two output forms.
FORMATS = ("text", "json")
#: The levels a command line may ask for, lowest first.
LEVELS = ("debug", "info", "warning", "error")
#: The loggers a configuration here looks after: offsync's, and uvicorn's (its errors and
#: start-up lines, and the access log when it is on).
LOGGERS = ("offsync", "uvicorn")
_EVENT = "offsync_event"
# A library's loggers stay silent until the application configures logging (Python's
# advice): without this, Python's last-resort handler would print warnings to stderr.
logging.getLogger("offsync").addHandler(logging.NullHandler())
_FIELDS = "offsync_fields"


def short_key(key: bytes) -> str:
    """A site key as logs and screens show it: its first 6 bytes in hex."""
    return key[:6].hex()


def _logfmt_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "-"
    text = str(value)
    if text == "" or any(c in text for c in ' "=\\') or not text.isprintable():
        return json.dumps(text, ensure_ascii=False)
    return text


def logfmt(name: str, fields: Mapping[str, object]) -> str:
    """``name key=value ...``, values quoted when they hold spaces, quotes or ``=``."""
    parts = [name, *(f"{k}={_logfmt_value(v)}" for k, v in fields.items() if v is not None)]
    return " ".join(parts)


def event(logger: logging.Logger, level: int, name: str, **fields: object) -> None:
    """Log the event ``name`` with ``fields`` (None-valued fields are left out)."""
    if not logger.isEnabledFor(level):
        return
    kept = {k: v for k, v in fields.items() if v is not None}
    logger.log(level, "%s", logfmt(name, kept), extra={_EVENT: name, _FIELDS: kept}, stacklevel=2)


def _time(record: logging.LogRecord) -> str:
    """ISO 8601 UTC with milliseconds: ``2026-12-01T20:51:31.042Z``."""
    when = _dt.datetime.fromtimestamp(record.created, _dt.UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(record.msecs):03d}Z"


#: uvicorn's access log record: its arguments, named.
_ACCESS_FIELDS = ("client", "method", "path", "http_version", "status")


def _fields(record: logging.LogRecord) -> tuple[str | None, dict[str, Any]]:
    """The event name and fields of a record (uvicorn's access lines get theirs too)."""
    name = getattr(record, _EVENT, None)
    if name is not None:
        return name, dict(getattr(record, _FIELDS, {}))
    args = record.args
    if record.name == "uvicorn.access" and isinstance(args, tuple) and len(args) == 5:
        return "http.access", dict(zip(_ACCESS_FIELDS, args, strict=True))
    return None, {}


class TextFormatter(logging.Formatter):
    """``TIME LEVEL LOGGER MESSAGE``: one line per record (a traceback follows it)."""

    def format(self, record: logging.LogRecord) -> str:
        name, fields = _fields(record)
        message = logfmt(name, fields) if name and record.name == "uvicorn.access" else None
        line = f"{_time(record)} {record.levelname} {record.name} {message or record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JSONFormatter(logging.Formatter):
    """One JSON object per line: ``time``, ``level``, ``logger``, ``pid``, ``event``
    and its fields for offsync's events (``message`` for anyone else's), ``exc`` with
    the traceback when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        name, fields = _fields(record)
        doc: dict[str, Any] = {
            "time": _time(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,
        }
        if name is not None:
            doc["event"] = name
            for key, value in fields.items():
                doc.setdefault(key, value)
        else:
            doc["message"] = record.getMessage()
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False, default=str)


class StderrHandler(logging.StreamHandler[TextIO]):
    """A handler writing to whatever ``sys.stderr`` is when a record comes (a test
    runner swaps it), like ``logging.lastResort``."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass


def _formatter(form: str) -> logging.Formatter:
    if form not in FORMATS:
        raise UsageError(f"log format {form!r}: choose one of {', '.join(FORMATS)}")
    return JSONFormatter() if form == "json" else TextFormatter()


def _level(level: str) -> int:
    if level.lower() not in LEVELS:
        raise UsageError(f"log level {level!r}: choose one of {', '.join(LEVELS)}")
    return logging.getLevelName(level.upper())  # type: ignore[no-any-return]


def install(
    form: str = "text",
    level: str = "warning",
    *,
    file: str | os.PathLike[str] | None = None,
    loggers: tuple[str, ...] = ("offsync",),
) -> Callable[[], None]:
    """Send the ``loggers``' records at ``level`` and above, in ``form``, to stderr or
    (appending) to ``file``; returns a function that puts everything back as it was.

    The loggers stop propagating to the root logger, so nothing is written twice.
    ``file`` is reopened if it is moved away (logrotate), through ``WatchedFileHandler``.
    """
    handler: logging.Handler = (
        logging.handlers.WatchedFileHandler(os.fspath(file), encoding="utf-8")
        if file is not None
        else StderrHandler()
    )
    handler.setFormatter(_formatter(form))
    value = _level(level)
    saved = []
    for name in loggers:
        logger = logging.getLogger(name)
        saved.append((logger, logger.level, logger.propagate))
        logger.addHandler(handler)
        logger.setLevel(value)
        logger.propagate = False

    def undo() -> None:
        for logger, old_level, propagate in saved:
            logger.removeHandler(handler)
            logger.setLevel(old_level)
            logger.propagate = propagate
        handler.close()

    return undo


def dict_config(
    form: str = "text", level: str = "info", *, file: str | os.PathLike[str] | None = None
) -> dict[str, Any]:
    """The same as ``install``, as a ``logging.config.dictConfig`` document for
    ``uvicorn.Config(log_config=...)``: uvicorn applies it in its own process and in
    every worker process it starts, before it logs anything."""
    _formatter(form)
    handler: dict[str, Any] = (
        {
            "class": "logging.handlers.WatchedFileHandler",
            "filename": os.fspath(file),
            "encoding": "utf-8",
        }
        if file is not None
        else {"()": f"{__name__}.StderrHandler"}
    )
    handler["formatter"] = "offsync"
    formatter = JSONFormatter if form == "json" else TextFormatter
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"offsync": {"()": f"{__name__}.{formatter.__name__}"}},
        "handlers": {"offsync": handler},
        "loggers": {
            name: {"handlers": ["offsync"], "level": level.upper(), "propagate": False}
            for name in LOGGERS
        },
    }
