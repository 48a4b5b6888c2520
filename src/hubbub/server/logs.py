"""Structured JSON logs on stderr, one object per line, carrying the node id."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import orjson
from aiohttp.http_exceptions import HttpProcessingError

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def __init__(self, node: str) -> None:
        super().__init__()
        self.node = node

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "node": self.node,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD:
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def setup(level: str, node: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(node))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiohttp.access", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # The audit trail (`hubbub.audit`) is not noise: a quieter --log-level keeps it.
    logging.getLogger("hubbub.audit").setLevel(logging.INFO)
    logging.getLogger("aiohttp.server").addFilter(_ParserRefusals())


class _ParserRefusals(logging.Filter):
    """aiohttp logs every request its HTTP parser refuses (bad bytes in the path or the
    headers) at error level with a traceback: any client could fill the error log. Those
    are the client's fault: one info line each, without the traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.exc_info = None
            record.msg, record.args = "request refused by the HTTP parser: %s", (exc,)
            return logging.getLogger().isEnabledFor(logging.INFO)
        return True
