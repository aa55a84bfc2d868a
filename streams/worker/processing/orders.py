"""Orders in a batch: each order's coordinator (streams.domain.orders) handed its request and the steps its lines'
owners answered, its state kept in the stock table in the order id's partition, its commands sent as steps to the
owners (keyed by SKU) and its decision to the channel's replies topic; and the timer that tells an undecided order
its deadline has passed.

The owners' side is ordinary stock work: a hold asked for is a reservation with the parts the plan chose, applied
by the SKU's owner in the SKU's step of a batch (streams.worker.processing.decode); its answer, and the figures a
coordinator asks for, go back keyed by the order id (streams.worker.processing.emit)."""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from streams.domain import channel_ats
from streams.domain.network import Network
from streams.domain.order_sourcing import LineStock
from streams.domain.orders import (
    Command,
    Decide,
    Event,
    Order,
    OrderRequest,
    Tick,
)
from streams.domain.stock import SkuStock
from streams.kafka.topics import TopicRegistry
from streams.wire.order_records import (
    Step,
    command_step,
    figures_step,
    order_decision_record,
    order_from_state,
    order_state_record,
    tick_step,
)
from streams.wire.schemas import Schema
from streams.worker.ops import metrics
from streams.worker.ops.clock import now_ms
from streams.worker.processing.messages import Inbound
from streams.worker.processing.outputs import Outbox
from streams.worker.state.keys import order_key
from streams.worker.state.records import RecordEncoder, StockStore

# A tick not answered after this long (its order still undecided) is sent again.
TICK_RESEND_MS = 5_000
# At most this many orders' ticks per round, earliest deadline first.
MAX_TICKS_PER_ROUND = 10_000

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
    once that has passed (its coordinator then refuses it and releases its holds)."""

    def __init__(self, registry: TopicRegistry, encoder: RecordEncoder) -> None:
        self.registry, self.encode = registry, encoder.encode
        self._deadlines: dict[OrderId, int] = {}
        self._ticked: dict[OrderId, int] = {}

    def pending(self, order: OrderId, deadline: int) -> None:
        self._deadlines[order] = deadline

    def decided(self, order: OrderId) -> None:
        self._deadlines.pop(order, None)
        self._ticked.pop(order, None)

    def rebuild(self, undecided: Iterable[tuple[OrderId, int]]) -> None:
        """After a rebalance: the undecided orders of the partitions this worker now owns."""
        self._deadlines = dict(undecided)
        self._ticked.clear()

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
        return sent

    def __len__(self) -> int:
        return len(self._deadlines)


class Coordinator:
    """Applies a batch's work to each order and emits what that decides."""

    def __init__(self, registry: TopicRegistry, encoder: RecordEncoder, timer: OrderTimer) -> None:
        self.registry, self.encoder, self.timer = registry, encoder, timer
        self.codec = encoder.codec

    def load(self, store: StockStore, order: OrderId, partition: int) -> Order | None:
        raw = store.get_raw(order_key(*order), partition)
        if not raw:
            return None
        return order_from_state(self.codec.decode_stored(raw, Schema.ORDER_STATE)[1])

    def apply(self, order_id: OrderId, work: OrderWork, network: Network, store: StockStore, outbox: Outbox,
              now: int) -> None:
        """Every record is built (and may fail) before anything is written or sent."""
        order = self.load(store, order_id, work.partition)
        commands: list[Command] = []
        for event in work.events:
            if isinstance(event, OrderRequest):
                if order is None:
                    order, started = Order.start(event, now)
                    commands += started
                else:
                    commands += order.again(event, now)
            elif order is None:
                continue  # a step for an order not held here (never requested): a hold it placed lapses by itself
            else:
                commands += order.handle(event if event is not None else Tick(now), network, now)
        if order is None:
            return
        state = self.encoder.encode(Schema.ORDER_STATE, order_state_record(order))
        records = [self._record(command, order, now) for command in commands]
        store.put_raw(order_key(*order_id), state, work.partition)
        for topic, key, value in records:
            outbox.send(topic, key, value, None)
        if order.decision is None:
            outbox.on_commit(partial(self.timer.pending, order_id, order.deadline))
        else:
            outbox.on_commit(partial(self.timer.decided, order_id))
        for command in commands:
            if isinstance(command, Decide) and command.decision.order_id == order.request.order_id:
                outbox.on_commit(partial(_count_decision, command, order.requested_at))

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
        if channel is None:
            stock_seen = LineStock({}, 0)
        else:
            available = {location: p.available for location, p in stock.positions.items()
                         if location in channel.selling_locations and p.available > 0}
            stock_seen = LineStock(available, channel_ats(stock, channel))
        answers.append(figures_step(ask, stock_seen, now))
    return answers

