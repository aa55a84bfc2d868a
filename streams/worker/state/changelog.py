"""Bringing a table partition's local store up to its changelog when this worker takes the partition over.

faust's recovery reads changelogs through the group consumer's shared queue, buffered and interleaved with
rebalances; under faults it left stores that missed records from the middle of a changelog while holding later
ones (a SKU's head current, one of its history records old: a re-sent movement applied twice). This is Kafka
Streams' restore instead: a consumer of its own reads the partition (committed records only) in order, from the
offset the store holds every record up to (its checkpoint) to the last committed record, and each chunk of
records is written to the store in one atomic batch with the checkpoint it reaches. The owner's own commits move
the checkpoint too (streams.worker.flow.batch), so a restarted worker reads only what it has not got, and a store
never claims a record it does not hold."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Message, TopicPartition

from streams.errors import StocksyncError
from streams.kafka.clients import new_consumer, reader_group
from streams.kafka.security import KafkaConnection
from streams.worker.ops import metrics
from streams.worker.state.table import StockTable

log = logging.getLogger("stocksync.worker")

CHUNK = 2_000  # records per atomic write (and per poll)
STALL_S = 60.0  # no record for this long while records remain: the broker is away for good; give up


def changelog_reader(servers: KafkaConnection | str, table: StockTable, checkpoints: dict[int, int]) -> Consumer:
    """A consumer of the table's changelog (committed records only) assigned each partition from after the offset
    its local store holds every record up to (`checkpoints`; -1: from the start)."""
    changelog = table.changelog
    consumer = new_consumer(servers, reader_group(changelog), **{
        "enable.partition.eof": False, "auto.offset.reset": "earliest", "fetch.wait.max.ms": 100})
    consumer.assign([TopicPartition(changelog, p, start + 1 if start >= 0 else OFFSET_BEGINNING)
                     for p, start in sorted(checkpoints.items())])
    return consumer


def committed_records(consumer: Consumer, timeout_s: float) -> Iterator[Message]:
    """What one read returns (up to CHUNK records), in order. A fatal error raises; any other (a broker away, which
    librdkafka retries) is read past."""
    for message in consumer.consume(CHUNK, timeout=timeout_s):
        error = message.error()
        if error is None:
            yield message
        elif error.fatal():
            raise KafkaException(error)


class ChangelogRestorer:
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
                writes: dict[bytes, tuple[bytes | None, int]] = {}
                for message in committed_records(consumer, 0.1):  # returns early only with CHUNK records
                    offset = int(message.offset() or 0)
                    if offset > end:  # every record up to the end is read (later ones: none, as all are fenced)
                        reached = end
                        break
                    writes[bytes(message.key() or b"")] = (message.value(), partition)
                    reached = offset
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
