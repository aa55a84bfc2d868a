"""The worker's log filters: repeats once per window with a count, unparseable requests in one line."""

from __future__ import annotations

import logging

from aiohttp.http_exceptions import LineTooLong

from streams.worker.ops.logfilters import BadRequestsInOneLine, RepeatsOncePerWindow


def record(msg: str, level: int = logging.ERROR, exc: BaseException | None = None) -> logging.LogRecord:
    return logging.LogRecord("aiokafka.conn", level, __file__, 1, msg, ("x",), (type(exc), exc, None) if exc else None)


def test_a_repeated_message_passes_once_per_window_then_says_how_many_were_held() -> None:
    now = [0.0]
    repeats = RepeatsOncePerWindow(window_s=10, clock=lambda: now[0])
    passed = []
    for second in range(25):
        now[0] = float(second)
        for _ in range(100):
            line = record("Unable connect to node with id %s")
            if repeats.filter(line):
                passed.append((second, line.getMessage()))
    assert [second for second, _ in passed] == [0, 10, 20]
    assert passed[1][1] == "Unable connect to node with id x (999 more like this in the last 10 s)"
    assert repeats.filter(record("Unable connect to node with id %s", level=logging.INFO))  # info is not limited


def test_an_unparseable_request_is_one_warning_line() -> None:
    line = record("Error handling request from %s", exc=LineTooLong("status line is too long", 8190))
    assert BadRequestsInOneLine().filter(line)
    assert (line.levelname, line.exc_info) == ("WARNING", None)
    assert line.getMessage().startswith("bad HTTP request refused (400): ")
