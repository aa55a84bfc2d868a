"""Orders in a batch: each order's coordinator (streams.domain.orders) handed its request and the steps its lines'
owners answered, its state kept in the stock table in the order id's partition, its commands sent as steps to the
owners (keyed by SKU) and its decision to the channel's replies topic; and the timer that tells an undecided order
its deadline has passed.

The owners' side is ordinary stock work: a hold asked for is a reservation with the parts the plan chose, applied
by the SKU's owner in the SKU's step of a batch (streams.worker.processing.decode); its answer, and the figures a
coordinator asks for, go back keyed by the order id (streams.worker.processing.emit)."""

from __future__ import annotations

import heapq
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from streams.domain.ats import line_figures
from streams.domain.network import Network
from streams.domain.order_sourcing import LineStock
from streams.domain.orders import (
    DECISION_MS,
    Command,
    Decide,
    Event,
    Order,
    OrderRequest,
    Tick,
)
from streams.domain.stock import SkuStock
from streams.kafka.topics import TopicRegistry
from streams.wire.codec import SingleObjectCodec
from streams.wire.order_records import (
    Step,
    command_step,
    figures_step,
    order_decision_record,
    order_from_state,
    order_state_record,
    tick_step,
)
from streams.wire.partitioner import partition_for
from streams.wire.schemas import Schema
from streams.worker.ops import metrics
from streams.worker.ops.clock import now_ms
from streams.worker.processing.messages import Inbound
from streams.worker.processing.outputs import Outbox, OutputRecord
from streams.worker.state.keys import decided_key, order_key
from streams.worker.state.records import RecordEncoder, RecordTooLarge, StockStore

log = logging.getLogger("stocksync.worker")

# A tick not answered after this long (its order still undecided) is sent again.
TICK_RESEND_MS = 5_000
# At most this many orders' ticks per round, earliest deadline first.
MAX_TICKS_PER_ROUND = 10_000
# How long a decided order is remembered by default (a re-sent request gets its decision; after it, a new order).
ORDER_MEMORY_MS = 3_600_000
# Decided orders are forgotten in this many time buckets per order memory (each bucket one record per partition).
BUCKETS_PER_MEMORY = 720
# Undecided orders kept decoded between batches (those asked about most recently): a few seconds' worth.
KEPT_ORDERS = 5_000

OrderId = tuple[str, str]  # (channel, order id)


@dataclass
class OrderWork:
    """What a batch brings one order: its request and the owners' answers (a tick: None), in arrival order, with
    the messages they came in."""

    partition: int
    events: list[OrderRequest | Event | None] = field(default_factory=list)
    sources: list[Inbound] = field(default_factory=list)


