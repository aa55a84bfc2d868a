"""What a channel client raises: every error is a StocksyncError, and says which channel it is about."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Iterator

from streams.errors import AccessDenied, StocksyncError

log = logging.getLogger("stocksync.channel")


class ChannelError(StocksyncError):
    """Root of the channel client's errors."""


class ChannelTopicMissing(ChannelError):
    """A topic of the channel does not exist: the channel is not in the network, or its topics were not made."""


class ChannelAccessDenied(ChannelError, AccessDenied):
    """The cluster's ACLs do not let the channel's principal use one of its topics."""


class ClientClosed(ChannelError):
    """The client was closed; nothing more can be sent with it."""


class DeliveryError(ChannelError):
    """The broker refused or never acknowledged reported movements."""


class DecisionTimeout(ChannelError, TimeoutError):
    """No decision on a reservation request arrived in time (it may still be decided: ask again, same id)."""


class BackgroundErrors:
    """What a client's background thread (a feed, the reply listener, the sender's linger) hit and went on
    from: each logged as a WARNING on "stocksync.channel" (a flood as one line per 10 s with its count) and the
    last 100 kept for the caller (`errors`)."""

    KEPT = 100
    QUIET_S = 10.0

    def __init__(self, what: str) -> None:
        self.what = what
        self.recent: deque[str] = deque(maxlen=self.KEPT)
        self.count = 0
        self._lock = threading.Lock()
        self._logged_at = float("-inf")
        self._unlogged = 0

    def add(self, error: str) -> None:
        with self._lock:
            self.recent.append(error)
            self.count += 1
            now = time.monotonic()
            if now - self._logged_at < self.QUIET_S:
                self._unlogged += 1
                return
            also, self._unlogged, self._logged_at = self._unlogged, 0, now
        more = f" ({also} more since the last such line)" if also else ""
        log.warning("%s: %s%s", self.what, error, more)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self.recent))

    def __len__(self) -> int:
        return len(self.recent)

    def __bool__(self) -> bool:
        return bool(self.recent)
