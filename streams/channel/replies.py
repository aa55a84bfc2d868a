"""Reservation decisions: follows a channel's reply topic and resolves the requests awaiting a decision."""

from __future__ import annotations

import threading
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from streams.channel.errors import BackgroundErrors
from streams.channel.orders import OrderDecision
from streams.kafka.clients import assign_all, unassigned_consumer
from streams.security import Kafka
from streams.wire.codec import SingleObjectCodec
from streams.wire.schemas import Schema


@dataclass(frozen=True, slots=True)
class Decision:
    """The owner's answer to a reservation request: accepted with the holding locations, or refused."""

    reservation_id: str
    sku: str
    accepted: bool
    quantity: int
    reason: str
    parts: tuple[tuple[str, int], ...]
    expires_at: int | None
    version: int
    # A sourced reservation (reserve(..., deliver_to=...)): per location held, its distance to the delivery
    # point in km and its cost, as the sourcing API ranks them.
    sourcing: tuple[tuple[str, float, float], ...] = ()
    alias: str | None = None  # the channel's own identifier the request named, if it named one


class ReplyListener:
    """Follows the channel's reply topic from its end at start-up and resolves the awaited decisions: on
    reservations (by reservation id) and on orders (by order id)."""

    def __init__(self, servers: Kafka, topic: str, codec: SingleObjectCodec) -> None:
        self.codec = codec
        self.consumer = unassigned_consumer(servers, topic)
        assign_all(self.consumer, topic, from_beginning=False)  # explicit end offsets: nothing can slip past
        self.waiting: dict[tuple[str, str], Future[Any]] = {}  # (schema, id) -> what awaits its decision
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.errors = BackgroundErrors(f"decisions on {topic}")
        self.thread = threading.Thread(target=self._run, name="stocksync-replies", daemon=True)
        self.thread.start()

    def expect(self, reservation_id: str) -> Future[Decision]:
        return self._expect((Schema.RESERVATION_DECISION, reservation_id))

    def expect_order(self, order_id: str) -> Future[OrderDecision]:
        return self._expect((Schema.ORDER_DECISION, order_id))

    def _expect(self, key: tuple[str, str]) -> Future[Any]:
        with self.lock:
            future = self.waiting.get(key)
            if future is None or future.done():
                future = self.waiting[key] = Future()
            return future

    def forget(self, reservation_id: str) -> None:
        with self.lock:
            self.waiting.pop((Schema.RESERVATION_DECISION, reservation_id), None)

    def forget_order(self, order_id: str) -> None:
        with self.lock:
            self.waiting.pop((Schema.ORDER_DECISION, order_id), None)

    def _run(self) -> None:
        try:
            while not self.stopped.is_set():
                message = self.consumer.poll(0.2)
                if message is not None and message.error() is not None:
                    self.errors.add(str(message.error()))
                    continue
                value = None if message is None else message.value()
                if value is None:
                    continue
                try:
                    name, record = self.codec.decode_as(value, Schema.RESERVATION_DECISION, Schema.ORDER_DECISION)
                except Exception:  # noqa: BLE001 - a foreign record on the topic is not ours to judge
                    continue
                order = name == Schema.ORDER_DECISION
                with self.lock:
                    future = self.waiting.pop((name, record["order_id" if order else "reservation_id"]), None)
                if future is None or future.done():
                    continue
                if order:
                    future.set_result(OrderDecision.from_record(record))
                else:
                    future.set_result(Decision(
                        record["reservation_id"], record["sku"], record["accepted"], record["quantity"],
                        record["reason"], tuple((p["location"], p["quantity"]) for p in record["parts"]),
                        record["expires_at"], record["version"],
                        tuple((s["location"], s["distance_km"], s["cost"]) for s in record.get("sourcing", ())),
                        record.get("alias")))
        except Exception as exc:  # noqa: BLE001 - said, not silently lost: awaited decisions then time out
            self.errors.add(f"stopped following decisions: {exc!r}")
        finally:
            self.consumer.close()

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(5)
