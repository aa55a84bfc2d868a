"""The last step for a SKU: what the domain decided, turned into output records (reservation decisions, ledger
entries, positions, transfer suggestions, ATS updates) and the bookkeeping that follows them once committed.
Every record is built (and may fail, RecordTooLarge) before anything is sent."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from streams.domain import Network, Outcome, SkuStock, Status, affected_channels, channel_ats
from streams.domain.ats import line_figures
from streams.domain.movements import SELLABLE, STATE_KINDS, WRITTEN_OFF, Kind
from streams.domain.orders import ORDER_EVENT_PREFIX, hold_step, placed_hold
from streams.domain.stock import MAX_ON_HAND, Reservation, ReservationDecision
from streams.domain.transfers import transfer_suggestions
from streams.kafka.topics import TopicRegistry
from streams.wire.order_records import hold_answer_step
from streams.wire.records import decision_record, figures, position_record, suggestion_record
from streams.wire.schemas import Schema
from streams.worker.ops import metrics
from streams.worker.processing.ats import AtsPublisher
from streams.worker.processing.decode import SkuWork
from streams.worker.processing.expiry import ExpiryScheduler
from streams.worker.processing.messages import Inbound
from streams.worker.processing.orders import StepPacker
from streams.worker.processing.outputs import Outbox, OutputRecord
from streams.worker.state.records import RecordEncoder

CLOSING_KINDS = frozenset({Kind.RESERVATION_RELEASED, Kind.RESERVATION_FULFILLED, Kind.RESERVATION_EXPIRED})


@dataclass
class SkuOutputs:
    """What one SKU's step emits, built in full before any of it is sent."""

    records: list[OutputRecord] = field(default_factory=list)
    rejected: list[tuple[Outcome, Inbound, int | None]] = field(default_factory=list)
    holds: list[Callable[[], None]] = field(default_factory=list)  # the expiry index follows the committed holds
    changed: set[str] = field(default_factory=set)  # positions this step changed
    again: set[str] = field(default_factory=set)  # positions a re-delivered movement acts on: published again


class Emitter:
    def __init__(self, registry: TopicRegistry, encoder: RecordEncoder, ats: AtsPublisher,
                 expiries: ExpiryScheduler) -> None:
        self.registry, self.encode, self.ats, self.expiries = registry, encoder.encode, ats, expiries

    def build(self, sku: str, item: SkuWork, outcomes: Sequence[Outcome], network: Network, before: SkuStock,
              stock: SkuStock, now: int) -> SkuOutputs:
        """Every record the step's outcomes cause (the dead letters of the rejected ones are left to the caller)."""
        out = SkuOutputs()
        key = sku.encode()
        for outcome, (message, index) in zip(outcomes, item.sources, strict=True):
            if outcome.status is Status.REJECTED:
                out.rejected.append((outcome, message, index))
                continue
            out.changed |= {c.after.location for c in outcome.changes}
            out.again |= _locations_of(outcome, stock)
            if outcome.decision is not None:
                out.records += self._decision(outcome, outcome.decision, key, item.partition, now, network, stock)
            if outcome.status is Status.DUPLICATE:
                continue  # its ledger entry was committed with the state that remembers it
            out.holds += self._hold_changes(sku, outcome)
            out.records.append((self.registry.ledger.name, key,
                                self.encode(Schema.LEDGER_ENTRY, _ledger(outcome, message, now)), item.partition))
        for location in sorted(out.changed | out.again):
            out.records.append((self.registry.positions.name, f"{sku}|{location}".encode(), self.encode(
                Schema.POSITION_STATE, position_record(stock.position(location), now)), item.partition))
        if out.changed:
            out.records += self._suggestion_changes(network, before, stock, item.partition, now)
        return out

    def _decision(self, outcome: Outcome, d: ReservationDecision, key: bytes, partition: int, now: int,
                  network: Network, stock: SkuStock) -> list[OutputRecord]:
        """A reservation's decision on its channel's replies topic; an order's hold is answered to the order's
        coordinator instead (its confirmation and release need no answer), a sourced one with the line's figures
        as they are after the SKU's step."""
        m = outcome.movement
        if not m.event_id.startswith(ORDER_EVENT_PREFIX):
            return [(self.registry.replies(d.channel).name, key, self.encode(
                Schema.RESERVATION_DECISION, decision_record(d, outcome.version, m.event_id, now, m.alias)),
                partition)]
        order = placed_hold(m)
        if order is None:
            return []
        channel = network.channels.get(d.channel)
        figures = line_figures(stock, channel) if channel is not None and hold_step(m) == "source" else None
        step_key, record = hold_answer_step(order[0], d.channel, order[1], d.reservation_id, d.accepted, d.reason,
                                            now, d.parts, figures)
        return [(self.registry.order_steps.name, step_key.encode(), self.encode(Schema.ORDER_STEP, record), None)]

    def send(self, out: SkuOutputs, outbox: Outbox, steps: StepPacker) -> None:
        """Every record to the outbox, but the answers to orders' coordinators: to `steps`, which packs them."""
        for topic, record_key, value, partition in out.records:
            if topic == steps.topic and value is not None:
                steps.add(record_key, value)
            else:
                outbox.send(topic, record_key, value, partition)

    def publish_ats(self, out: SkuOutputs, network: Network, before: SkuStock, stock: SkuStock, partition: int,
                    outbox: Outbox, now: int) -> None:
        """The ATS of every channel the step touched that changed (or that a re-delivery asks for again)."""
        republish = affected_channels(network, out.again)
        for channel_id in sorted(affected_channels(network, out.changed | out.again)):
            channel = network.channels[channel_id]
            ats = channel_ats(stock, channel)
            if channel_id in republish or ats != channel_ats(before, channel):
                self.ats.publish(outbox, channel_id, stock.sku, ats, stock.version, partition, now)

    def _suggestion_changes(self, network: Network, before: SkuStock, after: SkuStock, partition: int, now: int
                            ) -> list[OutputRecord]:
        """The transfer suggestions this batch made, changed or withdrew (a tombstone) for the SKU."""
        old, new = transfer_suggestions(before, network), transfer_suggestions(after, network)
        out: list[OutputRecord] = []
        for destination in sorted(old.keys() | new.keys()):
            if old.get(destination) == new.get(destination):
                continue
            suggestion = new.get(destination)
            value = None if suggestion is None else self.encode(
                Schema.TRANSFER_SUGGESTION, suggestion_record(suggestion, after.version, now))
            out.append((self.registry.transfer_suggestions.name, f"{after.sku}|{destination}".encode(), value,
                        partition))
        return out

    def _hold_changes(self, sku: str, outcome: Outcome) -> list[Callable[[], None]]:
        """How the expiry index must follow an applied movement: a hold placed or ended."""
        m = outcome.movement
        if m.kind is Kind.RESERVATION_PLACED and outcome.status is Status.APPLIED and outcome.decision is not None:
            d = outcome.decision
            assert d.expires_at is not None
            return [partial(self.expiries.held, sku, Reservation(d.channel, d.reservation_id, d.parts,
                                                                 d.expires_at, m.occurred_at))]
        if m.kind in CLOSING_KINDS and m.reservation_id is not None:
            lapsed_at = m.occurred_at if m.kind is Kind.RESERVATION_EXPIRED else None
            return [partial(self.expiries.ended, sku, m.channel, m.reservation_id, lapsed_at)]
        return []


