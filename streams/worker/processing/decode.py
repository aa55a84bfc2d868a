"""The first step of a batch: each input message decoded into movements, checked against the topic it came on
and the catalog, and grouped per SKU in steps of at most SKU_STEP movements; what fails is dead-lettered."""

from __future__ import annotations

from dataclasses import dataclass, field

from streams.domain import InvalidMovement, Movement
from streams.domain.catalog import Catalog
from streams.domain.movements import SALES_SIDE, WORKER_EVENT_PREFIX, WORKER_MADE, Kind, channel_of_expiry
from streams.wire.codec import DecodeError, SingleObjectCodec
from streams.wire.partitioner import sku_partition
from streams.wire.records import movement_from_record
from streams.wire.schemas import Schema
from streams.worker.ops import metrics
from streams.worker.processing.deadletters import DeadLetters
from streams.worker.processing.messages import BatchResult, Inbound
from streams.worker.processing.outputs import Outbox
from streams.worker.reference.network_in_force import NetworkInForce

# A best-seller's movements in one batch are applied this many at a time (each step reads what the one before
# wrote), so that its worker's other tasks run in between; still one write of its head per step, not per movement.
SKU_STEP = 500


@dataclass
class SkuWork:
    """The movements of one SKU in one step of a batch, with where each came from (a message, and its index in a
    packed message)."""

    partition: int
    movements: list[Movement] = field(default_factory=list)
    sources: list[tuple[Inbound, int | None]] = field(default_factory=list)


@dataclass
class Decoded:
    """A batch's movements so far: per SKU its step still filling, and every step in order (a SKU's steps are
    applied one after the other)."""

    filling: dict[str, SkuWork] = field(default_factory=dict)
    steps: list[tuple[str, SkuWork]] = field(default_factory=list)

    def add(self, movement: Movement, partition: int, source: tuple[Inbound, int | None]) -> None:
        item = self.filling.get(movement.sku)
        if item is None or len(item.movements) >= SKU_STEP:
            item = self.filling[movement.sku] = SkuWork(partition)
            self.steps.append((movement.sku, item))
        item.movements.append(movement)
        item.sources.append(source)


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
        try:
            name, record = self.codec.decode_as(message.value or b"", Schema.MOVEMENT, Schema.MOVEMENT_BATCH)
        except DecodeError as exc:
            dead_letter(outbox, message, route.channel, exc.reason, str(exc), now, result)
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
            if movement.kind not in route.kinds:
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


def _wrong_topic(kind: Kind) -> str:
    if kind in WORKER_MADE:
        return f"a {kind} is made by stocksync only, when a hold lapses"
    return f"a {kind} belongs on the channel's {'sales' if kind in SALES_SIDE else 'restock'} topic"
