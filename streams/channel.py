"""The channel client: what a store, web shop, app, marketplace or WMS uses to talk to stocksync.

    from streams.channel import ChannelClient

    with ChannelClient("web", "localhost:9092") as web:
        web.receipt("SKU-1", "wh-kassel", 20, event_id="rcpt-881")
        decision = web.reserve("SKU-1", 2, reservation_id="order-77", timeout_s=5)
        feed = web.subscribe_ats(lambda update: print(update.sku, update.ats))

Reported movements go to the channel's sales or restock topic (by kind), Avro single-object encoded, keyed by
SKU, on an idempotent acks=all producer with the murmur2 partitioner. Movements whose SKUs share a partition are
packed into one MovementBatch message within `linger_ms`, so a worker pays its per-message cost once per batch.
Every movement is validated by the domain before anything is sent: misuse raises InvalidMovement at the call.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer, TopicPartition

from streams.domain import InvalidMovement, Kind, Movement
from streams.domain.movements import SALES_SIDE
from streams.errors import StocksyncError
from streams.partitioning import sku_partition
from streams.records import movement_to_record
from streams.serde import SingleObjectCodec, default_codec
from streams.settings import Settings, load_settings
from streams.topics import TopicRegistry

MOVEMENT = "stocksync.Movement"
BATCH = "stocksync.MovementBatch"


class DeliveryError(StocksyncError):
    """The broker refused or never acknowledged reported movements."""


class DecisionTimeout(StocksyncError, TimeoutError):
    """No decision on a reservation request arrived in time (it may still be decided: ask again, same id)."""


@dataclass(frozen=True, slots=True)
class AtsUpdate:
    channel: str
    sku: str
    ats: int
    version: int
    network_version: int
    updated_at: int


@dataclass(frozen=True, slots=True)
class Decision:
    reservation_id: str
    sku: str
    accepted: bool
    quantity: int
    reason: str
    parts: tuple[tuple[str, int], ...]
    expires_at: int | None
    version: int


def _now_ms() -> int:
    return int(time.time() * 1000)


class ChannelClient:
    """One channel's connection to stocksync (thread-safe). Close it (or use `with`) to send what is pending."""

    def __init__(self, channel: str, bootstrap_servers: str | None = None, *, settings: Settings | None = None,
                 linger_ms: float = 5.0, max_batch: int = 200) -> None:
        self.settings = settings or load_settings()
        if bootstrap_servers is None:
            from streams.broker.select import bootstrap_servers as configured

            bootstrap_servers = configured(self.settings)
        if linger_ms < 0 or max_batch < 1:
            raise ValueError("linger_ms must be >= 0 and max_batch >= 1")
        self.channel = channel
        self.servers = bootstrap_servers
        self.registry = TopicRegistry(self.settings)
        self.topics = {"sales": self.registry.sales(channel).name, "restock": self.registry.restock(channel).name}
        self.codec: SingleObjectCodec = default_codec()
        self.linger_s = linger_ms / 1000
        self.max_batch = max_batch
        self._producer = Producer({"bootstrap.servers": bootstrap_servers, "enable.idempotence": True,
                                   "acks": "all", "partitioner": "murmur2_random", "linger.ms": 2})
        self._partitions = self._partition_count(self.topics["sales"])
        self._lock = threading.Lock()
        self._pending: dict[tuple[str, int], list[dict[str, Any]]] = {}
        self._errors: list[str] = []
        self._closed = threading.Event()
        self._flusher = threading.Thread(target=self._flush_periodically, name=f"stocksync-{channel}-linger",
                                         daemon=True)
        if self.linger_s > 0:
            self._flusher.start()
        self._replies: _ReplyListener | None = None
        self._subscriptions: list[AtsSubscription] = []

    def _partition_count(self, topic: str) -> int:
        metadata = self._producer.list_topics(topic, timeout=10)
        found = metadata.topics.get(topic)
        if found is None or found.error is not None or not found.partitions:
            raise StocksyncError(f"channel {self.channel!r}: topic {topic} does not exist (is the channel in the "
                                 "network, and have the workers or 'stocksync topics create' made its topics?)")
        return len(found.partitions)

    # --- reporting movements ---------------------------------------------------------------------------------
    def report(self, kind: Kind | str, sku: str, location: str | None, quantity: int, *, event_id: str,
               occurred_at: int | None = None, reason: str = "", resellable: bool = True,
               other_location: str | None = None, transfer_id: str | None = None,
               reservation_id: str | None = None, expires_at: int | None = None) -> Movement:
        """Validate and queue one movement; it is sent within linger_ms (or at flush/close)."""
        movement = Movement(kind, event_id, self.channel, sku, location, quantity,  # type: ignore[arg-type]
                            _now_ms() if occurred_at is None else occurred_at, reason, resellable, other_location,
                            transfer_id, reservation_id, expires_at)
        self._queue(movement)
        return movement

    def sale(self, sku: str, location: str, quantity: int, *, event_id: str, occurred_at: int | None = None
             ) -> Movement:
        return self.report(Kind.SALE, sku, location, quantity, event_id=event_id, occurred_at=occurred_at)

    def return_(self, sku: str, location: str, quantity: int, *, event_id: str, resellable: bool = True,
                reason: str = "", occurred_at: int | None = None) -> Movement:
        return self.report(Kind.RETURN, sku, location, quantity, event_id=event_id, resellable=resellable,
                           reason=reason, occurred_at=occurred_at)

    def receipt(self, sku: str, location: str, quantity: int, *, event_id: str, occurred_at: int | None = None
                ) -> Movement:
        return self.report(Kind.RECEIPT, sku, location, quantity, event_id=event_id, occurred_at=occurred_at)

    def adjustment(self, sku: str, location: str, quantity: int, *, reason: str, event_id: str,
                   occurred_at: int | None = None) -> Movement:
        return self.report(Kind.ADJUSTMENT, sku, location, quantity, event_id=event_id, reason=reason,
                           occurred_at=occurred_at)

    def count(self, sku: str, location: str, quantity: int, *, event_id: str, as_of: int | None = None
              ) -> Movement:
        """A stock count: `quantity` units were on the shelf at `as_of` (movements after it still apply)."""
        return self.report(Kind.COUNT, sku, location, quantity, event_id=event_id, occurred_at=as_of)

    def safety_stock(self, sku: str, location: str, quantity: int, *, event_id: str,
                     occurred_at: int | None = None) -> Movement:
        return self.report(Kind.SAFETY_STOCK, sku, location, quantity, event_id=event_id, occurred_at=occurred_at)

    def transfer_out(self, sku: str, location: str, quantity: int, *, to: str, transfer_id: str, event_id: str,
                     occurred_at: int | None = None) -> Movement:
        return self.report(Kind.TRANSFER_OUT, sku, location, quantity, event_id=event_id, other_location=to,
                           transfer_id=transfer_id, occurred_at=occurred_at)

    def transfer_in(self, sku: str, location: str, quantity: int, *, source: str, transfer_id: str,
                    event_id: str, occurred_at: int | None = None) -> Movement:
        return self.report(Kind.TRANSFER_IN, sku, location, quantity, event_id=event_id, other_location=source,
                           transfer_id=transfer_id, occurred_at=occurred_at)

    def release(self, sku: str, reservation_id: str, *, event_id: str, occurred_at: int | None = None) -> Movement:
        """The order was cancelled: its units become available again."""
        return self.report(Kind.RESERVATION_RELEASED, sku, None, 0, event_id=event_id,
                           reservation_id=reservation_id, occurred_at=occurred_at)

    def fulfil(self, sku: str, reservation_id: str, *, event_id: str, occurred_at: int | None = None) -> Movement:
        """The order was paid and shipped: the reserved units leave on_hand."""
        return self.report(Kind.RESERVATION_FULFILLED, sku, None, 0, event_id=event_id,
                           reservation_id=reservation_id, occurred_at=occurred_at)

    def _queue(self, movement: Movement) -> None:
        if self._closed.is_set():
            raise StocksyncError(f"channel {self.channel!r}: the client is closed")
        side = "sales" if movement.kind in SALES_SIDE else "restock"
        key = (self.topics[side], sku_partition(movement.sku, self._partitions))
        full = None
        with self._lock:
            batch = self._pending.setdefault(key, [])
            batch.append(movement_to_record(movement))
            if len(batch) >= self.max_batch or self.linger_s == 0:
                full = self._pending.pop(key)
        if full:
            self._produce(key, full)

    def _produce(self, key: tuple[str, int], records: list[dict[str, Any]]) -> None:
        topic, partition = key
        if len(records) == 1:
            value = self.codec.encode(MOVEMENT, records[0])
        else:
            value = self.codec.encode(BATCH, {"movements": records})
        while True:
            try:
                # Keyed by the first SKU: every SKU of the batch hashes to this partition.
                self._producer.produce(topic, value, records[0]["sku"].encode(), partition,
                                       on_delivery=self._delivered)
                break
            except BufferError:
                self._producer.poll(0.1)
        self._producer.poll(0)

    def _delivered(self, err: Any, msg: Any) -> None:
        if err is not None:
            self._errors.append(f"{msg.topic()}[{msg.partition()}]: {err}")

    def _send_pending(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
        for key, records in pending.items():
            self._produce(key, records)

    def _flush_periodically(self) -> None:
        while not self._closed.wait(self.linger_s):
            self._send_pending()

    def flush(self, timeout_s: float = 30.0) -> None:
        """Send everything queued and wait until the broker has it; DeliveryError if it refused any."""
        if self._closed.is_set():
            raise StocksyncError(f"channel {self.channel!r}: the client is closed")
        self._send_pending()
        left = self._producer.flush(timeout_s)
        if left:
            raise DeliveryError(f"channel {self.channel!r}: {left} messages not acknowledged after {timeout_s} s")
        if self._errors:
            errors, self._errors = self._errors, []
            raise DeliveryError(f"channel {self.channel!r}: {len(errors)} messages refused, e.g. {errors[0]}")

    # --- reservations ----------------------------------------------------------------------------------------
    def request_reservation(self, sku: str, quantity: int, *, reservation_id: str, location: str | None = None,
                            ttl_s: float = 900.0, event_id: str | None = None, occurred_at: int | None = None
                            ) -> Future[Decision]:
        """Ask for `quantity` units (at `location`, or anywhere the channel sells from); the Future resolves with
        the owner's decision. The event id defaults to `reserve:<reservation_id>` so a retry is a duplicate."""
        at = _now_ms() if occurred_at is None else occurred_at
        listener = self._reply_listener()
        future = listener.expect(reservation_id)
        try:
            self.report(Kind.RESERVATION_PLACED, sku, location, quantity,
                        event_id=event_id or f"reserve:{reservation_id}", occurred_at=at,
                        reservation_id=reservation_id, expires_at=at + int(ttl_s * 1000))
        except Exception:
            listener.forget(reservation_id)
            raise
        return future

    def reserve(self, sku: str, quantity: int, *, reservation_id: str, location: str | None = None,
                ttl_s: float = 900.0, timeout_s: float = 10.0) -> Decision:
        """Request a reservation and wait for its decision (DecisionTimeout after `timeout_s`)."""
        future = self.request_reservation(sku, quantity, reservation_id=reservation_id, location=location,
                                          ttl_s=ttl_s)
        try:
            return future.result(timeout_s)
        except TimeoutError:
            raise DecisionTimeout(f"reservation {reservation_id!r} on {sku}: no decision within {timeout_s} s") \
                from None

    def _reply_listener(self) -> _ReplyListener:
        with self._lock:
            if self._replies is None:
                self._replies = _ReplyListener(self.servers, self.registry.replies(self.channel).name, self.codec)
            return self._replies

    # --- the ATS feed ----------------------------------------------------------------------------------------
    def subscribe_ats(self, callback: Callable[[AtsUpdate], None], *, from_beginning: bool = True
                      ) -> AtsSubscription:
        """Call `callback` for every SKU's ATS: first the whole compacted feed (the full state), then live updates.
        Stale or repeated updates (an older or equal (version, network_version) for the SKU) are skipped."""
        subscription = AtsSubscription(self.servers, self.registry.ats(self.channel).name, self.codec, callback,
                                       from_beginning)
        self._subscriptions.append(subscription)
        return subscription

    def close(self, timeout_s: float = 30.0) -> None:
        if self._closed.is_set():
            return
        try:
            self.flush(timeout_s)
        finally:
            self._closed.set()
            if self.linger_s > 0:
                self._flusher.join(5)
            del self._producer  # librdkafka's threads stop now, not whenever the client is collected
            for subscription in self._subscriptions:
                subscription.stop()
            if self._replies is not None:
                self._replies.stop()

    def __enter__(self) -> ChannelClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def unassigned_consumer(servers: str) -> Consumer:
    # No group: partitions are assigned explicitly and nothing is committed.
    return Consumer({"bootstrap.servers": servers, "group.id": f"stocksync-client-{uuid.uuid4()}",
                     "enable.auto.commit": False, "enable.partition.eof": False})


_NOT_READY_YET = {KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
                  KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._TIMED_OUT}


def watermarks(consumer: Consumer, tp: TopicPartition, wait_s: float = 30.0) -> tuple[int, int]:
    """A partition's low and high offsets, waiting out a topic so new that its leader is not known yet."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            low, high = consumer.get_watermark_offsets(tp, timeout=10)
            return low, high
        except KafkaException as exc:
            if exc.args[0].code() not in _NOT_READY_YET or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def start_positions(consumer: Consumer, topic: str, from_beginning: bool) -> tuple[list[TopicPartition],
                                                                                   dict[int, int]]:
    """Every partition of `topic` at its start or at its current end (explicit offsets: nothing produced after
    this call can slip past), and the end offsets found."""
    metadata = consumer.list_topics(topic, timeout=10)
    if topic not in metadata.topics or metadata.topics[topic].error is not None:
        raise StocksyncError(f"topic {topic} does not exist")
    ends: dict[int, int] = {}
    positions = []
    for partition in sorted(metadata.topics[topic].partitions):
        _, high = watermarks(consumer, TopicPartition(topic, partition))
        ends[partition] = high
        positions.append(TopicPartition(topic, partition, OFFSET_BEGINNING if from_beginning else high))
    return positions, ends


def _assign_all(consumer: Consumer, topic: str, from_beginning: bool) -> dict[int, int]:
    positions, ends = start_positions(consumer, topic, from_beginning)
    consumer.assign(positions)
    return ends


class _ReplyListener:
    """Follows the channel's reply topic from its end at start-up and resolves the awaited decisions."""

    def __init__(self, servers: str, topic: str, codec: SingleObjectCodec) -> None:
        self.codec = codec
        self.consumer = unassigned_consumer(servers)
        _assign_all(self.consumer, topic, from_beginning=False)  # explicit end offsets: nothing can slip past
        self.waiting: dict[str, Future[Decision]] = {}
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="stocksync-replies", daemon=True)
        self.thread.start()

    def expect(self, reservation_id: str) -> Future[Decision]:
        with self.lock:
            future = self.waiting.get(reservation_id)
            if future is None or future.done():
                future = self.waiting[reservation_id] = Future()
            return future

    def forget(self, reservation_id: str) -> None:
        with self.lock:
            self.waiting.pop(reservation_id, None)

    def _run(self) -> None:
        try:
            while not self.stopped.is_set():
                message = self.consumer.poll(0.2)
                if message is None or message.error() is not None:
                    continue
                try:
                    _, record = self.codec.decode_as(message.value(), "stocksync.ReservationDecision")
                except Exception:  # noqa: BLE001 - a foreign record on the topic is not ours to judge
                    continue
                with self.lock:
                    future = self.waiting.pop(record["reservation_id"], None)
                if future is not None and not future.done():
                    future.set_result(Decision(
                        record["reservation_id"], record["sku"], record["accepted"], record["quantity"],
                        record["reason"], tuple((p["location"], p["quantity"]) for p in record["parts"]),
                        record["expires_at"], record["version"]))
        finally:
            self.consumer.close()

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(5)


