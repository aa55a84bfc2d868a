"""The batch pipeline of a worker, free of faust: decode, route, apply the domain, write each SKU once, emit.

The batch unit of work (streams.worker.flow.batch) hands it a batch of inbound messages, a `StockStore` (the table)
and an `Outbox` (the producer); everything a message causes is decided here, so it can be tested without a
broker. The channels' ATS goes through the AtsPublisher (coalescing) and open holds are indexed for expiry.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from streams.domain import (
    InvalidMovement,
    Movement,
    Network,
    Outcome,
    SkuStock,
    Status,
    StockRules,
    affected_channels,
    channel_ats,
)
from streams.domain.catalog import Catalog
from streams.domain.demand import RecentSales
from streams.domain.movements import SALES_SIDE, WORKER_EVENT_PREFIX, WORKER_MADE, Kind, channel_of_expiry
from streams.domain.stock import MAX_ON_HAND, Reservation
from streams.domain.transfers import transfer_suggestions
from streams.kafka.topics import TopicRegistry
from streams.settings import DEFAULT_MAX_RECORD_BYTES
from streams.wire.codec import DecodeError, SingleObjectCodec
from streams.wire.partitioner import sku_partition
from streams.wire.records import (
    decision_record,
    figures,
    movement_from_record,
    position_record,
    suggestion_record,
)
from streams.wire.schemas import Schema
from streams.worker.ops import metrics
from streams.worker.ops.clock import now_ms
from streams.worker.ops.logs import input_fields, movement_fields
from streams.worker.processing.ats import AtsPublisher
from streams.worker.processing.expiry import ExpiryScheduler
from streams.worker.processing.outputs import Outbox, OutputRecord
from streams.worker.reference.network_in_force import NetworkInForce
from streams.worker.state.records import RecordTooLarge, StockStore, TableRecords

log = logging.getLogger("stocksync.worker")
deadletter_log = logging.getLogger("stocksync.deadletters")

CLOSING_KINDS = frozenset({Kind.RESERVATION_RELEASED, Kind.RESERVATION_FULFILLED, Kind.RESERVATION_EXPIRED})


# A best-seller's movements in one batch are applied this many at a time (each step reads what the one before
# wrote), so that its worker's other tasks run in between; still one write of its head per step, not per movement.
SKU_STEP = 500

# A dead letter's fields other than the input's key and value take at most this much (detail, topic, ...).
DEAD_LETTER_OVERHEAD = 8 * 1024
MAX_DETAIL = 2_000
MAX_DEAD_LETTER_KEY = 1_024


@dataclass(frozen=True, slots=True)
class Inbound:
    """One input message as read: where it came from, its key and value, and its broker timestamp."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int = 0


@dataclass
class BatchResult:
    outcomes: int = 0
    dead_letters: int = 0
    rerouted: int = 0
    skus_written: int = 0


@dataclass
class _Work:
    """The movements of one SKU in a batch, with where each came from."""

    partition: int
    movements: list[Movement] = field(default_factory=list)
    sources: list[tuple[Inbound, int | None]] = field(default_factory=list)


