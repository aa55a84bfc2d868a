"""Log lines in both formats: a movement's fields, one JSON object per line whatever the message holds."""

from __future__ import annotations

import json
import logging

from streams.worker.ops.logs import JsonFormatter, TextFormatter, input_fields, movement_fields


def record(msg: str, extra: dict[str, object], exc: BaseException | None = None) -> logging.LogRecord:
    made = logging.getLogger("stocksync.test").makeRecord(
        "stocksync.test", logging.WARNING, __file__, 1, msg, ("x",), (type(exc), exc, None) if exc else None,
        extra=extra)
    return made


def test_a_json_line_holds_the_movement_fields_and_the_traceback_in_one_line() -> None:
    fields = {**input_fields("t.sales", 3, 42, b"SKU-1"), **movement_fields(None, "web", "e\n1")}
    try:
        raise ValueError("bad\nthing")
    except ValueError as exc:
        line = JsonFormatter().format(record("dead-lettered: %s", fields, exc))
    assert "\n" not in line
    parsed = json.loads(line)
    assert (parsed["sku"], parsed["channel"], parsed["event_id"], parsed["offset"]) == ("SKU-1", "web", "e\n1", 42)
    assert parsed["message"] == "dead-lettered: x" and parsed["level"] == "warning"
    assert "ValueError: bad" in parsed["exception"]


def test_a_text_line_ends_with_the_fields_it_has() -> None:
    line = TextFormatter().format(record("applied %s", movement_fields("SKU-2", "pos-1", None)))
    assert line.endswith("applied x sku=SKU-2 channel=pos-1")
    assert TextFormatter().format(record("plain %s", {})).endswith("plain x")
