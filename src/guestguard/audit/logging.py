"""Log records carry the request id; production logs are JSON lines."""
from __future__ import annotations

import functools
import json
import logging
import sys
from collections.abc import Mapping
from typing import Any

from guestguard.audit.request_id import current_request_id

TEXT_FORMAT = "%(asctime)s %(levelname)-5s [%(name)s][%(request_id)s] %(message)s"
_RECORD_FIELDS = ("name", "levelname", "request_id")


@functools.cache
def _install_record_factory() -> None:
    """Every log record, from any library, gets ``request_id`` (once per
    process)."""
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        record.request_id = current_request_id.get()
        return record

    logging.setLogRecordFactory(factory)


_install_record_factory()


class TextFormatter(logging.Formatter):
    """The readable development format; naming it in an ini file's
    formatter section also installs the request-id field early."""

    def __init__(self, fmt: str | None = None, datefmt: str | None = None, style: str = "%",
                 *args: Any, **kwargs: Any):
        super().__init__(fmt or TEXT_FORMAT, datefmt, style, *args, **kwargs)


class JSONFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, request id, message."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "request_id": getattr(record, "request_id", "-"),
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(settings: Mapping[str, Any]) -> None:
    """Install the request-id field and, when the ini file configured no
    handlers, a console handler in the configured format."""
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
