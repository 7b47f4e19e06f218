"""Log records carry the request id; production logs are JSON lines; no log
line carries a secret or personal data.

Redaction happens at the logging layer, whatever logged the line (our code,
SQLAlchemy's echo, a library, a traceback): ``Redacting``, a filter that
``configure_logging`` puts on every handler, masks the message and the
exception text of each record before any formatter sees it, and both house
formatters mask their final text again (a handler the filter missed, an
exception formatted by the formatter). ``REDACTIONS`` says what is masked."""
from __future__ import annotations

import functools
import json
import logging
import re
import sys
from collections.abc import Callable, Mapping
from typing import Any

from guestguard.audit.request_id import current_request_id

TEXT_FORMAT = "%(asctime)s %(levelname)-5s [%(name)s][%(request_id)s%(trace)s] %(message)s"
_RECORD_FIELDS = ("name", "levelname", "request_id")
NO_TRACE = ("", "")


def _no_trace() -> tuple[str, str]:
    return NO_TRACE


# What tells the (trace id, span id) of the span current where a line is
# logged; tracing replaces it when it starts (set_trace_ids), so a process
# that does not trace imports nothing of OpenTelemetry for its log lines.
_trace_ids: dict[str, Callable[[], tuple[str, str]]] = {"source": _no_trace}


def set_trace_ids(source: Callable[[], tuple[str, str]] | None) -> None:
    """Take each log record's trace and span id from ``source`` (None: none)."""
    _trace_ids["source"] = source or _no_trace


@functools.cache
def _install_record_factory() -> None:
    """Every log record, from any library, gets ``request_id``, ``trace_id``
    and ``span_id`` (empty when no traced span is current) and ``trace``,
    their text form for TEXT_FORMAT (once per process)."""
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        record.request_id = current_request_id.get()
        record.trace_id, record.span_id = _trace_ids["source"]()
        record.trace = f" trace={record.trace_id} span={record.span_id}" if record.trace_id else ""
        return record

    logging.setLogRecordFactory(factory)


_install_record_factory()


# --- redaction ------------------------------------------------------------------

_URLSAFE = "A-Za-z0-9_-"
# (what, pattern, replacement), applied in this order to the text of a line.
REDACTIONS: tuple[tuple[str, re.Pattern[str], str], ...] = tuple(
    (what, re.compile(pattern, flags), replacement) for what, pattern, flags, replacement in (
        # SQL parameters in a database error, whatever the values (a guest's
        # message, a password hash, an email): to the end of the line.
        ("SQL parameters", r"\[(?:SQL )?parameters\b[^\n]*", 0, "[parameters: redacted]"),
        # SQLAlchemy's echo: the parameters logged after each statement, and
        # the rows logged at DEBUG.
        ("echoed parameters", (r"(\[(?:generated in|cached since|raw sql|dialect|no key|insertmanyvalues)"
                               r"[^\]\n]*\]) [(\[{][^\n]*"), 0, r"\1 [parameters redacted]"),
        ("echoed rows", r"\bRow [(\[][^\n]*", 0, "Row [redacted]"),
        # PostgreSQL's details of a constraint: the values that broke it.
        ("constraint details", r"(Key \([^)\n]*\)=)\([^\n]*?\)( already exists| is not present)", 0,
         r"\1(redacted)\2"),
        ("failing rows", r"(Failing row contains )\([^\n]*\)", 0, r"\1(redacted)"),
        ("argon2 hashes", r"\$argon2(?:id|i|d)\$[A-Za-z0-9+/=$,.-]*", 0, "[argon2 hash]"),
        ("credentials after an auth scheme", r"\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+", re.IGNORECASE,
         r"\1 [redacted]"),
        ("JWTs", rf"\beyJ[{_URLSAFE}]*\.[{_URLSAFE}]*(?:\.[{_URLSAFE}]*)?", 0, "[jwt]"),
        ("API keys", rf"\bggk_[{_URLSAFE}]*", 0, "ggk_[redacted]"),
        # password=..., "token": "..." (not a bound parameter's placeholder).
        ("secret values", (r"\b((?:password|passwd|secret|token|ticket|api_?key)\w*)(\s*=\s*|['\"]\s*:\s*)"
                           r"(?!\?|%\(|:\w)('[^'\n]*'|\"[^\"\n]*\"|[^\s,;&)}\]]+)"), re.IGNORECASE,
         r"\1\2[redacted]"),
        ("email addresses", r"[\w.!#$%&*+?^`{|}~-]+@[\w-]+(?:\.[\w-]+)+", 0, "[email]"),
        ("tokens in links", rf"(/(?:access|rsvp|verify-email|reset-password|invitations|unsubscribe)/)[{_URLSAFE}]+", 0,
         r"\1[token]"),
        # Our tokens are 43 URL-safe characters (40 to 64 accepted); hashes of
        # them 64 hex digits. Ids (UUIDs) are shorter and stay.
        ("tokens", rf"(?<![{_URLSAFE}])(?=[{_URLSAFE}]*[A-Z])[{_URLSAFE}]{{40,}}(?![{_URLSAFE}])", 0, "[token]"),
        ("hashes", rf"(?<![{_URLSAFE}])[0-9a-f]{{40,}}(?![{_URLSAFE}])", 0, "[hash]"),
    ))