class OrderTimer:
    """Knows when each undecided order of this worker's partitions must be decided by, and sends the order a tick
    once that has passed (its coordinator then refuses it and releases its holds); and which time buckets of
    decided orders each partition holds, and asks the partition to forget those the order memory has passed."""

    def __init__(self, registry: TopicRegistry, encoder: RecordEncoder, memory_ms: int = ORDER_MEMORY_MS) -> None:
        self.registry, self.encode = registry, encoder.encode
        self.memory_ms = memory_ms
        self.bucket_ms = max(1_000, memory_ms // BUCKETS_PER_MEMORY)
        self._deadlines: dict[OrderId, int] = {}
        self._ticked: dict[OrderId, int] = {}
        self._buckets: dict[int, set[int]] = {}  # partition -> the buckets of decided orders it holds
        self._forget_asked: dict[int, int] = {}  # partition -> when a forget step was last sent to it

    def bucket(self, decided_at: int) -> int:
        return decided_at // self.bucket_ms

    def remembered(self, partition: int, bucket: int) -> None:
        self._buckets.setdefault(partition, set()).add(bucket)

    def forgettable(self, partition: int, now: int) -> list[int]:
        """The partition's buckets of decided orders that the order memory has passed, oldest first."""
        last = self.bucket(now - self.memory_ms) - 1
        return sorted(b for b in self._buckets.get(partition, ()) if b <= last)

    def forgotten(self, partition: int, buckets: Iterable[int]) -> None:
        held = self._buckets.get(partition, set())
        held -= set(buckets)
        self._forget_asked.pop(partition, None)

    def pending(self, order: OrderId, deadline: int) -> None:
        self._deadlines[order] = deadline

    def decided(self, order: OrderId) -> None:
        self._deadlines.pop(order, None)
        self._ticked.pop(order, None)

    def rebuild(self, undecided: Iterable[tuple[OrderId, int]], buckets: Iterable[tuple[int, int]]) -> None:
        """After a rebalance: the undecided orders, and the (partition, bucket)s of decided ones, of the
        partitions this worker now owns."""
        self._deadlines = dict(undecided)
        self._ticked.clear()
        self._buckets, self._forget_asked = {}, {}
        for partition, bucket in buckets:
            self.remembered(partition, bucket)

    def request_due(self, outbox: Outbox, now: int | None = None) -> int:
        now = now if now is not None else now_ms()
        due = heapq.nsmallest(MAX_TICKS_PER_ROUND, ((deadline, order) for order, deadline in self._deadlines.items()
                                                    if deadline <= now))
        sent = 0
        for _, order in due:
            ticked = self._ticked.get(order)
            if ticked is not None and now - ticked < TICK_RESEND_MS:
                continue
            key, record = tick_step(order[1], order[0], now)
            outbox.send(self.registry.order_steps.name, key.encode(), self.encode(Schema.ORDER_STEP, record), None)
            self._ticked[order] = now
            sent += 1
        for partition in sorted(self._buckets):
            asked = self._forget_asked.get(partition)
            if self.forgettable(partition, now) and (asked is None or now - asked >= TICK_RESEND_MS):
                record = {"kind": "forget", "order_id": "", "channel": "", "sent_at": now}
                outbox.send(self.registry.order_steps.name, b"forget",
                            self.encode(Schema.ORDER_STEP, record), partition)
                self._forget_asked[partition] = now
                sent += 1
        return sent

    def __len__(self) -> int:
        return len(self._deadlines)


class Coordinator:
    """Applies a batch's work to each order and emits what that decides."""

    def __init__(self, registry: TopicRegistry, encoder: RecordEncoder, timer: OrderTimer,
                 decision_ms: int = DECISION_MS) -> None:
        self.registry, self.encoder, self.timer = registry, encoder, timer
        self.decision_ms = decision_ms
        self.codec = encoder.codec
        # Undecided orders as last committed, with the record they were decoded from or encoded to: an order
        # comes back two or three times within seconds, and decoding its state was a fifth of its cost. An entry
        # is taken out while its order is worked on and put back only at the commit, so an aborted batch leaves
        # none; it is used only while the stored record is still the one it was made from.
        self._undecided: OrderedDict[OrderId, tuple[bytes, Order]] = OrderedDict()

    def load(self, store: StockStore, order: OrderId, partition: int) -> tuple[Order | None, bytes | None]:
        """The order's coordinator state, and its record as stored."""
        raw = store.get_raw(order_key(*order), partition)
        known = self._undecided.pop(order, None)
        if not raw:
            return None, None
        if known is not None and known[0] == raw:
            return known[1], raw
        return order_from_state(self.codec.decode_stored(raw, Schema.ORDER_STATE)[1]), raw

    def _keep(self, order_id: OrderId, state: bytes, order: Order) -> None:
        self._undecided[order_id] = (state, order)
        while len(self._undecided) > KEPT_ORDERS:
            self._undecided.popitem(last=False)

    def apply(self, order_id: OrderId, work: OrderWork, network: Network, store: StockStore, outbox: Outbox,
              steps: StepPacker, decided: DecidedOrders, now: int) -> None:
        """Every record is built (and may fail) before anything is written or sent."""
        order, stored = self.load(store, order_id, work.partition)
        undecided_before = order is None or order.decision is None
        commands: list[Command] = []
        for event in work.events:
            if isinstance(event, OrderRequest):
                if order is None:
                    order, started = Order.start(event, now, self.decision_ms)
                    commands += started
                else:
                    commands += order.again(event, now)
            elif order is None:
                continue  # a step for an order not held here (never requested): a hold it placed lapses by itself
            else:
                commands += order.handle(event if event is not None else Tick(now), network, now)
        if order is None:
            return
        # A malformed order (refused before anything was asked) is not remembered: a re-send is refused the same
        # way, and no request, however large, makes a record.
        remembered = not (stored is None and order.decision is not None and order.plan is None)
        state = self.encoder.encode(Schema.ORDER_STATE, order_state_record(order)) if remembered else None
        records = [self._record(command, order, now) for command in commands]
        decision = order.decision if undecided_before and remembered else None
        if state is not None and state != stored:  # a repeated or late step changes nothing: nothing to write
            store.put_raw(order_key(*order_id), state, work.partition)
        if decision is not None:
            decided.add(work.partition, self.timer.bucket(decision.decided_at), order_id)
        for topic, key, value in records:
            if topic == steps.topic:
                steps.add(key, value)
            else:
                outbox.send(topic, key, value, None)
        if order.decision is None:
            outbox.on_commit(partial(self.timer.pending, order_id, order.deadline))
            if state is not None:
                outbox.on_commit(partial(self._keep, order_id, state, order))
        else:
            outbox.on_commit(partial(self.timer.decided, order_id))
        for command in commands:
            if isinstance(command, Decide):
                outbox.on_commit(partial(_count_decision, command, order.requested_at))

    def remember(self, decided: DecidedOrders, store: StockStore, outbox: Outbox) -> None:
        """Add a batch's decided orders to their time buckets' records, each record written once per batch."""
        for (partition, bucket), entries in sorted(decided.entries.items()):
            key = decided_key(partition, bucket)
            raw = store.get_raw(key, partition)
            known = self.codec.decode_stored(raw, Schema.EVENT_CHUNK)[1]["keys"] if raw else ""
            keys = "\n".join([known, *entries] if known else entries)
            try:
                chunk = self.encoder.encode(Schema.EVENT_CHUNK, {"keys": keys})
            except RecordTooLarge:
                # Only at thousands of orders a second in one partition: these orders are remembered until the
                # partition is recovered elsewhere, rather than their decisions being lost.
                log.error("partition %d: %d orders decided in one time bucket are too many to list; they are not "
                          "forgotten after the order memory", partition, len(entries))
                continue
            store.put_raw(key, chunk, partition)
            outbox.on_commit(partial(self.timer.remembered, partition, bucket))

    def forget(self, partition: int, store: StockStore, outbox: Outbox, now: int) -> None:
        """Delete the orders of `partition` decided longer ago than the order memory: a re-sent request of one is
        then a new order."""
        buckets = self.timer.forgettable(partition, now)
        for bucket in buckets:
            key = decided_key(partition, bucket)
            raw = store.get_raw(key, partition)
            entries = self.codec.decode_stored(raw, Schema.EVENT_CHUNK)[1]["keys"].split("\n") if raw else []
            for entry in entries:
                channel, _, order = entry.partition(":")
                store.put_raw(order_key(channel, order), None, partition)
            store.put_raw(key, None, partition)
        outbox.on_commit(partial(self.timer.forgotten, partition, buckets))

    def _record(self, command: Command, order: Order, now: int) -> tuple[str, bytes, bytes]:
        channel = order.request.channel
        if isinstance(command, Decide):
            value = self.encoder.encode(Schema.ORDER_DECISION, order_decision_record(command.decision, order.request))
            return self.registry.replies(channel).name, command.decision.order_id.encode(), value
        key, record = command_step(command, channel, now)
        return self.registry.order_steps.name, key.encode(), self.encoder.encode(Schema.ORDER_STEP, record)



def undecided(states: Iterable[dict[str, Any]]) -> Iterator[tuple[OrderId, int]]:
    """The undecided orders among OrderState records, with their deadlines."""
    for state in states:
        order = order_from_state(state)
        if order.decision is None:
            yield (order.request.channel, order.request.order_id), order.deadline


def _count_decision(command: Decide, requested_at: int) -> None:
    decision = command.decision
    metrics.ORDERS.labels(decision.channel, "accepted" if decision.accepted else decision.reason or "refused").inc()
    if decision.accepted and decision.plan is not None:
        metrics.ORDER_PARCELS.observe(len(decision.plan.parcels))
    metrics.ORDER_SECONDS.observe(max(0, decision.decided_at - requested_at) / 1000)


def answer_figures(questions: Iterable[dict[str, Any]], stock: SkuStock, network: Network, now: int
                   ) -> list[Step]:
    """The owner's figures for each coordinator that asked: the units available at each location the order's
    channel sells from, and what the channel may sell of the SKU."""
    answers = []
    for ask in questions:
        channel = network.channels.get(ask["channel"])
        answers.append(figures_step(ask, LineStock({}, 0) if channel is None else line_figures(stock, channel), now))
    return answers



def sends_step(step: str, registry: TopicRegistry, codec: SingleObjectCodec
               ) -> Callable[[Sequence[OutputRecord]], bool]:
    """Fault injection for tests: whether a transaction's records send the order step `step` ("hold_confirmed":
    whether they apply a confirmation, as its ledger entry says; "order_decided": whether they tell a channel an
    order's decision)."""
    def sends(records: Sequence[OutputRecord]) -> bool:
        for topic, _, value, _ in records:
            if value is None:
                continue
            if step == "hold_confirmed" and topic == registry.ledger.name:
                if codec.decode(value)[1]["event_id"].endswith(":confirm"):
                    return True
            elif step == "order_decided" and topic.endswith(".replies"):
                if codec.decode(value)[0] == Schema.ORDER_DECISION:
                    return True
            elif topic == registry.order_steps.name and codec.decode(value)[1]["kind"] == step:
                return True
        return False
    return sends


@dataclass
class DecidedOrders:
    """The orders a batch decided, per partition and time bucket: the coordinator lists them in the bucket's
    record once at the batch's end (rewriting the record for each order made a batch's cost grow with its
    square)."""

    entries: dict[tuple[int, int], list[str]] = field(default_factory=dict)

    def add(self, partition: int, bucket: int, order: OrderId) -> None:
        self.entries.setdefault((partition, bucket), []).append(f"{order[0]}:{order[1]}")


class StepPacker:
    """Holds the order steps a batch sends (each encoded, and checked against the record limit, where it is made)
    and sends them packed: per destination partition one OrderStepBatch message, split where one would pass the
    limit, as a channel client packs movements. A worker then pays its per-message cost once per partition and
    batch, not once per step."""

    def __init__(self, registry: TopicRegistry, encoder: RecordEncoder, partitions: int) -> None:
        self.topic, self.limit, self.partitions = registry.order_steps.name, encoder.limit, partitions
        self.header = encoder.codec.headers[Schema.ORDER_STEP_BATCH]
        self._held: dict[int, list[tuple[bytes, bytes]]] = {}

    def add(self, key: bytes, step: bytes) -> None:
        """`step`: an OrderStep, single-object encoded."""
        self._held.setdefault(partition_for(key, self.partitions), []).append((key, step))

    def flush(self, outbox: Outbox) -> None:
        held, self._held = self._held, {}
        for partition, steps in sorted(held.items()):
            self._send(steps, partition, outbox)

    def _send(self, steps: list[tuple[bytes, bytes]], partition: int, outbox: Outbox) -> None:
        if len(steps) == 1:
            key, step = steps[0]
            outbox.send(self.topic, key, step, partition)
            return
        # An Avro array of records: one block (its count), the records' bodies, the end (a zero count).
        value = self.header + _avro_long(len(steps)) + b"".join(step[10:] for _, step in steps) + b"\x00"
        if len(value) > self.limit:
            half = len(steps) // 2
            self._send(steps[:half], partition, outbox)
            self._send(steps[half:], partition, outbox)
            return
        outbox.send(self.topic, steps[0][0], value, partition)


def _avro_long(n: int) -> bytes:
    """Avro's encoding of a long: zig-zag, then 7 bits a byte, low first."""
    z = (n << 1) ^ (n >> 63)
    out = bytearray()
    while z > 0x7F:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)