class AtsSubscription:
    """A running ATS feed subscription (a background thread). `latest` holds the newest update per SKU."""

    def __init__(self, servers: str, topic: str, codec: SingleObjectCodec, callback: Callable[[AtsUpdate], None],
                 from_beginning: bool) -> None:
        self.codec = codec
        self.callback = callback
        self.latest: dict[str, AtsUpdate] = {}
        self.skipped_stale = 0
        self.errors: list[str] = []
        self.consumer = unassigned_consumer(servers)
        self._ends = _assign_all(self.consumer, topic, from_beginning)
        self._caught_up = threading.Event()
        self._positions: dict[int, int] = {}
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
                if message is None:
                    continue
                if message.error() is not None:
                    self.errors.append(str(message.error()))
                    continue
                self._positions[message.partition()] = message.offset() + 1
                if not self._caught_up.is_set() and all(
                        self._positions.get(p, 0) >= end for p, end in self._ends.items() if end > 0):
                    self._caught_up.set()
                if message.value() is None:
                    continue
                try:
                    _, r = self.codec.decode_as(message.value(), "stocksync.AtsUpdate")
                except Exception as exc:  # noqa: BLE001 - keep following; note what was unreadable
                    self.errors.append(f"offset {message.offset()}: {exc}")
                    continue
                update = AtsUpdate(r["channel"], r["sku"], r["ats"], r["version"], r["network_version"],
                                   r["updated_at"])
                current = self.latest.get(update.sku)
                if current is not None and (update.version, update.network_version) <= (
                        current.version, current.network_version):
                    self.skipped_stale += 1
                    continue
                self.latest[update.sku] = update
                try:
                    self.callback(update)
                except Exception as exc:  # noqa: BLE001 - the caller's bug must not stop the feed
                    self.errors.append(f"callback failed on {update.sku}: {exc!r}")
        except KafkaException as exc:
            self.errors.append(str(exc))
        finally:
            self.consumer.close()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(5)


__all__ = ["AtsSubscription", "AtsUpdate", "ChannelClient", "Decision", "DecisionTimeout", "DeliveryError",
           "InvalidMovement", "Kind"]
