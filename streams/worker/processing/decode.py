"""The first step of a batch: each input message decoded into movements, checked against the topic it came on
and the catalog, and grouped per SKU in steps of at most SKU_STEP movements; what fails is dead-lettered."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Any

from streams.domain import InvalidMovement, Movement
from streams.domain.catalog import Catalog
from streams.domain.movements import SALES_SIDE, WORKER_EVENT_PREFIX, WORKER_MADE, Kind, channel_of_expiry
from streams.domain.orders import HOLD_STEPS, ORDER_ID, Event, OrderRequest, hold_movement
from streams.wire.codec import DecodeError, SingleObjectCodec
from streams.wire.order_records import event_of_step, order_request_from_record, sourced_line
from streams.wire.partitioner import partition_for, sku_partition
from streams.wire.records import movement_from_record
from streams.wire.schemas import Schema
from streams.worker.ops import metrics
from streams.worker.processing.deadletters import DeadLetters
from streams.worker.processing.messages import BatchResult, Inbound
from streams.worker.processing.orders import OrderId, OrderWork
from streams.worker.processing.outputs import Outbox
from streams.worker.reference.network_in_force import NetworkInForce

# A best-seller's movements in one batch are applied this many at a time (each step reads what the one before
# wrote), so that its worker's other tasks run in between; still one write of its head per step, not per movement.
SKU_STEP = 500


@dataclass
class SkuWork:
    """The movements of one SKU in one step of a batch, with where each came from (a message, and its index in a
    packed message), and the orders' coordinators asking for its figures (their ask_figures steps)."""

    partition: int
    movements: list[Movement] = field(default_factory=list)
    sources: list[tuple[Inbound, int | None]] = field(default_factory=list)
    questions: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Decoded:
    """A batch's movements so far: per SKU its step still filling, and every step in order (a SKU's steps are
    applied one after the other)."""

    filling: dict[str, SkuWork] = field(default_factory=dict)
    steps: list[tuple[str, SkuWork]] = field(default_factory=list)
    orders: dict[OrderId, OrderWork] = field(default_factory=dict)
    forget: set[int] = field(default_factory=set)  # partitions asked to forget their long-decided orders

    def add(self, movement: Movement, partition: int, source: tuple[Inbound, int | None]) -> None:
        item = self._work(movement.sku, partition)
        item.movements.append(movement)
        item.sources.append(source)

    def ask(self, sku: str, partition: int, question: dict[str, Any]) -> None:
        self._work(sku, partition).questions.append(question)

    def order(self, order: OrderId, partition: int, event: OrderRequest | Event | None, source: Inbound) -> None:
        work = self.orders.get(order)
        if work is None:
            work = self.orders[order] = OrderWork(partition)
        work.events.append(event)
        work.sources.append(source)

    def _work(self, sku: str, partition: int) -> SkuWork:
        item = self.filling.get(sku)
        if item is None or len(item.movements) >= SKU_STEP:
            item = self.filling[sku] = SkuWork(partition)
            self.steps.append((sku, item))
        return item


