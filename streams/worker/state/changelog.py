"""The changelog reader: it brings a table partition's local store up to its changelog, in two modes.

- **Restore**, when this worker takes a partition over: up to the changelog's last committed record, then done.
- **Follow**, for standby replicas (Kafka Streams' standby tasks): warm copies of partitions another worker owns,
  kept up to date until a rebalance, so that a promoted standby restores only the records since its last chunk
  and a killed worker's partitions are served again within seconds instead of after their whole changelog.

Either way a consumer of its own reads the partitions (committed records only) in order, from the offset the store
holds every record up to (its checkpoint), and each chunk of records is written to the store in one atomic batch
with the checkpoint it reaches. The owner's own commits move the checkpoint too (streams.worker.flow.batch), so a
restarted worker reads only what it has not got, and a store never claims a record it does not hold.

faust's own recovery and standby reading are not used: they read changelogs through the group consumer's shared
queue, buffered and interleaved with rebalances, and under faults left stores that missed records from the middle of
a changelog while holding later ones (a SKU's head current, one of its history records old: a re-sent movement
applied twice). faust's assignor still places the standbys and promotes one when an owner leaves.

A partition is followed only while it is a standby here: following stops when a rebalance starts, and `follow`
returns only once no chunk of a partition it drops can still be written, so the follower never writes a partition
this worker owns, restores, or has let faust close."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable

from streams.errors import StocksyncError
from streams.kafka.clients import Consumer, assigned_consumer, committed_records, records_behind
from streams.security import KafkaConnection
from streams.worker.ops import metrics
from streams.worker.state.table import StockTable

log = logging.getLogger("stocksync.worker")

CHUNK = 2_000  # records per atomic write (and per poll)
STALL_S = 60.0  # restore: no record for this long while records remain: the broker is away for good; give up
POLL_S = 0.2  # follow: how long a read waits for records (and how soon a new set of partitions is taken up)
RETRY_S = 1.0  # follow: after a failure (a fatal consumer error, a store that would not write): start over after this


def changelog_reader(servers: KafkaConnection | str, table: StockTable, checkpoints: dict[int, int]) -> Consumer:
    """A consumer of the table's changelog assigned each partition from after its local store's checkpoint."""
    return assigned_consumer(servers, table.changelog, checkpoints, **{"fetch.wait.max.ms": 100})


def read_chunk(consumer: Consumer, timeout_s: float, ends: dict[int, int] | None = None
               ) -> tuple[dict[bytes, tuple[bytes | None, int]], dict[int, int]]:
    """Up to CHUNK records, as writes for the local store, and per partition the offset reached. With `ends`,
    nothing after a partition's end is taken (a record past it means every record up to it was read)."""
    writes: dict[bytes, tuple[bytes | None, int]] = {}
    reached: dict[int, int] = {}
    for message in committed_records(consumer, CHUNK, timeout_s):  # returns early only with CHUNK records
        partition, offset = int(message.partition() or 0), int(message.offset() or 0)
        if ends is not None and offset > ends[partition]:
            reached[partition] = ends[partition]
            break
        writes[bytes(message.key() or b"")] = (message.value(), partition)
        reached[partition] = offset
    return writes, reached


class ChangelogRestorer:
    """Restore mode."""

    def __init__(self, servers: KafkaConnection | str, table: StockTable) -> None:
        self.servers, self.table = servers, table
        self.remaining: dict[int, int] = {}  # per partition being restored, changelog offsets still to read

    def restore(self, partition: int, end: int) -> None:
        """Read the changelog partition from after the store's checkpoint up to `end` (its last committed
        record, once its earlier writers are fenced) into the store. Blocking: run it in a thread."""
        started = time.monotonic()
        start = self.table.checkpoint(partition)
        if start >= end:
            return
        consumer = changelog_reader(self.servers, self.table, {partition: start})
        records = 0
        try:
            reached, last_progress = start, time.monotonic()
            while reached < end:
                writes, got = read_chunk(consumer, 0.1, ends={partition: end})
                reached = got.get(partition, reached)
                self.remaining[partition] = end - reached
                if writes:
                    self.table.apply(writes, read_up_to={partition: reached})
                    records += len(writes)
                    last_progress = time.monotonic()
                elif time.monotonic() - last_progress > STALL_S:
                    raise StocksyncError(f"restoring table partition {partition}: no record for {STALL_S:.0f} s at "
                                         f"offset {reached} of {end}")
        finally:
            self.remaining.pop(partition, None)
            consumer.close()
        metrics.RESTORED_RECORDS.inc(records)
        log.info("table partition %d restored from its changelog: offsets %d to %d, %d records in %.1f s",
                 partition, start + 1, end, records, time.monotonic() - started)


class StandbyFollower:
    """Follow mode, in a thread of its own."""

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
                    self._follow_chunk(consumer, generation)
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
        checkpoints = {p: self.table.checkpoint(p) for p in sorted(partitions)}
        consumer = changelog_reader(self.servers, self.table, checkpoints)
        log.info("standby replicas: following table partitions %s from changelog offsets %s", sorted(partitions),
                 {p: start + 1 for p, start in checkpoints.items()})
        return consumer

    def _follow_chunk(self, consumer: Consumer, generation: int) -> None:
        """Read what is there (up to a chunk) and write it, per partition, with the checkpoint it reaches."""
        writes, reached = read_chunk(consumer, POLL_S)
        with self._lock:
            if generation != self._generation:
                return  # the partitions changed while reading: these records are read again if still wanted
            if writes:
                self.table.apply(writes, read_up_to=reached)
                metrics.STANDBY_RECORDS.inc(len(writes))
            self.remaining.update(records_behind(consumer, self.table.changelog, self._wanted))