def _locations_of(outcome: Outcome, stock: SkuStock) -> set[str]:
    """Where a re-delivered movement acts, so its positions and ATS are published again."""
    if outcome.status is not Status.DUPLICATE:
        return set()
    m = outcome.movement
    found = {loc for loc in (m.location, m.other_location) if loc}
    if outcome.decision is not None:
        found |= {loc for loc, _ in outcome.decision.parts}
    return {loc for loc in found if loc in stock.positions}


def rejection_detail(outcome: Outcome) -> str:
    m = outcome.movement
    return {
        "unknown_location": f"location {m.location!r} (or {m.other_location!r}) is not in the network",
        "location_not_owned": f"channel {m.channel!r} does not own location {m.location!r}",
        "unknown_channel": f"channel {m.channel!r} is not in the network",
        "too_late": f"occurred_at {m.occurred_at} is at or before the SKU's horizon floor",
        "from_future": f"occurred_at {m.occurred_at} is ahead of the worker's clock beyond the tolerated skew",
        "out_of_range": f"on_hand at {m.location!r} would leave the range of +-{MAX_ON_HAND:,} units",
        "insufficient_in_state": f"{', '.join(state for state, units in m.state_deltas if units < 0)} at "
                                 f"{m.location!r} holds fewer than the {m.quantity} units that would leave it",
    }.get(outcome.reason, outcome.reason)


def _ledger(outcome: Outcome, message: Inbound, now: int) -> dict[str, Any]:
    m = outcome.movement
    return {"sku": m.sku, "channel": m.channel, "event_id": m.event_id, "kind": m.kind.value,
            "status": outcome.status.value, "reason": outcome.reason or _why(outcome),
            "anomalies": list(outcome.anomalies),
            "changes": [{"location": c.after.location, "before": figures(c.before), "after": figures(c.after)}
                        for c in outcome.changes],
            "version": outcome.version, "occurred_at": m.occurred_at, "applied_at": now,
            "source_topic": message.topic, "source_partition": message.partition,
            "source_offset": message.offset}


def _why(outcome: Outcome) -> str:
    """For an applied adjustment, state change or return: the reason it gave (on the ledger, where a write-off's
    or a damaged return's units are accounted for)."""
    m = outcome.movement
    if m.kind in STATE_KINDS and outcome.status is Status.APPLIED:
        return m.reason
    return ""


def count_outcomes(outcomes: Sequence[Outcome]) -> None:
    # Counted per label set, not per movement: a metric's label lookup costs more than the increment.
    movements = Counter((o.movement.kind.value, o.movement.channel, o.status.value) for o in outcomes)
    for labels, count in movements.items():
        metrics.MOVEMENTS.labels(*labels).inc(count)
    for anomaly, count in Counter(a for o in outcomes for a in o.anomalies).items():
        metrics.ANOMALIES.labels(anomaly).inc(count)
    for o in outcomes:
        m = o.movement
        if o.status is not Status.APPLIED or m.kind not in STATE_KINDS:
            continue
        if m.kind is Kind.RETURN:
            metrics.RETURNED_UNITS.labels(m.channel, m.returned_via or "unknown", m.returned_to).inc(m.quantity)
        elif m.to_state == WRITTEN_OFF:
            metrics.WRITTEN_OFF_UNITS.labels(m.state or SELLABLE, m.reason).inc(m.quantity)

