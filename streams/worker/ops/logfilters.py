"""Filters that keep the worker's log readable: what is expected gets one line, what repeats gets one line a while."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from aiohttp.http_exceptions import BadHttpMessage

REPEAT_WINDOW_S = 10.0


class BadRequestsInOneLine(logging.Filter):
    """aiohttp logs a request it cannot parse (a request line over 8 KB, a malformed header) as an ERROR with a
    traceback, though it answers the client 400 and nothing is wrong with the worker: one WARNING line."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, BadHttpMessage):
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.msg, record.args, record.exc_info = "bad HTTP request refused (400): %s", (str(exc)[:200],), None
        return True


class RepeatsOncePerWindow(logging.Filter):
    """A message logged again and again (aiokafka logs each failed connection attempt, thousands a minute while a
    broker is down) passes once per window; the next one that passes says how many were held back."""

    def __init__(self, window_s: float = REPEAT_WINDOW_S, clock: Callable[[], float] = time.monotonic,
                 same: Callable[[logging.LogRecord], str] = lambda record: str(record.msg)) -> None:
        super().__init__()
        self.window_s, self.clock, self.same = window_s, clock, same
        self.seen: dict[tuple[str, int, str], tuple[float, int]] = {}  # -> (passed at, held back since)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = (record.name, record.levelno, self.same(record))
        now = self.clock()
        passed, held = self.seen.get(key, (-self.window_s, 0))
        if now - passed < self.window_s:
            self.seen[key] = (passed, held + 1)
            return False
        if held:
            record.msg = f"{record.msg} ({held} more like this in the last {now - passed:.0f} s)"
        self.seen[key] = (now, 0)
        if len(self.seen) > 10_000:  # messages with their details in the template: keep the memory bounded
            self.seen.clear()
        return True


def install() -> None:
    logging.getLogger("aiohttp.server").addFilter(BadRequestsInOneLine())
    repeats = RepeatsOncePerWindow()
    # A logger's filters see only what is logged to that logger itself: aiokafka's modules log to their own.
    for name in ("aiokafka", "aiokafka.client", "aiokafka.cluster", "aiokafka.conn", "aiokafka.consumer.consumer",
                 "aiokafka.consumer.fetcher", "aiokafka.consumer.group_coordinator", "aiokafka.producer.producer",
                 "aiokafka.producer.sender"):
        logging.getLogger(name).addFilter(repeats)
    logging.getLogger("stocksync.deadletters").addFilter(repeats)  # a flood of bad input: one line per window
    logging.getLogger("mode.timers").addFilter(repeats)  # "Timer ... is overlapping", on every tick under load
    # librdkafka logs every line with one template ("%s [%s] %s": facility, client, text): the same text repeats.
    logging.getLogger("librdkafka").addFilter(RepeatsOncePerWindow(same=_librdkafka_text))


def _librdkafka_text(record: logging.LogRecord) -> str:
    args = record.args if isinstance(record.args, tuple) else ()
    return f"{args[0]} {args[2]}" if len(args) == 3 else str(record.msg)
