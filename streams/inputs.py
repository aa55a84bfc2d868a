"""How a worker reads its inputs: the channels' sales and restock topics, for the partitions it owns.

faust decides who owns what: its consumer group (where the stock table's changelog is the subscribed topic)
assigns each worker a set of table partitions and recovers them. The input partitions with the same numbers are
then read by the InputReader below, with a consumer of its own, from where the worker's own record says the
partition's movements end (InputOffsets, kept in the stock table). Reading the inputs through a faust agent was
tried first: faust sometimes delivered past unread offsets after a restart, counted the skipped range as
acknowledged, and left partitions unfetched for minutes after a rebalance; none of that can happen here."""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
import types
import weakref
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.streams import _current_event

from streams import metrics
from streams.outputs import Outbox, OutputProducer
from streams.pipeline import Inbound, Pipeline

log = logging.getLogger("stocksync.worker")

OFFSETS = "stocksync.InputOffsets"


def offsets_key(partition: int) -> bytes:
    """The stock-table key of a partition's InputOffsets record (no SKU starts with NUL)."""
    return b"\x00offsets:%d" % partition


class _InPartition:
    """faust's stores find a key's partition in the event being processed; this stands in for that event."""

    def __init__(self, partition: int) -> None:
        self.message = types.SimpleNamespace(partition=partition)


class TableStore:
    """The stock table for one batch. Reads are immediate; writes are held until `commit`.

    faust's own table write would send its changelog record through a buffer that `producer.flush()` can
    overtake, so the record is sent here, awaited, and the store is updated without a second changelog record."""

    def __init__(self, producer: OutputProducer, table: Any) -> None:
        self.producer = producer
        self.table = table
        self.writes: dict[bytes, tuple[bytes, int]] = {}

    def get(self, sku: str, partition: int) -> bytes | None:
        return self.get_raw(sku.encode(), partition)

    def get_raw(self, key: bytes, partition: int) -> bytes | None:
        with _in_partition(partition):
            value: bytes | None = self.table.data.get(key)
        return value

    def put(self, sku: str, value: bytes, partition: int) -> None:
        self.put_raw(sku.encode(), value, partition)

    def put_raw(self, key: bytes, value: bytes, partition: int) -> None:
        self.writes[key] = (value, partition)

    async def commit(self) -> None:
        if not self.writes:
            return
        changelog = self.table.changelog_topic.get_topic_name()
        await self.producer.send_all([(changelog, key, value, partition)
                                      for key, (value, partition) in self.writes.items()])
        for key, (value, partition) in self.writes.items():
            with _in_partition(partition):
                self.table.data[key] = value
        self.writes.clear()


_PARTITION_EVENTS: dict[int, _InPartition] = {}


@contextmanager
def _in_partition(partition: int) -> Iterator[None]:
    """Run table reads and writes as if processing an event of `partition` (faust's stores pick the partition's
    database by the current event)."""
    event = _PARTITION_EVENTS.setdefault(partition, _InPartition(partition))
    token = _current_event.set(weakref.ref(event))  # type: ignore[arg-type]
    try:
        yield
    finally:
        _current_event.reset(token)


class Batcher:
    """Collects a batch of input records and handles it: pipeline, state committed, outputs delivered, and only
    then the partitions' InputOffsets advanced past the batch. A crash before that last step brings the batch
    again; its movements are duplicates by then, which re-send their outputs instead of re-applying."""

    def __init__(self, producer: OutputProducer, table: Any, pipeline: Pipeline, max_batch: int,
                 wait_s: float) -> None:
        self.producer, self.table, self.pipeline = producer, table, pipeline
        self.max_batch, self.wait_s = max_batch, wait_s
        self.codec = pipeline.codec
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
    async def outside_batch(self) -> AsyncIterator[Outbox]:
        """An outbox for outputs made outside a batch (timers, network changes), delivered on exit. Held under
        the batch lock: a batch in flight has computed states the table does not hold yet, and outputs that must
        not be overtaken."""
        async with self.lock:
            outbox = Outbox(self.producer)
            yield outbox
            await outbox.deliver()

    def recorded_offsets(self, partition: int) -> dict[str, int]:
        """Per input topic, the offset after the last movement of `partition` whose outputs were delivered."""
        if partition not in self.recorded:
            raw = TableStore(self.producer, self.table).get_raw(offsets_key(partition), partition)
            self.recorded[partition] = dict(self.codec.decode_as(raw, OFFSETS)[1]["next_offsets"]) if raw else {}
        return self.recorded[partition]

    def forget_offsets(self) -> None:
        """After an assignment the table may hold records another worker wrote: read them again."""
        self.recorded.clear()

    async def flush(self) -> None:
        async with self.lock:
            batch, self.records = self.records, []
            if not batch:
                return
            outbox = Outbox(self.producer)
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
                store.put_raw(offsets_key(partition), self.codec.encode(
                    OFFSETS, {"partition": partition, "next_offsets": recorded}), partition)


def in_time_order(fetched: Sequence[Sequence[Any]]) -> Iterator[Any]:
    """One fetch's records (a list per topic partition) as one sequence: across partitions the earliest
    timestamp first, so a receipt produced before a reservation on another topic is applied before it; within a
    partition always in offset order, whatever its timestamps."""
    return heapq.merge(*fetched, key=lambda record: record.timestamp)


