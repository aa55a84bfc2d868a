"""How the worker's log lines look: plain text for a terminal, or one JSON object per line (STOCKSYNC_LOG_FORMAT=json)
for a log pipeline. A line about a movement carries its SKU, channel and event id as fields (`extra=`), so it can be
searched by them in either format."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

# Fields a log call may add with `extra=` (movement_fields gives the three of a movement).
FIELDS = ("sku", "channel", "event_id", "reason", "topic", "partition", "offset")
TEXT_FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s"


def movement_fields(sku: str | None, channel: str | None, event_id: str | None) -> dict[str, Any]:
    """The `extra=` of a log line about one movement (what is not known is left out)."""
    return {k: v for k, v in (("sku", sku), ("channel", channel), ("event_id", event_id)) if v is not None}


def input_fields(topic: str, partition: int, offset: int, key: bytes | None) -> dict[str, Any]:
    """The `extra=` of a log line about one input message: where it is, and its key (the SKU, by convention)."""
    sku = key.decode(errors="replace")[:100] if key else None
    return {"topic": topic, "partition": partition, "offset": offset, **movement_fields(sku, None, None)}


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {name: getattr(record, name) for name in FIELDS if getattr(record, name, None) is not None}


class TextFormatter(logging.Formatter):
    """faust's usual line, with a movement's fields after the message."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        line = super().formatMessage(record)
        fields = _fields(record)
        return line + "".join(f" {k}={v}" for k, v in fields.items()) if fields else line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, the movement's fields, and the
    traceback as one string."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(), "logger": record.name, "message": record.getMessage(),
            **_fields(record)}
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def use_format(logger: logging.Logger, log_format: str) -> None:
    """Give every handler of `logger` (the root logger, once faust has set it up) the chosen formatter."""
    formatter = JsonFormatter() if log_format == "json" else TextFormatter()
    for handler in logger.handlers:
        handler.setFormatter(formatter)
