"""The batch pipeline of a worker, free of faust: decode, route, apply the domain, write each SKU once, emit.

The input reader (streams.inputs) hands it a batch of inbound messages, a `StockStore` (the table) and an
`Outbox` (the producer); everything a message causes is decided here, so it can be tested without a broker.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from streams import metrics
from streams.domain import (
    InvalidMovement,
    Kind,
    Movement,
    Network,
    Outcome,
    SkuStock,
    Status,
    StockRules,
    affected_channels,
    channel_ats,
)
from streams.domain.movements import SALES_SIDE, SUPPLY_SIDE
from streams.partitioning import sku_partition
from streams.records import (
    decision_record,
    figures,
    movement_from_record,
    movement_to_record,
    position_record,
    stock_from_record,
    stock_to_record,
)
from streams.serde import DecodeError, SingleObjectCodec
from streams.topics import TopicRegistry

MOVEMENT = "stocksync.Movement"
BATCH = "stocksync.MovementBatch"
STOCK = "stocksync.SkuStockState"
EXPIRY_RESEND_MS = 10_000


@dataclass(frozen=True, slots=True)
class Inbound:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int = 0


class Outbox(Protocol):
    def send(self, topic: str, key: bytes, value: bytes | None, partition: int | None = None) -> None: ...


class StockStore(Protocol):
    def get(self, sku: str, partition: int) -> bytes | None: ...

    def put(self, sku: str, value: bytes, partition: int) -> None: ...


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
    def __init__(self, registry: TopicRegistry, codec: SingleObjectCodec, rules: StockRules = StockRules(),
                 committed: Callable[[str, int], int | None] = lambda topic, partition: None) -> None:
        """`committed(topic, partition)`: the offset below which that partition's movements will not be read again
        (the worker's recorded input offsets; None if unknown)."""
        self.registry = registry
        self.committed = committed
        self.codec = codec
        self.rules = rules
        self.partitions = registry.partitions
        self.network = Network()
        self.network_version = -1
        self._channel_by_topic: dict[str, tuple[str, frozenset[Kind]]] = {}
        self._expiries: dict[str, list[tuple[int, str, str]]] = {}  # sku -> [(expires_at, channel, reservation)]
        self._expiry_requested: dict[tuple[str, str, str], int] = {}
        self._ats_sent_at: dict[tuple[str, str], int] = {}  # (channel, sku) -> last published, coalesced channels
        self._ats_held: dict[tuple[str, str], tuple[int, int, int, int]] = {}  # -> (ats, version, partition, due)

    # --- the network in force --------------------------------------------------------------------------------
    def set_network(self, network: Network, version: int) -> tuple[set[str], set[str]]:
        """Adopt a network; returns (channels added, channels whose ATS rules changed)."""
        old = self.network
        added = set(network.channels) - set(old.channels)
        changed = {ch for ch in network.channels if ch in old.channels and old.channels[ch] != network.channels[ch]}
        self.network, self.network_version = network, version
        self._channel_by_topic = {}
        for channel in network.channels:
            self._channel_by_topic[self.registry.sales(channel).name] = (channel, SALES_SIDE)
            self._channel_by_topic[self.registry.restock(channel).name] = (channel, SUPPLY_SIDE)
        metrics.NETWORK_VERSION.set(version)
        return added, changed

    def _committed_past(self, pending: dict[str, object]) -> bool:
        """True once the movement's source offset is below the committed one: it will not come again."""
        committed = self.committed(str(pending["source_topic"]), int(pending["source_partition"]))  # type: ignore[call-overload]
        return committed is not None and int(pending["source_offset"]) < committed  # type: ignore[call-overload]

    def input_topics(self) -> list[str]:
        return sorted(self._channel_by_topic)

    # --- the hot path ----------------------------------------------------------------------------------------
    def handle(self, batch: Sequence[Inbound], store: StockStore, outbox: Outbox, now: int | None = None
               ) -> BatchResult:
        now = now if now is not None else int(time.time() * 1000)
        result = BatchResult()
        work: dict[str, _Work] = {}
        for message in batch:
            self._decode(message, work, outbox, now, result)
        for sku, item in work.items():
            self._apply(sku, item, store, outbox, now, result)
        metrics.MESSAGES.inc(len(batch))
        metrics.BATCH_SIZE.observe(len(batch))
        return result

    def _decode(self, message: Inbound, work: dict[str, _Work], outbox: Outbox, now: int,
                result: BatchResult) -> None:
        route = self._channel_by_topic.get(message.topic)
        if route is None:
            self._dead_letter(outbox, message, None, "unknown_channel", f"no channel reads {message.topic}", now,
                              result)
            return
        channel, kinds = route
        try:
            name, record = self.codec.decode_as(message.value or b"", MOVEMENT, BATCH)
        except DecodeError as exc:
            self._dead_letter(outbox, message, channel, exc.reason, str(exc), now, result)
            return
        records = [record] if name == MOVEMENT else record["movements"]
        for index, raw in enumerate(records):
            position = None if name == MOVEMENT else index
            try:
                movement = movement_from_record(raw, channel)
            except InvalidMovement as exc:
                self._dead_letter(outbox, message, channel, "invalid_movement", str(exc), now, result, position)
                continue
            if movement.kind not in kinds:
                side = "sales" if movement.kind in SALES_SIDE else "restock"
                self._dead_letter(outbox, message, channel, "wrong_topic",
                                  f"a {movement.kind} belongs on the channel's {side} topic", now, result, position)
                continue
            partition = sku_partition(movement.sku, self.partitions)
            if partition != message.partition:
                # Packed by a client that hashed differently: send it on to where its SKU lives (same event id,
                # so a repeat is harmless).
                outbox.send(message.topic, movement.sku.encode(), self.codec.encode(MOVEMENT, raw), None)
                metrics.REROUTED.inc()
                result.rerouted += 1
                continue
            item = work.get(movement.sku)
            if item is None:
                item = work[movement.sku] = _Work(partition)
            item.movements.append(movement)
            item.sources.append((message, position))

    def _apply(self, sku: str, item: _Work, store: StockStore, outbox: Outbox, now: int,
               result: BatchResult) -> None:
        raw = store.get(sku, item.partition)
        record = self.codec.decode_as(raw, STOCK)[1] if raw else None
        stock = stock_from_record(record) if record else SkuStock(sku)
        unconfirmed: dict[str, dict[str, object]] = record["unconfirmed_ledger"] if record else {}
        before = SkuStock(sku, positions=dict(stock.positions))
        outcomes = stock.apply_all(item.movements, self.network, now, self.rules)
        result.outcomes += len(outcomes)
        changed: set[str] = set()  # positions this batch changed
        again: set[str] = set()  # positions a re-delivered movement acts on: published again, unchanged
        wrote = False
        key = sku.encode()
        for outcome, (message, index) in zip(outcomes, item.sources):
            metrics.MOVEMENTS.labels(outcome.status.value).inc()
            for anomaly in outcome.anomalies:
                metrics.ANOMALIES.labels(anomaly).inc()
            if outcome.status is Status.REJECTED:
                self._dead_letter(outbox, message, outcome.movement.channel, outcome.reason,
                                  _rejection_detail(outcome), now, result, index)
                continue
            changed |= {c.after.location for c in outcome.changes}
            again |= _locations_of(outcome, stock)
            if outcome.decision is not None:
                d = outcome.decision
                outbox.send(self.registry.replies(d.channel).name, key,
                            self.codec.encode("stocksync.ReservationDecision",
                                              decision_record(d, outcome.version, outcome.movement.event_id, now)),
                            item.partition)
            if outcome.status is Status.DUPLICATE:
                # Its ledger entry may not have reached the broker before a crash: send it again.
                pending = unconfirmed.get(outcome.movement.key)
                if pending is not None:
                    outbox.send(self.registry.ledger.name, key, pending["entry"], item.partition)  # type: ignore[arg-type]
                continue
            wrote = True
            entry = self.codec.encode("stocksync.LedgerEntry", _ledger(outcome, message, now))
            unconfirmed[outcome.movement.key] = {"entry": entry, "source_topic": message.topic,
                                                 "source_partition": message.partition,
                                                 "source_offset": message.offset}
            outbox.send(self.registry.ledger.name, key, entry, item.partition)
        if wrote:
            unconfirmed = {k: p for k, p in unconfirmed.items() if not self._committed_past(p)}
            store.put(sku, self.codec.encode(STOCK, {**stock_to_record(stock), "unconfirmed_ledger": unconfirmed}),
                      item.partition)
            result.skus_written += 1
            self._index_expiries(stock)
        touched = changed | again
        for location in sorted(touched):
            outbox.send(self.registry.positions.name, f"{sku}|{location}".encode(),
                        self.codec.encode("stocksync.PositionState", position_record(stock.position(location), now)),
                        item.partition)
        republish = affected_channels(self.network, again)
        for channel_id in sorted(affected_channels(self.network, touched)):
            channel = self.network.channels[channel_id]
            ats = channel_ats(stock, channel)
            if channel_id in republish or ats != channel_ats(before, channel):
                self._send_ats(outbox, channel_id, sku, ats, stock.version, item.partition, now)

    def _send_ats(self, outbox: Outbox, channel: str, sku: str, ats: int, version: int, partition: int,
                  now: int) -> None:
        """Publish a channel's ATS, or hold it back while the channel's `coalesce_ms` since the last update of the
        SKU has not passed (rate-limited marketplaces). A drop to zero is never held back."""
        window = self.network.channels[channel].coalesce_ms if channel in self.network.channels else 0
        key = (channel, sku)
        if window and ats > 0:
            last = self._ats_sent_at.get(key)
            if last is not None and now - last < window:
                self._ats_held[key] = (ats, version, partition, last + window)
                return
        self._ats_held.pop(key, None)
        if window:
            self._ats_sent_at[key] = now
        outbox.send(self.registry.ats(channel).name, sku.encode(),
                    self.codec.encode("stocksync.AtsUpdate", {
                        "channel": channel, "sku": sku, "ats": ats, "version": version,
                        "network_version": self.network_version, "updated_at": now}), partition)

    def release_held_ats(self, outbox: Outbox, now: int | None = None, everything: bool = False) -> int:
        """Publish the held-back ATS updates that are due (all of them with `everything`, e.g. before this
        worker gives up partitions); returns how many."""
        now = now if now is not None else int(time.time() * 1000)
        due = [(key, held) for key, held in self._ats_held.items() if everything or held[3] <= now]
        for (channel, sku), (ats, version, partition, _) in due:
            del self._ats_held[(channel, sku)]
            self._ats_sent_at.pop((channel, sku), None)
            self._send_ats(outbox, channel, sku, ats, version, partition, now)
        for key, sent_at in list(self._ats_sent_at.items()):  # forget what no longer holds anything back
            window = self.network.channels[key[0]].coalesce_ms if key[0] in self.network.channels else 0
            if now - sent_at >= window and key not in self._ats_held:
                del self._ats_sent_at[key]
        return len(due)

    def coalesced_channels(self) -> set[str]:
        return {ch.id for ch in self.network.channels.values() if ch.coalesce_ms}

    def republish_ats(self, stocks: Iterable[SkuStock], channels: Iterable[str], outbox: Outbox,
                      now: int | None = None) -> int:
        """Publish the ATS of `channels` for every given SKU (after a channel was added or its rules changed)."""
        now = now if now is not None else int(time.time() * 1000)
        wanted = [self.network.channels[ch] for ch in channels if ch in self.network.channels]
        sent = 0
        for stock in stocks:
            partition = sku_partition(stock.sku, self.partitions)
            for channel in wanted:
                self._send_ats(outbox, channel.id, stock.sku, channel_ats(stock, channel), stock.version,
                               partition, now)
                sent += 1
        return sent

    def dead_letter_batch(self, batch: Sequence[Inbound], outbox: Outbox, reason: str, detail: str) -> None:
        """Send every message of a batch to the dead-letter topic (a batch whose handling failed unexpectedly)."""
        now = int(time.time() * 1000)
        for message in batch:
            self._dead_letter(outbox, message, None, reason, detail, now, BatchResult())

    def _dead_letter(self, outbox: Outbox, message: Inbound, channel: str | None, reason: str, detail: str,
                     now: int, result: BatchResult, index: int | None = None) -> None:
        metrics.DEAD_LETTERS.labels(reason).inc()
        result.dead_letters += 1
        outbox.send(self.registry.deadletter.name, message.key or b"", self.codec.encode("stocksync.DeadLetter", {
            "reason": reason, "detail": detail, "channel": channel, "source_topic": message.topic,
            "source_partition": message.partition, "source_offset": message.offset, "movement_index": index,
            "key": message.key, "value": message.value, "failed_at": now}), None)

    # --- reservation expiry ----------------------------------------------------------------------------------
    def _index_expiries(self, stock: SkuStock) -> None:
        if stock.reservations:
            self._expiries[stock.sku] = sorted((r.expires_at, r.channel, r.reservation_id)
                                               for r in stock.reservations.values())
        else:
            self._expiries.pop(stock.sku, None)

    def rebuild_expiries(self, stocks: Iterable[SkuStock]) -> None:
        """After a rebalance: index the open reservations of the SKUs this worker now owns."""
        self._expiries.clear()
        self._expiry_requested.clear()
        for stock in stocks:
            self._index_expiries(stock)

    def request_expiries(self, outbox: Outbox, now: int | None = None) -> int:
        """Send an expiry movement for every lapsed hold to its channel's sales topic (where the owner applies
        it like any movement). Re-sent after a while until applied; a repeat is a harmless duplicate."""
        now = now if now is not None else int(time.time() * 1000)
        due = heapq.nsmallest(10_000, ((entries[0][0], sku) for sku, entries in self._expiries.items()
                                       if entries[0][0] <= now))
        sent = 0
        for _, sku in due:
            for expires_at, channel, reservation_id in self._expiries[sku]:
                if expires_at > now:
                    break
                requested = self._expiry_requested.get((sku, channel, reservation_id))
                if requested is not None and now - requested < EXPIRY_RESEND_MS:
                    continue
                if channel not in self.network.channels:
                    continue
                movement = Movement(Kind.RESERVATION_EXPIRED, f"expired:{reservation_id}", channel, sku, None, 0,
                                    expires_at, reservation_id=reservation_id)
                outbox.send(self.registry.sales(channel).name, sku.encode(),
                            self.codec.encode(MOVEMENT, movement_to_record(movement)), None)
                self._expiry_requested[(sku, channel, reservation_id)] = now
                sent += 1
        return sent


def _locations_of(outcome: Outcome, stock: SkuStock) -> set[str]:
    """Where a re-delivered movement acts, so its positions and ATS are published again."""
    if outcome.status is not Status.DUPLICATE:
        return set()
    m = outcome.movement
    found = {loc for loc in (m.location, m.other_location) if loc}
    if outcome.decision is not None:
        found |= {loc for loc, _ in outcome.decision.parts}
    return {loc for loc in found if loc in stock.positions}


def _rejection_detail(outcome: Outcome) -> str:
    m = outcome.movement
    return {
        "unknown_location": f"location {m.location!r} (or {m.other_location!r}) is not in the network",
        "location_not_owned": f"channel {m.channel!r} does not own location {m.location!r}",
        "unknown_channel": f"channel {m.channel!r} is not in the network",
        "too_late": f"occurred_at {m.occurred_at} is at or before the SKU's horizon floor",
        "from_future": f"occurred_at {m.occurred_at} is ahead of the worker's clock beyond the tolerated skew",
    }.get(outcome.reason, outcome.reason)


def _ledger(outcome: Outcome, message: Inbound, now: int) -> dict[str, object]:
    m = outcome.movement
    return {"sku": m.sku, "channel": m.channel, "event_id": m.event_id, "kind": m.kind.value,
            "status": outcome.status.value, "reason": outcome.reason, "anomalies": list(outcome.anomalies),
            "changes": [{"location": c.after.location, "before": figures(c.before), "after": figures(c.after)}
                        for c in outcome.changes],
            "version": outcome.version, "occurred_at": m.occurred_at, "applied_at": now,
            "source_topic": message.topic, "source_partition": message.partition,
            "source_offset": message.offset}
