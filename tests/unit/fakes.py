"""Fakes shared by the unit tests: the stock store, outbox and transactions a worker uses, each
recording what it was given. They decide nothing a broker decides: what FakeTransactions refuses is the test's
choice (integration tests show what the real broker refuses)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence

from streams.wire.codec import default_codec
from streams.wire.partitioner import partition_for, sku_partition
from streams.worker.flow.transactions import CommitFailed, Fenced
from streams.worker.processing.outputs import OutputRecord
from streams.worker.state.keys import HISTORY_MARK, ORDER_PREFIX, ORDERS_MARK, decided_bucket


class Store:
    """A StockStore over dicts: SKU heads by SKU (`data`: sku -> (value, partition), `writes`: the SKUs whose head
    was written, in order) and every other record by key (`history`, orders' states too); with `partitions`, a
    write to a partition that is not the SKU's (or the order id's) fails."""

    def __init__(self, partitions: int | None = None) -> None:
        self.partitions = partitions
        self.data: dict[str, tuple[bytes, int]] = {}
        self.history: dict[bytes, bytes] = {}
        self.writes: list[str] = []

    def get_raw(self, key: bytes, partition: int) -> bytes | None:
        if HISTORY_MARK in key or key.startswith(ORDERS_MARK):
            return self.history.get(key)
        found = self.data.get(key.decode())
        return found[0] if found else None

    def put_raw(self, key: bytes, value: bytes | None, partition: int) -> None:
        if key.startswith(ORDERS_MARK):  # an order's state, in its order id's partition; decided orders' ids
            if self.partitions is not None:
                expected = partition_for(key.decode().split(":", 2)[2].encode(), self.partitions) \
                    if key.startswith(ORDER_PREFIX) else decided_bucket(key)[0]
                assert partition == expected
            if value is None:
                self.history.pop(key, None)
            else:
                self.history[key] = value
            return
        sku = key.split(HISTORY_MARK, 1)[0].decode()
        assert self.partitions is None or partition == sku_partition(sku, self.partitions)
        if HISTORY_MARK in key:
            if value is None:
                self.history.pop(key, None)
            else:
                self.history[key] = value
            return
        assert value is not None
        self.writes.append(sku)
        self.data[sku] = (value, partition)

    def scan_raw(self, prefix: bytes) -> Iterator[bytes]:
        return iter(sorted(key for key in self.history if key.startswith(prefix)))

    def holds(self, sku: str) -> list[str]:
        """The reservation ids of a SKU's open holds."""
        prefix = sku.encode() + HISTORY_MARK + b"r:"
        return sorted(default_codec().decode(value)[1]["reservation_id"] for key, value in self.history.items()
                      if key.startswith(prefix))


class Outbox:
    """An Outbox that keeps every record sent to it, committed as soon as sent (what waits for the commit runs
    at once)."""

    def __init__(self) -> None:
        self.records: list[OutputRecord] = []

    def send(self, topic: str, key: bytes, value: bytes | None, partition: int | None = None) -> None:
        self.records.append((topic, key, value, partition))

    def send_latest(self, topic: str, key: bytes, value: bytes | None, partition: int | None = None) -> None:
        self.send(topic, key, value, partition)  # committed at once: each one is the latest when sent

    def on_commit(self, action: Callable[[], None]) -> None:
        action()

    def to(self, topic: str) -> list[OutputRecord]:
        return [r for r in self.records if r[0] == topic]


class Crash(Exception):
    """The worker process died here."""


class Broker:
    """What reached the broker through FakeProducers: every acknowledged record, in order."""

    def __init__(self) -> None:
        self.records: list[OutputRecord] = []
        self.next_offset: Counter[tuple[str, int | None]] = Counter()

    def topic(self, name: str) -> list[OutputRecord]:
        return [r for r in self.records if r[0] == name]

    def latest(self, topic: str) -> dict[bytes, tuple[bytes | None, int | None]]:
        """A compacted topic as a recovering reader sees it: the last value per key."""
        return {key: (value, partition) for t, key, value, partition in self.records if t == topic}


class FakeTransactions:
    """Stands in for PartitionTransactions: a transaction's records reach the broker together, when it commits.
    Commits are numbered from 1; the commit `crash_at` raises Crash before anything of it reaches the broker.
    `refused(record)` names the records a broker would refuse for good (the transaction then fails)."""

    def __init__(self, broker: Broker, partitions: Iterable[int], crash_at: int | None = None,
                 refused: Callable[[OutputRecord], bool] = lambda record: False) -> None:
        self.broker, self.crash_at, self.refused = broker, crash_at, refused
        self.producers: dict[int, object] = dict.fromkeys(partitions)
        self.calls: list[tuple[int, list[OutputRecord]]] = []

    def writable(self) -> set[int]:
        return set(self.producers)

    async def commit(self, partition: int, records: Sequence[OutputRecord], with_state: bool = False
                     ) -> dict[str, int]:
        self.calls.append((partition, list(records)))
        if len(self.calls) == self.crash_at:
            raise Crash(f"commit {self.crash_at}")
        if partition not in self.producers:
            raise Fenced(partition, "another worker has it")
        refused = [f"{topic}: refused" for topic, key, value, part in records
                   if self.refused((topic, key, value, part))]
        if refused:
            raise CommitFailed(partition, refused, permanent=True)
        last: dict[str, int] = {}
        for record in records:  # an offset per topic and partition, as the broker would give it
            topic, part = record[0], record[3]
            self.broker.records.append(record)
            last[topic] = self.broker.next_offset[(topic, part)]
            self.broker.next_offset[(topic, part)] += 1
        return last
