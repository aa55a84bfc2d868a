"""A channel's ATS feed: the compacted feed read from its start (the full state), then followed live."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from streams.channel.errors import BackgroundErrors
from streams.kafka.clients import KafkaException, assign_all, reached, unassigned_consumer
from streams.security import Kafka
from streams.wire.codec import SingleObjectCodec
from streams.wire.schemas import Schema


@dataclass(frozen=True, slots=True)
class AtsUpdate:
    """What the channel may sell of a SKU; newer when (version, network_version) is greater."""

    channel: str
    sku: str
    ats: int
    version: int
    network_version: int
    updated_at: int
    alias: str | None = None  # the identifier this channel knows the SKU by (the catalog), if any


class AtsSubscription:
    """A running ATS feed subscription (a background thread). `latest` holds the newest update per SKU."""

    def __init__(self, servers: Kafka, topic: str, codec: SingleObjectCodec, callback: Callable[[AtsUpdate], None],
                 from_beginning: bool) -> None:
        self.codec = codec
        self.callback = callback
        self.latest: dict[str, AtsUpdate] = {}
        self.skipped_stale = 0
        self.errors = BackgroundErrors(f"ATS feed {topic}")
        self.consumer = unassigned_consumer(servers, topic)
        self.topic = topic
        self._ends = assign_all(self.consumer, topic, from_beginning)
        self._caught_up = threading.Event()
        if not from_beginning or all(end == 0 for end in self._ends.values()):
            self._caught_up.set()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stocksync-ats-feed", daemon=True)
        self._thread.start()

    def wait_caught_up(self, timeout_s: float = 30.0) -> bool:
        """True once the feed as it was at subscription time has been delivered (the replay is complete)."""
        return self._caught_up.wait(timeout_s)

    def ats(self, sku: str) -> int | None:
        update = self.latest.get(sku)
        return None if update is None else update.ats

    def _run(self) -> None:
        try:
            while not self._stopped.is_set():
                message = self.consumer.poll(0.2)
                if message is not None:
                    self._take(message)
                if not self._caught_up.is_set() and reached(self.consumer, self.topic, self._ends):
                    self._caught_up.set()
        except KafkaException as exc:
            self.errors.add(str(exc))
        except Exception as exc:  # noqa: BLE001 - a feed that stops says why, where its caller looks
            self.errors.add(f"the feed stopped: {exc!r}")
        finally:
            self.consumer.close()

    def _take(self, message: Any) -> None:
        if message.error() is not None:
            self.errors.add(str(message.error()))
            return
        value = message.value()
        if value is None:
            return
        try:
            _, r = self.codec.decode_as(value, Schema.ATS_UPDATE)
        except Exception as exc:  # noqa: BLE001 - keep following; note what was unreadable
            self.errors.add(f"offset {message.offset()}: {exc}")
            return
        update = AtsUpdate(r["channel"], r["sku"], r["ats"], r["version"], r["network_version"], r["updated_at"],
                           r.get("alias"))
        current = self.latest.get(update.sku)
        if current is not None and (update.version, update.network_version) <= (
                current.version, current.network_version):
            self.skipped_stale += 1
            return
        self.latest[update.sku] = update
        try:
            self.callback(update)
        except Exception as exc:  # noqa: BLE001 - the caller's bug must not stop the feed
            self.errors.add(f"callback failed on {update.sku}: {exc!r}")

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(5)
