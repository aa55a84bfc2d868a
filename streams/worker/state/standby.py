"""Standby replicas: warm copies of table partitions another worker owns (Kafka Streams' standby tasks).

faust's assignor gives each table partition `standby_replicas` workers besides its owner, and promotes one of
them when the owner leaves. faust's own standby reading is not used (it shares the group consumer's queue, as its
recovery does, and under faults left stores missing records): this follower reads those partitions' changelogs
with a consumer of its own, committed records only, in order, and writes each chunk into the local store in one
atomic batch with the checkpoint it reaches, exactly as the restore does (streams.worker.state.changelog). When a
standby is promoted, the restore then reads only the records since the follower's last chunk, so a killed
worker's partitions are served again within seconds instead of after their whole changelog.

A partition is followed only while it is a standby here: following stops when a rebalance starts and `follow`
returns only once no chunk of a partition it drops can still be written, so the follower never writes a
partition this worker owns, restores, or has let faust close."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable

from confluent_kafka import Consumer, TopicPartition

from streams.kafka.security import KafkaConnection
from streams.worker.ops import metrics
from streams.worker.state.changelog import changelog_reader, committed_records
from streams.worker.state.table import StockTable

log = logging.getLogger("stocksync.worker")

POLL_S = 0.2  # how long a read waits for records (and how soon a new set of partitions is taken up)
RETRY_S = 1.0  # after a failure (a fatal consumer error, a store that would not write): start over after this


class StandbyFollower:
    def __init__(self, servers: KafkaConnection | str, table: StockTable) -> None:
        self.servers, self.table = servers, table
        self._lock = threading.Lock()  # held while a chunk is written, and to change what is followed
        self._wanted: frozenset[int] = frozenset()
        self._generation = 0  # moves with every change of `_wanted`: a chunk read before it is not written
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.remaining: dict[int, int] = {}  # per followed partition, changelog records not yet read (about)

    @property
    def following(self) -> frozenset[int]:
        return self._wanted

    def follow(self, partitions: Iterable[int]) -> None:
        """Keep exactly these partitions' local stores up to their changelogs from now on. Once this returns, no
        partition left out is written any more."""
        wanted = frozenset(partitions)
        with self._lock:
            if wanted != self._wanted:
                self._wanted, self._generation = wanted, self._generation + 1
                self.remaining = {p: n for p, n in self.remaining.items() if p in wanted}
        if wanted and self._thread is None and not self._stopping.is_set():
            self._thread = threading.Thread(target=self._run, name="stocksync-standby", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop following (the app is stopping: faust closes the stores next)."""
        self.follow(())
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(30)

    def _run(self) -> None:
        consumer: Consumer | None = None
        generation = -1
        try:
            while not self._stopping.is_set():
                with self._lock:
                    wanted, current = self._wanted, self._generation
                if not wanted:
                    generation = current
                    self._stopping.wait(POLL_S)
                    continue
                try:
                    if current != generation:
                        consumer = self._assign(consumer, wanted)
                        generation = current
                    assert consumer is not None
                    self._read_chunk(consumer, generation)
                except Exception:  # noqa: BLE001 - a standby is an optimisation: never stop the worker for it
                    log.exception("standby replicas: following %s failed; starting over in %.0f s", sorted(wanted),
                                  RETRY_S)
                    if consumer is not None:
                        consumer.close()
                    consumer, generation = None, -1
                    self._stopping.wait(RETRY_S)
        finally:
            if consumer is not None:
                consumer.close()

    def _assign(self, consumer: Consumer | None, partitions: frozenset[int]) -> Consumer:
        """Read `partitions` from after what their local stores hold."""
        if consumer is not None:
            consumer.close()
        starts = {p: self.table.checkpoint(p) for p in sorted(partitions)}
        consumer = changelog_reader(self.servers, self.table, starts)
        log.info("standby replicas: following table partitions %s from changelog offsets %s", sorted(partitions),
                 {p: start + 1 for p, start in starts.items()})
        return consumer

    def _read_chunk(self, consumer: Consumer, generation: int) -> None:
        """Read what is there (up to a chunk) and write it, per partition, with the checkpoint it reaches."""
        writes: dict[bytes, tuple[bytes | None, int]] = {}
        reached: dict[int, int] = {}
        for message in committed_records(consumer, POLL_S):
            partition = int(message.partition() or 0)
            writes[bytes(message.key() or b"")] = (message.value(), partition)
            reached[partition] = int(message.offset() or 0)
        with self._lock:
            if generation != self._generation:
                return  # the partitions changed while reading: these records are read again if still wanted
            if writes:
                self.table.apply(writes, read_up_to=reached)
                metrics.STANDBY_RECORDS.inc(len(writes))
            changelog = self.table.changelog
            for position in consumer.position([TopicPartition(changelog, p) for p in self._wanted]):
                _, high = consumer.get_watermark_offsets(position, cached=True)
                if position.offset >= 0 and high >= 0:  # both known (the position skips commit markers)
                    self.remaining[position.partition] = max(0, high - position.offset)