class Pipeline:
    """Turns a batch of input messages into state writes (one per SKU) and output records."""

    def __init__(self, registry: TopicRegistry, codec: SingleObjectCodec, network: NetworkInForce,
                 ats: AtsPublisher, expiries: ExpiryScheduler, rules: StockRules | None = None,
                 max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES, catalog: Catalog | None = None) -> None:
        self.registry = registry
        self.codec = codec
        self.network = network
        self.ats = ats
        self.expiries = expiries
        self.rules = rules or StockRules()
        self.partitions = registry.partitions
        self.max_record_bytes = max_record_bytes
        self.catalog = catalog if catalog is not None else Catalog()  # the aliases products may be named by

    # --- the hot path ----------------------------------------------------------------------------------------
    def handle(self, batch: Sequence[Inbound], store: StockStore, outbox: Outbox, now: int | None = None
               ) -> BatchResult:
        result = BatchResult()
        for _ in self.steps(batch, store, outbox, result, now):
            pass
        return result

    def steps(self, batch: Sequence[Inbound], store: StockStore, outbox: Outbox, result: BatchResult,
              now: int | None = None) -> Iterator[None]:
        """`handle`, one step per message decoded and per SKU applied: a worker's event loop runs its other tasks
        (the API, /ready, timers waiting for the batch) between steps instead of waiting for the whole batch."""
        now = now if now is not None else now_ms()
        work: dict[str, _Work] = {}  # per SKU, its movements not yet in a full step
        steps: list[tuple[str, _Work]] = []  # in order: a SKU's steps are applied one after the other
        for message in batch:
            self._decode(message, work, steps, outbox, now, result)
            yield
        for sku, item in steps:
            try:
                self._apply(sku, item, store, outbox, now, result)
            except Exception as exc:  # noqa: BLE001 - one SKU's failure never sinks the batch or stops the worker
                self._isolate(sku, item, exc, outbox, now, result)
            yield
        outbox.on_commit(partial(_count_batch, len(batch)))

    def _decode(self, message: Inbound, work: dict[str, _Work], steps: list[tuple[str, _Work]], outbox: Outbox,
                now: int, result: BatchResult) -> None:
        route = self.network.route(message.topic)
        if route is None:
            self._dead_letter(outbox, message, None, "unknown_channel", f"no channel reads {message.topic}", now,
                              result)
            return
        try:
            name, record = self.codec.decode_as(message.value or b"", Schema.MOVEMENT, Schema.MOVEMENT_BATCH)
        except DecodeError as exc:
            self._dead_letter(outbox, message, route.channel, exc.reason, str(exc), now, result)
            return
        records = [record] if name == Schema.MOVEMENT else record["movements"]
        for index, raw in enumerate(records):
            position = None if name == Schema.MOVEMENT else index
            channel = route.channel or channel_of_expiry(str(raw["event_id"]))
            if channel is None:
                self._dead_letter(outbox, message, None, "invalid_movement",
                                  f"event_id: {raw['event_id']!r} names no channel's hold", now, result, position,
                                  str(raw["event_id"]))
                continue
            alias = raw.get("alias")
            if not raw["sku"] and alias:  # named by the channel's own identifier: the catalog says which SKU
                sku = self.catalog.resolve(channel, str(alias))
                if sku is None:
                    self._dead_letter(outbox, message, channel, "unknown_alias",
                                      f"alias {alias!r}: no catalog entry of {channel} or of every channel",
                                      now, result, position, str(raw.get("event_id")))
                    continue
                raw = {**raw, "sku": sku}
            try:
                movement = movement_from_record(raw, channel)
            except InvalidMovement as exc:
                self._dead_letter(outbox, message, channel, "invalid_movement", str(exc), now, result, position,
                                  str(raw.get("event_id")))
                continue
            if movement.event_id.startswith(WORKER_EVENT_PREFIX) != route.made_by_worker:
                self._dead_letter(outbox, message, channel, "invalid_movement",
                                  f"event_id: {movement.event_id!r}: only the workers' own movements, and all of "
                                  f"them, start with {WORKER_EVENT_PREFIX!r}", now, result, position,
                                  movement.event_id)
                continue
            if movement.kind not in route.kinds:
                self._dead_letter(outbox, message, channel, "wrong_topic", _wrong_topic(movement.kind), now, result,
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
            item = work.get(movement.sku)
            if item is None or len(item.movements) >= SKU_STEP:
                item = work[movement.sku] = _Work(partition)
                steps.append((movement.sku, item))
            item.movements.append(movement)
            item.sources.append((message, position))

    def _apply(self, sku: str, item: _Work, store: StockStore, outbox: Outbox, now: int,
               result: BatchResult) -> None:
        """Apply one SKU's movements. Every record is built (and may fail) before anything is counted, sent or
        written, so a SKU that fails leaves no trace but its dead letters."""
        records = TableRecords(store, sku, item.partition, self.codec, self.max_record_bytes)
        stock, converted = records.load(self.rules.horizon_ms // 64)
        network = self.network.network
        # What the batch changed is told against this (the sales rate only matters to stock levels in days).
        before = SkuStock(sku, positions=dict(stock.positions),
                          sales=stock.sales.copy() if network.levels_in_days else RecentSales())
        outcomes = stock.apply_all(item.movements, network, now, self.rules)
        changed: set[str] = set()  # positions this batch changed
        again: set[str] = set()  # positions a re-delivered movement acts on: published again, unchanged
        rejected: list[tuple[Outcome, Inbound, int | None]] = []
        records_out: list[OutputRecord] = []
        holds: list[Callable[[], None]] = []  # the expiry index follows the committed holds
        key = sku.encode()
        for outcome, (message, index) in zip(outcomes, item.sources, strict=True):
            if outcome.status is Status.REJECTED:
                rejected.append((outcome, message, index))
                continue
            changed |= {c.after.location for c in outcome.changes}
            again |= _locations_of(outcome, stock)
            if outcome.decision is not None:
                d = outcome.decision
                records_out.append((self.registry.replies(d.channel).name, key, self._encode(
                    Schema.RESERVATION_DECISION, decision_record(d, outcome.version, outcome.movement.event_id, now,
                                                                 outcome.movement.alias)),
                    item.partition))
            if outcome.status is Status.DUPLICATE:
                continue  # its ledger entry was committed with the state that remembers it
            holds += self._hold_changes(sku, outcome)
            records_out.append((self.registry.ledger.name, key,
                                self._encode(Schema.LEDGER_ENTRY, _ledger(outcome, message, now)), item.partition))
        if converted or records.changed:  # every movement applied is remembered: a history record changed
            records.save(stock)
        touched = changed | again
        for location in sorted(touched):
            records_out.append((self.registry.positions.name, f"{sku}|{location}".encode(), self._encode(
                Schema.POSITION_STATE, position_record(stock.position(location), now)), item.partition))
        if changed:
            records_out += self._suggestion_changes(network, before, stock, item.partition, now)
        # Every record is built: from here on nothing fails.
        result.outcomes += len(outcomes)
        outbox.on_commit(partial(_count_outcomes, outcomes))
        for outcome, message, index in rejected:
            self._dead_letter(outbox, message, outcome.movement.channel, outcome.reason, _rejection_detail(outcome),
                              now, result, index, outcome.movement.event_id)
        for topic, record_key, value, partition in records_out:
            outbox.send(topic, record_key, value, partition)
        written = records.write_to(store)
        if written:
            result.skus_written += 1
            outbox.on_commit(partial(metrics.STATE_RECORDS.observe, written))
        for change in holds:
            outbox.on_commit(change)
        republish = affected_channels(network, again)
        for channel_id in sorted(affected_channels(network, touched)):
            channel = network.channels[channel_id]
            ats = channel_ats(stock, channel)
            if channel_id in republish or ats != channel_ats(before, channel):
                self.ats.publish(outbox, channel_id, sku, ats, stock.version, item.partition, now)

    def _suggestion_changes(self, network: Network, before: SkuStock, after: SkuStock, partition: int, now: int
                            ) -> list[OutputRecord]:
        """The transfer suggestions this batch made, changed or withdrew (a tombstone) for the SKU."""
        old, new = transfer_suggestions(before, network), transfer_suggestions(after, network)
        out: list[OutputRecord] = []
        for destination in sorted(old.keys() | new.keys()):
            if old.get(destination) == new.get(destination):
                continue
            suggestion = new.get(destination)
            value = None if suggestion is None else self._encode(
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
            return [partial(self.expiries.ended, sku, m.channel, m.reservation_id)]
        return []

    def _isolate(self, sku: str, item: _Work, exc: Exception, outbox: Outbox, now: int,
                 result: BatchResult) -> None:
        """Dead-letter every movement of a SKU whose records could not be built; the batch goes on without it."""
        if isinstance(exc, RecordTooLarge):
            reason, detail = "record_too_large", f"{sku}: {exc}"
            log.error("%s: dead-lettering its %d movements in this batch: %s", sku, len(item.movements), exc,
                      extra={"sku": sku})
        else:
            reason, detail = "internal_error", f"{sku}: {exc!r}"
            log.error("%s: applying its %d movements failed; dead-lettering them", sku, len(item.movements),
                      exc_info=exc, extra={"sku": sku})
        for movement, (message, index) in zip(item.movements, item.sources, strict=True):
            self._dead_letter(outbox, message, movement.channel, reason, detail, now, result, index, movement.event_id)

    def _encode(self, schema: Schema, record: Mapping[str, Any]) -> bytes:
        """A record this worker writes; RecordTooLarge past the limit (the broker would refuse it for good)."""
        data = self.codec.encode(schema, record)
        if len(data) > self.max_record_bytes:
            raise RecordTooLarge(schema.value, len(data), self.max_record_bytes)
        return data

    def dead_letter_batch(self, batch: Sequence[Inbound], outbox: Outbox, reason: str, detail: str) -> None:
        """Send every message of a batch to the dead-letter topic (a batch whose handling failed unexpectedly)."""
        now = now_ms()
        for message in batch:
            self._dead_letter(outbox, message, None, reason, detail, now, BatchResult())

    def _dead_letter(self, outbox: Outbox, message: Inbound, channel: str | None, reason: str, detail: str,
                     now: int, result: BatchResult, index: int | None = None, event_id: str | None = None) -> None:
        """Send the message (or one movement of it: `index`, `event_id`) to the dead-letter topic with its reason.
        An input too large to carry whole keeps its first bytes; the original stays at its topic, partition and
        offset. Once committed it is counted and logged (a flood of them: one line per 10 s, with a count)."""
        fields = {**input_fields(message.topic, message.partition, message.offset, message.key),
                  **movement_fields(None, channel, event_id), "reason": reason}
        outbox.on_commit(metrics.DEAD_LETTERS.labels(reason, channel or "").inc)
        outbox.on_commit(partial(deadletter_log.warning, "dead-lettered: %s", detail[:300], extra=fields))
        result.dead_letters += 1
        key, value = message.key, message.value
        room = self.max_record_bytes - DEAD_LETTER_OVERHEAD
        if len(key or b"") + len(value or b"") > room:
            detail = (f"{detail} (input of {len(key or b'') + len(value or b'')} bytes cut to fit; the original is at "
                      f"{message.topic}/{message.partition}/{message.offset})")
            key = key[:MAX_DEAD_LETTER_KEY] if key is not None else None
            value = value[:room - len(key or b"")] if value is not None else None
        outbox.send(self.registry.deadletter.name, key or b"", self.codec.encode(Schema.DEAD_LETTER, {
            "reason": reason, "detail": detail[:MAX_DETAIL], "channel": channel, "source_topic": message.topic,
            "source_partition": message.partition, "source_offset": message.offset, "movement_index": index,
            "key": key, "value": value, "failed_at": now}), None)


def _locations_of(outcome: Outcome, stock: SkuStock) -> set[str]:
    """Where a re-delivered movement acts, so its positions and ATS are published again."""
    if outcome.status is not Status.DUPLICATE:
        return set()
    m = outcome.movement
    found = {loc for loc in (m.location, m.other_location) if loc}
    if outcome.decision is not None:
        found |= {loc for loc, _ in outcome.decision.parts}
    return {loc for loc in found if loc in stock.positions}


def _wrong_topic(kind: Kind) -> str:
    if kind in WORKER_MADE:
        return f"a {kind} is made by stocksync only, when a hold lapses"
    return f"a {kind} belongs on the channel's {'sales' if kind in SALES_SIDE else 'restock'} topic"


def _rejection_detail(outcome: Outcome) -> str:
    m = outcome.movement
    return {
        "unknown_location": f"location {m.location!r} (or {m.other_location!r}) is not in the network",
        "location_not_owned": f"channel {m.channel!r} does not own location {m.location!r}",
        "unknown_channel": f"channel {m.channel!r} is not in the network",
        "too_late": f"occurred_at {m.occurred_at} is at or before the SKU's horizon floor",
        "from_future": f"occurred_at {m.occurred_at} is ahead of the worker's clock beyond the tolerated skew",
        "out_of_range": f"on_hand at {m.location!r} would leave the range of +-{MAX_ON_HAND:,} units",
    }.get(outcome.reason, outcome.reason)


def _ledger(outcome: Outcome, message: Inbound, now: int) -> dict[str, Any]:
    m = outcome.movement
    return {"sku": m.sku, "channel": m.channel, "event_id": m.event_id, "kind": m.kind.value,
            "status": outcome.status.value, "reason": outcome.reason, "anomalies": list(outcome.anomalies),
            "changes": [{"location": c.after.location, "before": figures(c.before), "after": figures(c.after)}
                        for c in outcome.changes],
            "version": outcome.version, "occurred_at": m.occurred_at, "applied_at": now,
            "source_topic": message.topic, "source_partition": message.partition,
            "source_offset": message.offset}


def _count_batch(messages: int) -> None:
    metrics.MESSAGES.inc(messages)
    metrics.BATCH_SIZE.observe(messages)


def _count_outcomes(outcomes: Sequence[Outcome]) -> None:
    # Counted per label set, not per movement: a metric's label lookup costs more than the increment.
    movements = Counter((o.movement.kind.value, o.movement.channel, o.status.value) for o in outcomes)
    for labels, count in movements.items():
        metrics.MOVEMENTS.labels(*labels).inc(count)
    for anomaly, count in Counter(a for o in outcomes for a in o.anomalies).items():
        metrics.ANOMALIES.labels(anomaly).inc(count)
