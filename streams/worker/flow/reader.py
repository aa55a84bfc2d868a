"""How a worker reads its inputs: the channels' sales and restock topics, for the partitions it owns.

faust decides who owns what: its consumer group (where the stock table's changelog is the subscribed topic)
assigns each worker a set of table partitions and recovers them. The input partitions with the same numbers are
then read by the InputReader below, with a consumer of its own, from where the worker's own record says the
partition's movements end (InputOffsets, kept in the stock table). So a partition is read only by the worker
that holds its state, from exactly where that state ends, and a rebalance cannot skip or stall it."""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from streams.kafka.aio import AIOKafkaConsumer, TopicPartition, new_aio_consumer
from streams.security import Kafka
from streams.worker.flow.batch import Batcher
from streams.worker.flow.transactions import Fenced
from streams.worker.ops import metrics
from streams.worker.ops.health import Health
from streams.worker.processing.messages import Inbound

log = logging.getLogger("stocksync.worker")


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

    def __init__(self, assigned: Callable[[], set[int]], servers: Kafka, group_id: str, batcher: Batcher,
                 input_topics: Callable[[], list[str]], health: Health) -> None:
        """`assigned`: the table partitions the consumer group gives this worker now (none while it rebalances)."""
        self.group_assigned, self.servers, self.group_id, self.batcher = assigned, servers, group_id, batcher
        self.input_topics, self.health = input_topics, health
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
        recovered the new partitions (another worker may own them by then). A partition fenced meanwhile (its new
        owner started its transactions first) committed nothing of the batch: its new owner reads it from the
        recorded offsets, and the rebalance goes on (raised here, it would stop the worker)."""
        self.revoking = True
        try:
            await self.batcher.flush()
        except Fenced:  # logged where it happened
            self.batcher.drop()
            self.assigned = frozenset()

    def on_assigned(self) -> None:
        self.revoking = False

    def owned_partitions(self) -> set[int]:
        """The table partitions assigned to this worker that it can write (a fenced one waits for the rebalance
        that gives it to its new owner)."""
        if self.revoking:
            return set()
        return self.group_assigned() & self.batcher.transactions.writable()

    def running(self) -> bool:
        """False once the reading task has ended (it never should before the worker stops)."""
        return self.task is not None and (not self.task.done() or self.stopping)

    def assigned_topics(self) -> list[str]:
        return sorted({tp.topic for tp in self.assigned})

    def assigned_partitions(self) -> list[int]:
        """The table partitions whose inputs this worker reads now."""
        return sorted({tp.partition for tp in self.assigned})

    async def _run(self) -> None:
        # read_committed: workers write into input topics too (expiries, re-routed movements), in transactions.
        consumer = new_aio_consumer(self.servers, group_id=self.group_id, auto_offset_reset="earliest",
                                    max_poll_records=self.batcher.max_batch, isolation_level="read_committed")
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
                    self.health.reader_read()
                    if time.monotonic() - last_commit >= self.COMMIT_EVERY_S:
                        last_commit = time.monotonic()
                        await self._commit(consumer)
                except Fenced:  # logged where it happened; the partition waits for its next assignment
                    log.info("reading the other partitions again from their recorded offsets")
                    self.batcher.drop()
                    self.assigned = frozenset()
                except Exception as exc:  # noqa: BLE001 - the reader must outlive any one failure; it starts over
                    log.exception("reading the inputs failed; reading again from the recorded offsets")
                    self.health.reader_failed(f"{type(exc).__name__}: {exc}"[:300])
                    self.batcher.drop()  # they come again: the offsets were not advanced past them
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
        from_start = []
        for tp in wanted:
            resume = self.batcher.recorded_offsets(tp.partition).get(tp.topic)
            self.next_offset[tp] = resume
            if resume is None:
                from_start.append(tp)
            else:
                consumer.seek(tp, resume)
        if from_start:
            # One offset lookup for them all: awaited one by one, a round trip per partition kept the worker from
            # reading anything for seconds after each assignment (~3 s at 108 input partitions).
            await consumer.seek_to_beginning(*from_start)
        await self._check_retention(consumer)
        if wanted:
            recorded = sum(1 for tp in wanted if self.next_offset[tp] is not None)
            log.info("reading %d input partitions of table partitions %s: %d from their recorded offsets, %d from "
                     "their start", len(wanted), sorted({tp.partition for tp in wanted}), recorded,
                     len(wanted) - recorded)
        self.assigned = wanted

    async def _read(self, consumer: AIOKafkaConsumer) -> None:
        fetched = await consumer.getmany(timeout_ms=int(self.batcher.time_left() * 1000),
                                         max_records=self.batcher.room())
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
        """False for a record at or before one already handed over (a fetch after a seek back). Offsets may jump:
        transaction markers take offsets no record has."""
        expected = self.next_offset.get(tp)
        if expected is not None and offset < expected:
            return False
        self.next_offset[tp] = offset + 1
        return True

    async def _check_retention(self, consumer: AIOKafkaConsumer) -> None:
        """Movements the topic's retention deleted before this worker read them are lost: say so, loudly."""
        recorded = {tp: resume for tp, resume in self.next_offset.items() if resume is not None}
        if not recorded:
            return
        starts = await consumer.beginning_offsets(list(recorded))
        for tp, resume in recorded.items():
            if starts.get(tp, 0) > resume:
                log.error("input %s: offsets %d to %d were deleted before this worker read them", tp, resume,
                          starts[tp] - 1)
                metrics.INPUT_OFFSETS_LOST.inc(starts[tp] - resume)

    async def _commit(self, consumer: AIOKafkaConsumer) -> None:
        """Commit how far the inputs are applied, and set the lag gauge. With no batch in hand, the reader's
        position is exact (and past any transaction marker, which the recorded offsets cannot be)."""
        settled = not self.batcher.records
        offsets = {}
        for tp in self.assigned:
            recorded = self.batcher.recorded_offsets(tp.partition).get(tp.topic)
            if settled:
                recorded = max(recorded or 0, await consumer.position(tp))
            if recorded is not None:
                offsets[tp] = recorded
        lags: dict[int, int] = {}
        for tp in self.assigned:
            end = consumer.last_stable_offset(tp) or consumer.highwater(tp)
            lags[tp.partition] = lags.get(tp.partition, 0) + (max(0, end - offsets.get(tp, 0)) if end else 0)
        metrics.INPUT_LAG.clear()  # partitions no longer owned are not this worker's lag
        for partition, lag in lags.items():
            metrics.INPUT_LAG.labels(str(partition)).set(lag)
        self.health.input_lag(sum(lags.values()))
        if not offsets:
            return
        try:
            await consumer.commit(offsets)
        except Exception as exc:  # noqa: BLE001 - monitoring only; the next commit carries the same offsets
            log.warning("committing input offsets for monitoring failed: %r", exc)
