"""The batch pipeline of a worker, free of faust: decode, apply the domain, write each SKU once, emit.

The batch unit of work (streams.worker.flow.batch) hands it a batch of inbound messages, a `StockStore` (the table)
and an `Outbox` (the producer); everything a message causes is decided here, so it can be tested without a
broker. Its steps: the Decoder turns messages into each SKU's movements (streams.worker.processing.decode); per
SKU the domain applies them to its records (streams.worker.state.records); the Emitter builds every output
(streams.worker.processing.emit), the channels' ATS through the AtsPublisher (coalescing), and open holds are
indexed for expiry. What cannot be applied goes to the dead-letter topic (streams.worker.processing.deadletters).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from functools import partial

from streams.domain import SkuStock, StockRules
from streams.domain.catalog import Catalog
from streams.domain.demand import RecentSales
from streams.domain.orders import DECISION_MS
from streams.kafka.topics import TopicRegistry
from streams.settings import DEFAULT_MAX_RECORD_BYTES
from streams.wire.codec import SingleObjectCodec
from streams.wire.schemas import Schema
from streams.worker.ops import metrics
from streams.worker.ops.clock import now_ms
from streams.worker.processing.ats import AtsPublisher
from streams.worker.processing.deadletters import DeadLetters
from streams.worker.processing.decode import Decoded, Decoder, SkuWork
from streams.worker.processing.emit import Emitter, count_outcomes, rejection_detail
from streams.worker.processing.expiry import ExpiryScheduler
from streams.worker.processing.messages import BatchResult, Inbound
from streams.worker.processing.orders import (
    ORDER_MEMORY_MS,
    Coordinator,
    DecidedOrders,
    OrderId,
    OrderTimer,
    OrderWork,
    StepPacker,
    answer_figures,
)
from streams.worker.processing.outputs import Outbox
from streams.worker.reference.network_in_force import NetworkInForce
from streams.worker.state.records import RecordEncoder, RecordTooLarge, StockStore, TableRecords

log = logging.getLogger("stocksync.worker")


class Pipeline:
    """Turns a batch of input messages into state writes (one per SKU and step) and output records."""

    def __init__(self, registry: TopicRegistry, codec: SingleObjectCodec, network: NetworkInForce,
                 ats: AtsPublisher, expiries: ExpiryScheduler, rules: StockRules | None = None,
                 max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES, catalog: Catalog | None = None,
                 order_decision_ms: int = DECISION_MS, order_memory_ms: int = ORDER_MEMORY_MS) -> None:
        self.registry, self.network, self.ats, self.expiries = registry, network, ats, expiries
        self.partitions = registry.partitions
        self.rules = rules or StockRules()
        self.encoder = RecordEncoder(codec, max_record_bytes)
        self.dead_letters = DeadLetters(registry, self.encoder)
        # the aliases products may be named by
        self.decoder = Decoder(network, codec, catalog if catalog is not None else Catalog(), registry.partitions,
                               self.dead_letters)
        self.emitter = Emitter(registry, self.encoder, ats, expiries)
        self.order_timer = OrderTimer(registry, self.encoder, order_memory_ms)
        self.coordinator = Coordinator(registry, self.encoder, self.order_timer, order_decision_ms)

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
        decoded = Decoded()
        steps = StepPacker(self.registry, self.encoder, self.partitions)
        decided = DecidedOrders()
        for message in batch:
            self.decoder.decode(message, decoded, outbox, now, result)
            yield
        for sku, item in decoded.steps:
            try:
                self._apply(sku, item, store, outbox, steps, now, result)
            except Exception as exc:  # noqa: BLE001 - one SKU's failure never sinks the batch or stops the worker
                self._isolate(sku, item, exc, outbox, now, result)
            yield
        for order, work in decoded.orders.items():
            try:
                self.coordinator.apply(order, work, self.network.network, store, outbox, steps, decided, now)
            except Exception as exc:  # noqa: BLE001 - as for a SKU: the order's messages are dead-lettered
                self._isolate_order(order, work, exc, outbox, now, result)
            yield
        self.coordinator.remember(decided, store, outbox)
        for partition in sorted(decoded.forget):
            self.coordinator.forget(partition, store, outbox, now)
        steps.flush(outbox)
        outbox.on_commit(partial(count_outcomes, result.applied))
        outbox.on_commit(partial(_count_batch, len(batch)))

    def _apply(self, sku: str, item: SkuWork, store: StockStore, outbox: Outbox, steps: StepPacker, now: int,
               result: BatchResult) -> None:
        """Apply one SKU's movements. Every record is built (and may fail) before anything is counted, sent or
        written, so a SKU that fails leaves no trace but its dead letters."""
        records = TableRecords(store, sku, item.partition, self.encoder)
        stock, converted = records.load(self.rules.horizon_ms // 64)
        network = self.network.network
        # What the batch changed is told against this (the sales rate only matters to stock levels in days).
        before = SkuStock(sku, positions=dict(stock.positions),
                          sales=stock.sales.copy() if network.levels_in_days else RecentSales())
        outcomes = stock.apply_all(item.movements, network, now, self.rules)
        out = self.emitter.build(sku, item, outcomes, network, before, stock, now)
        for key, record in answer_figures(item.questions, stock, network, now):
            out.records.append((self.registry.order_steps.name, key.encode(),
                                self.encoder.encode(Schema.ORDER_STEP, record), None))
        # Every movement applied changes the head, but an order's confirmation (it only extends the hold).
        if converted or (records.changed and stock.head_changed):
            records.save(stock)
        # Every record is built: from here on nothing fails.
        result.outcomes += len(outcomes)
        result.applied += outcomes
        for outcome, message, index in out.rejected:
            self.dead_letters.send(outbox, message, outcome.movement.channel, outcome.reason,
                                   rejection_detail(outcome), now, result, index, outcome.movement.event_id)
        self.emitter.send(out, outbox, steps)
        written = records.write_to(store)
        if written:
            result.skus_written += 1
            outbox.on_commit(partial(metrics.STATE_RECORDS.observe, written))
        for change in out.holds:
            outbox.on_commit(change)
        self.emitter.publish_ats(out, network, before, stock, item.partition, outbox, now)

    def _isolate(self, sku: str, item: SkuWork, exc: Exception, outbox: Outbox, now: int,
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
            self.dead_letters.send(outbox, message, movement.channel, reason, detail, now, result, index,
                                   movement.event_id)

    def _isolate_order(self, order: OrderId, work: OrderWork, exc: Exception, outbox: Outbox, now: int,
                       result: BatchResult) -> None:
        """Dead-letter what a batch brought an order whose records could not be built (its holds lapse)."""
        reason = "record_too_large" if isinstance(exc, RecordTooLarge) else "internal_error"
        log.error("order %s of %s: handling %d messages failed; dead-lettering them", order[1], order[0],
                  len(work.sources), exc_info=exc)
        for message in {id(m): m for m in work.sources}.values():
            self.dead_letters.send(outbox, message, order[0], reason, f"order {order[1]}: {exc!r}"[:500], now,
                                   result, None, order[1])

    def dead_letter_batch(self, batch: Sequence[Inbound], outbox: Outbox, reason: str, detail: str) -> None:
        """Send every message of a batch to the dead-letter topic (a batch whose handling failed unexpectedly)."""
        self.dead_letters.send_batch(batch, outbox, reason, detail)


def _count_batch(messages: int) -> None:
    metrics.MESSAGES.inc(messages)
    metrics.BATCH_SIZE.observe(messages)
