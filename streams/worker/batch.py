"""The batch unit of work: a batch's state, outputs and input offsets, written in that order."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from streams.worker import metrics
from streams.worker.outputs import OutputProducer, ProducerOutbox
from streams.worker.pipeline import Inbound, Pipeline
from streams.worker.table import StockTable, TableStore, offsets_key

log = logging.getLogger("stocksync.worker")


class Batcher:
    """Collects a batch of input records and handles it: pipeline, state committed, outputs delivered, and only
    then the partitions' InputOffsets advanced past the batch. A crash before that last step brings the batch
    again; its movements are duplicates by then, which re-send their outputs instead of re-applying."""

    def __init__(self, producer: OutputProducer, table: StockTable, pipeline: Pipeline, max_batch: int,
                 wait_s: float) -> None:
        self.producer, self.table, self.pipeline = producer, table, pipeline
        self.max_batch, self.wait_s = max_batch, wait_s
        self.records: list[Inbound] = []
        self.first_added = 0.0
        self.lock = asyncio.Lock()
        self.recorded: dict[int, dict[str, int]] = {}  # per partition number, its InputOffsets as last written

    def add(self, record: Inbound) -> None:
        if not self.records:
            self.first_added = time.monotonic()
        self.records.append(record)

    def full(self) -> bool:
        return len(self.records) >= self.max_batch

    def time_left(self) -> float:
        """Until the batch must close: a batch closes once its first record has waited `wait_s`, so latency stays
        bounded under steady load."""
        if not self.records:
            return self.wait_s
        return max(0.0, self.wait_s - (time.monotonic() - self.first_added))

    def due(self) -> bool:
        return bool(self.records) and self.time_left() == 0.0

    @asynccontextmanager
    async def outside_batch(self) -> AsyncIterator[ProducerOutbox]:
        """An outbox for outputs made outside a batch (timers, network changes), delivered on exit. Held under
        the batch lock: a batch in flight has computed states the table does not hold yet, and outputs that must
        not be overtaken."""
        async with self.lock:
            outbox = ProducerOutbox(self.producer)
            yield outbox
            await outbox.deliver()

    def recorded_offsets(self, partition: int) -> dict[str, int]:
        """Per input topic, the offset after the last movement of `partition` whose outputs were delivered."""
        if partition not in self.recorded:
            self.recorded[partition] = self.table.input_offsets(partition)
        return self.recorded[partition]

    def forget_offsets(self) -> None:
        """After an assignment the table may hold records another worker wrote: read them again."""
        self.recorded.clear()

    async def flush(self) -> None:
        """Handle the collected records as one batch: state, outputs, offsets, each awaited before the next."""
        async with self.lock:
            batch, self.records = self.records, []
            if not batch:
                return
            outbox = ProducerOutbox(self.producer)
            store = TableStore(self.producer, self.table)
            try:
                self.pipeline.handle(batch, store, outbox)
            except Exception as exc:  # noqa: BLE001 - nothing may stop the worker: dead-letter the batch
                log.exception("batch of %d messages failed; dead-lettering it", len(batch))
                outbox.records.clear()
                store.writes.clear()
                self.pipeline.dead_letter_batch(batch, outbox, "internal_error", repr(exc)[:500])
            # State first (with this batch's ledger entries in it), then the outputs, then the offsets.
            await store.commit()
            await outbox.deliver()
            self._record_offsets(batch, store)
            await store.commit()
            done = time.time()
            for record in batch:
                metrics.INGEST_LATENCY.observe(max(0.0, done - record.timestamp_ms / 1000))

    def _record_offsets(self, batch: Sequence[Inbound], store: TableStore) -> None:
        ends: dict[int, dict[str, int]] = {}  # partition -> topic -> next offset
        for record in batch:
            topics = ends.setdefault(record.partition, {})
            topics[record.topic] = max(topics.get(record.topic, 0), record.offset + 1)
        for partition, topics in ends.items():
            recorded = self.recorded_offsets(partition)
            advanced = {t: n for t, n in topics.items() if n > recorded.get(t, 0)}
            if advanced:
                recorded.update(advanced)
                store.put_raw(offsets_key(partition), self.table.encode_offsets(partition, recorded), partition)
