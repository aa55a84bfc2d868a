"""The batch unit of work: per table partition, a batch's state, outputs and input offsets in one transaction."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import NoReturn

from streams.kafka.schema_registry import RegistryUnavailable
from streams.wire.codec import DecodeError
from streams.wire.partitioner import partition_for
from streams.worker.flow.transactions import CommitFailed, Fenced, PartitionTransactions
from streams.worker.ops import metrics
from streams.worker.ops.disk import DiskRoom
from streams.worker.ops.health import Health
from streams.worker.ops.logs import input_fields
from streams.worker.processing.messages import BatchResult, Inbound
from streams.worker.processing.outputs import OutputRecord, ProducerOutbox
from streams.worker.processing.pipeline import Pipeline
from streams.worker.state.keys import offsets_key
from streams.worker.state.table import StockTable, TableStore

log = logging.getLogger("stocksync.worker")

RETRY_AFTER_S = 1.0  # after the Schema Registry did not answer: asked again
STEP_S = 0.02  # the longest the pipeline holds the event loop before letting its other tasks run
# Under a backlog a batch may grow to this many times `max_batch` messages (doubling after each full batch) and
# back to `max_batch` once one closes on time: a transaction's fixed cost is paid by more messages while behind,
# and the latency of a worker that keeps up stays that of small batches.
BACKLOG_GROWTH = 10
MAX_BATCH_BYTES = 4 * 1024 * 1024  # input bytes a grown batch closes at (a packed message carries ~50 movements)


class Batcher:
    """Collects a batch of input records and handles it, each table partition's part in one transaction: the
    SKUs' new states, every output (ledger, positions, feeds, replies, dead letters) and the partition's advanced
    InputOffsets. Readers see all of it or none; the local store and the recorded offsets follow only a commit.
    A crash before the commit brings the part again, to be applied afresh to the state as it was."""

    def __init__(self, transactions: PartitionTransactions, table: StockTable, pipeline: Pipeline, max_batch: int,
                 wait_s: float, health: Health | None = None, disk: DiskRoom | None = None) -> None:
        self.transactions, self.table, self.pipeline = transactions, table, pipeline
        self.health = health or Health()
        self.disk = disk
        self.max_batch, self.wait_s = max_batch, wait_s
        self.limit = max_batch  # messages this batch may take: grows while batches close full
        self.records: list[Inbound] = []
        self.bytes = 0
        self.first_added = 0.0
        self.lock = asyncio.Lock()
        self.recorded: dict[int, dict[str, int]] = {}  # per partition number, its InputOffsets as last committed

    def add(self, record: Inbound) -> None:
        if not self.records:
            self.first_added = time.monotonic()
        self.records.append(record)
        self.bytes += len(record.value or b"")

    def drop(self) -> None:
        """Forget the collected records (they are read again from the recorded offsets)."""
        self.records, self.bytes, self.limit = [], 0, self.max_batch

    def room(self) -> int:
        """Messages the batch may still take."""
        return max(0, self.limit - len(self.records))

    def full(self) -> bool:
        return len(self.records) >= self.limit or (self.bytes >= MAX_BATCH_BYTES and len(self.records) > 0)

    def _adapt(self, was_full: bool) -> None:
        """Double the next batch's limit after a full one (a backlog), up to BACKLOG_GROWTH times `max_batch`;
        back to `max_batch` after one that closed on time."""
        self.limit = min(self.limit * 2, self.max_batch * BACKLOG_GROWTH) if was_full else self.max_batch

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
        """An outbox for outputs made outside a batch (timers, network changes), committed on exit in the
        transactions of the partitions their keys belong to. Held under the batch lock: a batch in flight has
        computed states the table does not hold yet, and outputs that must not be overtaken."""
        async with self.lock:
            outbox = ProducerOutbox()
            yield outbox
            await self._commit_outside(outbox)

    async def _commit_outside(self, outbox: ProducerOutbox) -> None:
        by_partition: dict[int, list[OutputRecord]] = {}
        for record in outbox.records:
            _, key, _, partition = record
            owner = partition if partition is not None else partition_for(key, self.pipeline.partitions)
            by_partition.setdefault(owner, []).append(record)
        written = self.transactions.writable()
        for partition, records in sorted(by_partition.items()):
            if partition not in written:
                continue  # its new owner publishes them
            try:
                await self.transactions.commit(partition, records)
            except Fenced:
                continue
            except CommitFailed as exc:
                if not exc.permanent:
                    log.warning("outputs made outside a batch were not written; the next round makes them again: "
                                "%s", exc)
                    return
                # Derived outputs (feeds, expiry requests): the next change of the SKU publishes them again.
                log.error("outputs made outside a batch can never be written; dropping them: %s", exc)
        outbox.committed()

    def recorded_offsets(self, partition: int) -> dict[str, int]:
        """Per input topic, the offset after the last movement of `partition` whose batch was committed."""
        if partition not in self.recorded:
            self.recorded[partition] = self.table.input_offsets(partition)
        return self.recorded[partition]

    def forget_offsets(self) -> None:
        """After an assignment the table may hold records another worker wrote: read them again."""
        self.recorded.clear()

    async def flush(self) -> None:
        """Handle the collected records: each partition's part in its own transaction, committed concurrently."""
        async with self.lock:
            if not self.records:
                return
            self._adapt(self.full())
            batch, self.records, self.bytes = self.records, [], 0
            await self._room_on_disk()
            await self._learn_schemas(batch)
            parts: dict[int, list[Inbound]] = {}
            for record in batch:
                parts.setdefault(record.partition, []).append(record)
            results = await asyncio.gather(*(self._write(partition, part) for partition, part in parts.items()),
                                           return_exceptions=True)
            failures = [result for result in results if isinstance(result, BaseException)]
            if failures:
                raise failures[0]
            self.health.committed()
            done = time.time()
            for record in batch:
                metrics.INGEST_LATENCY.observe(max(0.0, done - record.timestamp_ms / 1000))

    async def _learn_schemas(self, batch: Sequence[Inbound]) -> None:
        """Ask the Schema Registry for the schema ids the batch's records name and the codec has not met, off the
        event loop and before the batch is worked on: while the registry does not answer the batch waits (asked
        again every RETRY_AFTER_S), rather than being dead-lettered; an id it refuses is the record's to carry."""
        codec = self.pipeline.encoder.codec
        for schema_id in sorted(codec.unlearned(record.value for record in batch)):
            while True:
                try:
                    await asyncio.to_thread(codec.learn, schema_id)
                    break
                except DecodeError:
                    break  # the record is dead-lettered with the reason when it is decoded
                except RegistryUnavailable as exc:
                    log.warning("%s; asking again in %.0f s", exc, RETRY_AFTER_S)
                    await asyncio.sleep(RETRY_AFTER_S)

    async def _room_on_disk(self) -> None:
        """Wait while the state's disk is short of room: the batch is held, so no input is read past it, and the
        worker says so once and is not ready meanwhile (waiting for room is not a stall of the batches)."""
        if self.disk is not None:
            await self.disk.room("taking no input", "taking input", waiting=self.health.committed)

    async def _write(self, partition: int, messages: list[Inbound]) -> None:
        """One partition's part of a batch. A part with a record the broker will never take is split in halves
        until the message that causes it is alone; that message is dead-lettered and the rest is written."""
        todo = [messages]
        while todo:
            part = todo.pop()
            try:
                await self._transaction(partition, part)
            except CommitFailed as exc:
                if not exc.permanent:  # the partition's producer is dropped (PartitionTransactions.commit)
                    raise Fenced(partition, f"{exc}; it is written again once it is assigned again") from None
                if len(part) > 1:
                    half = len(part) // 2
                    todo += [part[half:], part[:half]]  # the first half first: offsets stay in order
                else:
                    await self._isolate(partition, part[0], exc)

    async def _isolate(self, partition: int, message: Inbound, failure: CommitFailed) -> None:
        """Dead-letter a message whose outputs cannot be written; if even that cannot be, step over it (it stays
        at its topic and offset, which the error names)."""
        detail = "; ".join(failure.errors)[:1000]
        where = input_fields(message.topic, message.partition, message.offset, message.key)
        log.error("%s/%d/%d: its outputs cannot be written; dead-lettering it: %s", message.topic, message.partition,
                  message.offset, detail, extra=where)
        letter = ProducerOutbox()
        self.pipeline.dead_letter_batch([message], letter, "unwritable", detail)
        try:
            await self._commit(partition, [message], TableStore(self.table), letter)
        except CommitFailed as again:
            log.error("%s/%d/%d: not even its dead letter can be written (%s); stepping over it", message.topic,
                      message.partition, message.offset, again, extra=where)
            await self._commit(partition, [message], TableStore(self.table), ProducerOutbox())

    async def _transaction(self, partition: int, messages: Sequence[Inbound]) -> None:
        store, outbox = TableStore(self.table), ProducerOutbox()
        try:
            await self._handle(messages, store, outbox)
        except Exception as exc:  # noqa: BLE001 - nothing may stop the worker: dead-letter the part
            log.exception("a batch of %d messages failed; dead-lettering it", len(messages))
            store, outbox = TableStore(self.table), ProducerOutbox()
            self.pipeline.dead_letter_batch(messages, outbox, "internal_error", repr(exc)[:500])
        await self._commit(partition, messages, store, outbox)

    async def _handle(self, messages: Sequence[Inbound], store: TableStore, outbox: ProducerOutbox) -> None:
        """The pipeline's work on a part, letting the event loop run every STEP_S: a batch takes seconds under a
        backlog, and the API and the probes (/ready, /metrics) must answer meanwhile."""
        slice_began = time.monotonic()
        for _ in self.pipeline.steps(messages, store, outbox, BatchResult()):
            if time.monotonic() - slice_began >= STEP_S:
                await asyncio.sleep(0)
                slice_began = time.monotonic()

    async def _commit(self, partition: int, messages: Sequence[Inbound], store: TableStore,
                      outbox: ProducerOutbox) -> None:
        """Commit what `messages` caused with the partition's offsets advanced past them, in one transaction; the
        local store, the in-memory bookkeeping and the recorded offsets follow only the commit."""
        offsets = self._offsets_after(partition, messages)
        store.put_raw(offsets_key(partition), self.table.encode_offsets(partition, offsets), partition)
        written = await self.transactions.commit(partition, store.changelog_records() + outbox.records,
                                                 with_state=True)
        # The store then holds the changelog up to this transaction's last record: this worker has owned the
        # partition since it brought the store up to the changelog's end, and nobody else may write it.
        try:
            store.committed(read_up_to={partition: written[self.table.changelog]})
        except Exception as exc:  # noqa: BLE001 - whatever it is, the local store is behind what is committed
            local_store_failed(partition, exc)
        outbox.committed()
        self.recorded[partition] = offsets

    def _offsets_after(self, partition: int, messages: Sequence[Inbound]) -> dict[str, int]:
        offsets = dict(self.recorded_offsets(partition))
        for message in messages:
            offsets[message.topic] = max(offsets.get(message.topic, 0), message.offset + 1)
        return offsets


EXIT_LOCAL_STORE = 74  # the worker's exit status when its local store cannot be written (EX_IOERR)


def local_store_failed(partition: int, exc: BaseException) -> NoReturn:
    """The batch's transaction is committed but the local store cannot take it (a full disk: RocksDB then
    refuses every write until the database is opened again). Going on would work on a store that lacks the
    committed batch and apply its input again; the worker exits instead. Started again, it opens the store and
    brings the partition up to its changelog, the committed truth (waiting for room on the disk first)."""
    log.critical("table partition %d: its local store cannot be written (%s); the batch is committed to Kafka; "
                 "exiting: started again, the worker restores the partition from its changelog", partition, exc)
    logging.shutdown()
    os._exit(EXIT_LOCAL_STORE)