def redact(text: str) -> str:
    """``text`` with every secret and piece of personal data ``REDACTIONS``
    knows masked."""
    for _, pattern, replacement in REDACTIONS:
        text = pattern.sub(replacement, text)
    return text


_TRACEBACKS = logging.Formatter()


class Redacting(logging.Filter):
    """Masks a record's message, exception text and stack before any
    formatter sees them. The record itself is changed, so every handler
    after this one sees the masked text too."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = redact(record.getMessage()), ()
        if record.exc_info and not record.exc_text:
            record.exc_text = _TRACEBACKS.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


REDACTING = Redacting()


class TextFormatter(logging.Formatter):
    """The readable development format, its final text masked; naming it in
    an ini file's formatter section also installs the request-id field early."""

    def __init__(self, fmt: str | None = None, datefmt: str | None = None, style: str = "%",
                 *args: Any, **kwargs: Any):
        super().__init__(fmt or TEXT_FORMAT, datefmt, style, *args, **kwargs)

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class JSONFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, request id, trace and
    span id (empty when not traced), message, exception; the message and the
    exception masked as written."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "request_id": getattr(record, "request_id", "-"),
            "trace_id": getattr(record, "trace_id", ""),
            "span_id": getattr(record, "span_id", ""),
            "message": redact(record.getMessage()),
        }
        if record.exc_info or record.exc_text:
            entry["exception"] = redact(record.exc_text or self.formatException(record.exc_info))
        if record.stack_info:
            entry["stack"] = redact(record.stack_info)
        return json.dumps(entry, ensure_ascii=False)


def all_handlers() -> list[logging.Handler]:
    """The handlers of the root logger and of every other logger."""
    loggers = [logging.getLogger(), *(logger for logger in logging.Logger.manager.loggerDict.values()
                                      if isinstance(logger, logging.Logger))]
    return [handler for logger in loggers for handler in logger.handlers]


def configure_logging(settings: Mapping[str, Any]) -> None:
    """Install the request-id field and, when the ini file configured no
    handlers, a console handler in the configured format; put the
    redacting filter on every handler."""
    root = logging.getLogger()
    fmt = settings["log.format"]
    if fmt == "auto":
        fmt = "json" if settings["app.env"] == "production" else "text"
    formatter: logging.Formatter = JSONFormatter() if fmt == "json" else TextFormatter()
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        root.addHandler(handler)
        root.setLevel(logging.WARNING)
        logging.getLogger("guestguard").setLevel(settings["log.level"])
    for handler in root.handlers:
        if handler.formatter is None or fmt == "json":
            handler.setFormatter(formatter)
    for handler in all_handlers():
        handler.addFilter(REDACTING)