class InputReader:
    """Reads the input partitions whose stock-table partitions faust made this worker the owner of.

    The assignment follows faust's: while faust rebalances or recovers the table, nothing is read; afterwards
    each owned input partition is read from its InputOffsets record (or from its start). The offsets reached
    are also committed to the consumer group `group_id` (for lag monitoring only: the record is the truth)."""

    COMMIT_EVERY_S = 1.0

    def __init__(self, app: faust.App, servers: str, group_id: str, batcher: Batcher,
                 input_topics: Callable[[], list[str]], changelog: str) -> None:
        self.app, self.servers, self.group_id, self.batcher = app, servers, group_id, batcher
        self.input_topics, self.changelog = input_topics, changelog
        self.assigned: frozenset[TopicPartition] = frozenset()
        self.next_offset: dict[TopicPartition, int | None] = {}
        self.revoking = False
        self.stopping = False
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Finish the batch in hand and stop reading (at SIGTERM, before faust stops the table)."""
        self.stopping = True
        if self.task is not None:
            try:
                await self.task
            except Exception:  # noqa: BLE001 - stopping goes on; what was not recorded is read again
                log.exception("the input reader failed while stopping")

    async def on_revoked(self) -> None:
        """At a rebalance: finish the batch in hand; nothing more is read until faust has assigned and
        recovered the new partitions (another worker may own them by then)."""
        self.revoking = True
        await self.batcher.flush()

    def on_assigned(self) -> None:
        self.revoking = False

    def owned_partitions(self) -> set[int]:
        if self.revoking or self.app.rebalancing:
            return set()
        return {tp.partition for tp in self.app.assignor.assigned_actives() if tp.topic == self.changelog}

    def assigned_topics(self) -> list[str]:
        return sorted({tp.topic for tp in self.assigned})

    async def _run(self) -> None:
        consumer = AIOKafkaConsumer(bootstrap_servers=self.servers, group_id=self.group_id,
                                    enable_auto_commit=False, auto_offset_reset="earliest",
                                    max_poll_records=self.batcher.max_batch)
        await consumer.start()
        last_commit = time.monotonic()
        try:
            while not self.stopping:
                try:
                    owned = self.owned_partitions()
                    wanted = frozenset(TopicPartition(t, p) for t in self.input_topics() for p in owned)
                    if wanted != self.assigned:
                        await self._assign(consumer, wanted)
                    if not self.assigned:
                        await asyncio.sleep(0.05)
                        continue
                    await self._read(consumer)
                    if time.monotonic() - last_commit >= self.COMMIT_EVERY_S:
                        last_commit = time.monotonic()
                        await self._commit(consumer)
                except Exception:  # noqa: BLE001 - the reader must outlive any one failure; it starts over
                    log.exception("reading the inputs failed; reading again from the recorded offsets")
                    self.batcher.records.clear()  # they come again: the offsets were not advanced past them
                    self.assigned = frozenset()
                    await asyncio.sleep(1.0)
        finally:
            await self.batcher.flush()
            await self._commit(consumer)
            await consumer.stop()

    async def _assign(self, consumer: AIOKafkaConsumer, wanted: frozenset[TopicPartition]) -> None:
        await self.batcher.flush()
        await self._commit(consumer)
        self.batcher.forget_offsets()
        consumer.assign(sorted(wanted, key=lambda tp: (tp.topic, tp.partition)))
        self.next_offset = {}
        for tp in wanted:
            resume = self.batcher.recorded_offsets(tp.partition).get(tp.topic)
            self.next_offset[tp] = resume
            if resume is None:
                await consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, resume)
        if wanted:
            recorded = sum(1 for tp in wanted if self.next_offset[tp] is not None)
            log.info("reading %d input partitions of table partitions %s: %d from their recorded offsets, %d from "
                     "their start", len(wanted), sorted({tp.partition for tp in wanted}), recorded,
                     len(wanted) - recorded)
        self.assigned = wanted

    async def _read(self, consumer: AIOKafkaConsumer) -> None:
        fetched = await consumer.getmany(timeout_ms=int(self.batcher.time_left() * 1000),
                                         max_records=self.batcher.max_batch - len(self.batcher.records))
        if self.revoking or self.stopping:
            return  # fetched just before a rebalance: read again by whoever owns the partition next
        for record in in_time_order([records for tp, records in fetched.items() if tp in self.assigned]):
            tp = TopicPartition(record.topic, record.partition)
            if self._in_sequence(tp, record.offset):
                self.batcher.add(Inbound(record.topic, record.partition, record.offset, record.key,
                                         record.value, record.timestamp))
        if self.batcher.full() or self.batcher.due():
            await self.batcher.flush()

    def _in_sequence(self, tp: TopicPartition, offset: int) -> bool:
        """Input topics have no compaction and no transaction markers, so their offsets have no gaps; one
        here means the topic's retention deleted movements that were never read."""
        expected = self.next_offset.get(tp)
        if expected is not None and offset < expected:
            return False
        if expected is not None and offset > expected:
            log.error("input %s: offsets %d to %d were deleted before this worker read them", tp, expected,
                      offset - 1)
            metrics.INPUT_OFFSETS_LOST.inc(offset - expected)
        self.next_offset[tp] = offset + 1
        return True

    async def _commit(self, consumer: AIOKafkaConsumer) -> None:
        offsets = {tp: n for tp in self.assigned
                   if (n := self.batcher.recorded_offsets(tp.partition).get(tp.topic)) is not None}
        lag = 0
        for tp in self.assigned:
            high = consumer.highwater(tp)
            if high is not None:
                lag += max(0, high - offsets.get(tp, 0))
        metrics.INPUT_LAG.set(lag)
        if not offsets:
            return
        try:
            await consumer.commit(offsets)
        except Exception as exc:  # noqa: BLE001 - monitoring only; the next commit carries the same offsets
            log.warning("committing input offsets for monitoring failed: %r", exc)