class Decoder:
    def __init__(self, network: NetworkInForce, codec: SingleObjectCodec, catalog: Catalog, partitions: int,
                 dead_letters: DeadLetters) -> None:
        self.network, self.codec, self.catalog = network, codec, catalog
        self.partitions, self.dead_letters = partitions, dead_letters

    def decode(self, message: Inbound, into: Decoded, outbox: Outbox, now: int, result: BatchResult) -> None:
        dead_letter = self.dead_letters.send
        route = self.network.route(message.topic)
        if route is None:
            dead_letter(outbox, message, None, "unknown_channel", f"no channel reads {message.topic}", now, result)
            return
        steps = message.topic == self.network.registry.order_steps.name
        try:
            name, record = self.codec.decode_as(message.value or b"", *(
                (Schema.ORDER_STEP, Schema.ORDER_STEP_BATCH) if steps else
                (Schema.MOVEMENT, Schema.MOVEMENT_BATCH) if route.channel is None else  # the expiries
                (Schema.MOVEMENT, Schema.MOVEMENT_BATCH, Schema.ORDER_REQUEST)))
        except DecodeError as exc:
            dead_letter(outbox, message, route.channel, exc.reason, str(exc), now, result)
            return
        if name == Schema.ORDER_STEP:
            self._order_step(message, None, record, into, outbox, now, result)
            return
        if name == Schema.ORDER_STEP_BATCH:
            for index, step in enumerate(record["steps"]):
                self._order_step(message, index, step, into, outbox, now, result)
            return
        if name == Schema.ORDER_REQUEST:
            assert route.channel is not None
            self._order_request(message, route.channel, route.kinds, record, into, outbox, now, result)
            return
        records = [record] if name == Schema.MOVEMENT else record["movements"]
        for index, raw in enumerate(records):
            position = None if name == Schema.MOVEMENT else index
            channel = route.channel or channel_of_expiry(str(raw["event_id"]))
            if channel is None:
                dead_letter(outbox, message, None, "invalid_movement",
                            f"event_id: {raw['event_id']!r} names no channel's hold", now, result, position,
                            str(raw["event_id"]))
                continue
            alias = raw.get("alias")
            if not raw["sku"] and alias:  # named by the channel's own identifier: the catalog says which SKU
                sku = self.catalog.resolve(channel, str(alias))
                if sku is None:
                    dead_letter(outbox, message, channel, "unknown_alias",
                                f"alias {alias!r}: no catalog entry of {channel} or of every channel",
                                now, result, position, str(raw.get("event_id")))
                    continue
                raw = {**raw, "sku": sku}
            try:
                movement = movement_from_record(raw, channel)
            except InvalidMovement as exc:
                dead_letter(outbox, message, channel, "invalid_movement", str(exc), now, result, position,
                            str(raw.get("event_id")))
                continue
            if movement.event_id.startswith(WORKER_EVENT_PREFIX) != route.made_by_worker:
                dead_letter(outbox, message, channel, "invalid_movement",
                            f"event_id: {movement.event_id!r}: only the workers' own movements, and all of "
                            f"them, start with {WORKER_EVENT_PREFIX!r}", now, result, position, movement.event_id)
                continue
            if movement.kind not in route.kinds and not (movement.in_states and route.kinds == SALES_SIDE):
                dead_letter(outbox, message, channel, "wrong_topic", _wrong_topic(movement.kind), now, result,
                            position, movement.event_id)
                continue
            partition = sku_partition(movement.sku, self.partitions)
            if partition != message.partition:
                # Packed by a client that hashed differently: send it on to where its SKU lives (same event id,
                # so a repeat is harmless).
                outbox.send(message.topic, movement.sku.encode(), self.codec.encode(Schema.MOVEMENT, raw), None)
                outbox.on_commit(metrics.REROUTED.inc)
                result.rerouted += 1
                continue
            into.add(movement, partition, (message, position))

    def _order_request(self, message: Inbound, channel: str, kinds: frozenset[Kind], record: dict[str, Any],
                       into: Decoded, outbox: Outbox, now: int, result: BatchResult) -> None:
        order_id = str(record["order_id"])
        if kinds != SALES_SIDE:
            self.dead_letters.send(outbox, message, channel, "wrong_topic",
                                   "an order belongs on the channel's sales topic", now, result, None, order_id)
        elif not ORDER_ID.match(order_id):
            self.dead_letters.send(outbox, message, channel, "invalid_order",
                                   f"order_id: {order_id[:80]!r} is not an order id (letters, digits, ._:/-; max 64)",
                                   now, result, None, order_id[:128])
        elif self._here(order_id, message, outbox, result):
            request = order_request_from_record(record, channel, partial(self.catalog.resolve, channel))
            into.order((channel, order_id), message.partition, request, message)

    def _order_step(self, message: Inbound, index: int | None, record: dict[str, Any], into: Decoded,
                    outbox: Outbox, now: int, result: BatchResult) -> None:
        """A step between an order's coordinator and a line's owner (`index`: its place in a packed message): to
        the owner it joins the SKU's work (a hold is a reservation movement), to the coordinator the order's."""
        kind, channel, order_id, sku = record["kind"], record["channel"], record["order_id"], record["sku"]
        if kind == "forget":
            into.forget.add(message.partition)
            return
        alone = None if index is None else record  # what to send on if it is not this partition's
        if kind in ("figures", "hold_answer", "tick"):
            if self._here(order_id, message, outbox, result, alone):
                event = None if kind == "tick" else event_of_step(record)
                into.order((channel, order_id), message.partition, event, message)
            return
        if kind != "ask_figures" and kind not in HOLD_STEPS:
            self.dead_letters.send(outbox, message, channel, "unknown_step", f"an order step of kind {kind!r}", now,
                                   result, index, order_id)
            return
        if not self._here(sku, message, outbox, result, alone):
            return
        if kind == "ask_figures":
            into.ask(sku, message.partition, record)
            return
        parts = tuple((p["location"], p["quantity"]) for p in record["parts"])
        try:
            movement = hold_movement(HOLD_STEPS[kind], channel, sku, record["hold_id"], parts,
                                     record["expires_at"], record["sent_at"], sourced_line(record))
        except InvalidMovement as exc:
            self.dead_letters.send(outbox, message, channel, "invalid_movement", str(exc), now, result, index,
                                   record["hold_id"])
            return
        into.add(movement, message.partition, (message, index))

    def _here(self, key: str, message: Inbound, outbox: Outbox, result: BatchResult,
              step: dict[str, Any] | None = None) -> bool:
        """Whether `key` belongs to the message's partition; if not, the message (or `step`, one of a packed
        message's) is sent on to its own."""
        if partition_for(key.encode(), self.partitions) == message.partition:
            return True
        value = message.value if step is None else self.codec.encode(Schema.ORDER_STEP, step)
        outbox.send(message.topic, key.encode(), value, None)
        outbox.on_commit(metrics.REROUTED.inc)
        result.rerouted += 1
        return False


def _wrong_topic(kind: Kind) -> str:
    if kind in WORKER_MADE:
        return f"a {kind} is made by stocksync only, when a hold lapses"
    return f"a {kind} belongs on the channel's {'sales' if kind in SALES_SIDE else 'restock'} topic"
