"""The two shapes of a log line: ``text`` for a person, ``json`` for a log shipper.

Both carry the request fields (``REQUEST_FIELDS``) a record has: the engine passes them
as ``extra`` on its one line per request (``anweddol_actors.requests``), so a shipper can
filter on ``outcome`` or sum ``duration_ms`` without parsing the message.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

__all__ = ["REQUEST_FIELDS", "JsonFormatter", "TextFormatter", "formatter_for"]

# In the order the text format prints them.
REQUEST_FIELDS = (
    "connection",
    "client",
    "verb",
    "container",
    "outcome",
    "duration_ms",
    "transport",
)

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# A session id is 32 hex digits; 8 tell sessions apart in a day's log and keep lines short.
_TEXT_CONNECTION_DIGITS = 8


def _text_value(name: str, value: Any) -> str:
    """``value`` as one shell-like word: a client's verb or parameter may hold spaces,
    ``=`` or a newline, which must not forge another field or another line."""
    if value is None:
        return "-"
    if name == "connection" and isinstance(value, str):
        value = value[:_TEXT_CONNECTION_DIGITS]
    if isinstance(value, float):
        return f"{value:.1f}"
    text = str(value)
    if text and all(c.isprintable() and c not in ' ="\\' for c in text):
        return text
    return json.dumps(text)


class TextFormatter(logging.Formatter):
    """``%(asctime)s %(levelname)s %(name)s: %(message)s`` then ``key=value`` for each
    request field the record carries."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        line = super().formatMessage(record)
        fields = [
            f"{name}={_text_value(name, getattr(record, name))}"
            for name in REQUEST_FIELDS
            if hasattr(record, name)
        ]
        return f"{line} {' '.join(fields)}" if fields else line


class JsonFormatter(logging.Formatter):
    """One JSON object a line: ``time`` (ISO-8601, UTC), ``level``, ``logger``,
    ``message``, the request fields the record carries, and ``exc`` for a traceback."""

    def format(self, record: logging.LogRecord) -> str:
        seconds = int(record.created)
        micros = int((record.created - seconds) * 1_000_000)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
        line: dict[str, Any] = {
            "time": f"{stamp}.{micros:06d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in REQUEST_FIELDS:
            if hasattr(record, name):
                line[name] = getattr(record, name)
        if record.exc_info:
            if not record.exc_text:
                record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exc"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        # default=str: an ``extra`` value of an unexpected type must not lose the line.
        return json.dumps(line, ensure_ascii=False, default=str)


def formatter_for(log_format: str) -> logging.Formatter:
    """The formatter of ``log_format`` (``text`` or ``json``); ValueError otherwise."""
    if log_format == "text":
        return TextFormatter()
    if log_format == "json":
        return JsonFormatter()
    raise ValueError(f"log format {log_format!r} is not text or json")
