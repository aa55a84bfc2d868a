"""Sends a channel's movements: packed per partition into MovementBatch messages, on one idempotent producer."""

from __future__ import annotations

import threading
from typing import Any

from streams.channel.errors import (
    BackgroundErrors,
    ChannelAccessDenied,
    ChannelTopicMissing,
    ClientClosed,
    DeliveryError,
)
from streams.domain import Movement
from streams.errors import AccessDenied
from streams.kafka.clients import new_producer, produce, topic_metadata
from streams.security import Kafka
from streams.wire.codec import SingleObjectCodec
from streams.wire.partitioner import partition_for, sku_partition
from streams.wire.records import movement_to_record
from streams.wire.schemas import Schema


class MovementSender:
    """Queues movements by (topic, partition) and sends each queue as one message when it holds `max_batch`
    movements or has waited `linger_s` (0: every movement at once), so a worker pays its per-message cost once
    per batch. Every SKU of a message hashes to the message's partition. Thread-safe."""

    def __init__(self, channel: str, servers: Kafka, sales_topic: str, restock_topic: str, codec: SingleObjectCodec,
                 linger_s: float, max_batch: int) -> None:
        self.channel = channel
        self.codec = codec
        self.linger_s = linger_s
        self.max_batch = max_batch
        self.sales_topic, self.restock_topic = sales_topic, restock_topic
        self._producer = new_producer(servers, **{"linger.ms": 2})
        self._partitions = self._partition_count(sales_topic)
        self._lock = threading.Lock()
        self._pending: dict[tuple[str, int], list[dict[str, Any]]] = {}
        self._errors: list[str] = []  # raised at the next flush
        self.background = BackgroundErrors(f"channel {channel!r}")
        self._closed = threading.Event()
        self._flusher = threading.Thread(target=self._flush_periodically, name=f"stocksync-{channel}-linger",
                                         daemon=True)
        if self.linger_s > 0:
            self._flusher.start()

    def _partition_count(self, topic: str) -> int:
        try:
            found = topic_metadata(self._producer.list_topics(topic, timeout=10), topic, "write")
        except AccessDenied as exc:
            raise ChannelAccessDenied(f"channel {self.channel!r}: {exc}") from None
        if found is None:
            raise ChannelTopicMissing(f"channel {self.channel!r}: topic {topic} does not exist (is the channel in "
                                      "the network, and have the workers or 'stocksync topics create' made its "
                                      "topics?)")
        return len(found.partitions)

    def send(self, movement: Movement) -> None:
        """Queue a validated movement on its side's topic, in its SKU's partition."""
        if self._closed.is_set():
            raise ClientClosed(f"channel {self.channel!r}: the client is closed")
        topic = self.sales_topic if movement.on_sales_topic else self.restock_topic
        # A movement that names the channel's alias instead goes where the alias hashes; the worker there resolves
        # it and sends it on to its SKU's partition.
        key = (topic, sku_partition(movement.sku or movement.alias or "", self._partitions))
        full = None
        with self._lock:
            batch = self._pending.setdefault(key, [])
            batch.append(movement_to_record(movement))
            if len(batch) >= self.max_batch or self.linger_s == 0:
                full = self._pending.pop(key)
        if full:
            self._produce(key, full)

    def send_order(self, order_id: str, record: dict[str, Any]) -> None:
        """Send an OrderRequest now, on the sales topic, keyed by its order id (its coordinator's partition)."""
        if self._closed.is_set():
            raise ClientClosed(f"channel {self.channel!r}: the client is closed")
        key = order_id.encode()
        produce(self._producer, self.sales_topic, self.codec.encode(Schema.ORDER_REQUEST, record), key,
                partition_for(key, self._partitions), self._delivered)
        self._producer.poll(0)

    def _produce(self, key: tuple[str, int], records: list[dict[str, Any]]) -> None:
        topic, partition = key
        if len(records) == 1:
            value = self.codec.encode(Schema.MOVEMENT, records[0])
        else:
            value = self.codec.encode(Schema.MOVEMENT_BATCH, {"movements": records})
        # Keyed by the first SKU: every SKU of the batch hashes to this partition.
        produce(self._producer, topic, value, (records[0]["sku"] or records[0]["alias"] or "").encode(), partition,
                self._delivered)
        self._producer.poll(0)

    def _delivered(self, err: Any, msg: Any) -> None:
        if err is not None:
            self._errors.append(f"{msg.topic()}[{msg.partition()}]: {err}")
            self.background.add(f"{msg.topic()}[{msg.partition()}]: refused: {err}")

    def _send_pending(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
        failed = None
        for key, records in pending.items():
            try:
                self._produce(key, records)
            except Exception as exc:  # noqa: BLE001 - the other partitions' movements still go; flush says it
                self._errors.append(f"{key[0]}[{key[1]}]: {len(records)} movements not sent: {exc!r}")
                failed = exc
        if failed is not None:
            raise failed

    def _flush_periodically(self) -> None:
        while not self._closed.wait(self.linger_s):
            try:
                self._send_pending()
            except Exception as exc:  # noqa: BLE001 - the linger thread must go on; flush raises it to the caller
                self.background.add(f"sending queued movements failed: {exc!r}")

    def flush(self, timeout_s: float = 30.0) -> None:
        """Send everything queued and wait until the broker has it; DeliveryError if it refused any."""
        if self._closed.is_set():
            raise ClientClosed(f"channel {self.channel!r}: the client is closed")
        self._send_pending()
        left = self._producer.flush(timeout_s)
        if left:
            raise DeliveryError(f"channel {self.channel!r}: {left} messages not acknowledged after {timeout_s} s")
        if self._errors:
            errors, self._errors = self._errors, []
            raise DeliveryError(f"channel {self.channel!r}: {len(errors)} messages refused, e.g. {errors[0]}")

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def close(self, timeout_s: float = 30.0) -> None:
        """Send what is pending, then stop (librdkafka's threads stop now, not whenever this is collected)."""
        if self._closed.is_set():
            return
        try:
            self.flush(timeout_s)
        finally:
            self._closed.set()
            if self.linger_s > 0:
                self._flusher.join(5)
            del self._producer
