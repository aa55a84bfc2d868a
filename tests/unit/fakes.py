"""Fakes shared by the unit tests: the stock store, outbox, output producer and faust table a worker uses, each
recording what it was given. None of them stands in for a broker's decision: they only record and replay."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from types import SimpleNamespace

from streams.wire.partitioner import sku_partition
from streams.worker.outputs import OutputRecord


class Store:
    """A StockStore over a dict: sku -> (value, partition); with `partitions`, a write to a partition that is
    not the SKU's fails."""

    def __init__(self, partitions: int | None = None) -> None:
        self.partitions = partitions
        self.data: dict[str, tuple[bytes, int]] = {}
        self.writes: list[str] = []

    def get(self, sku: str, partition: int) -> bytes | None:
        found = self.data.get(sku)
        return found[0] if found else None

    def put(self, sku: str, value: bytes, partition: int) -> None:
        assert self.partitions is None or partition == sku_partition(sku, self.partitions)
        self.writes.append(sku)
        self.data[sku] = (value, partition)


class Outbox:
    """An Outbox that keeps every record sent to it."""

    def __init__(self) -> None:
        self.records: list[OutputRecord] = []

    def send(self, topic: str, key: bytes, value: bytes | None, partition: int | None = None) -> None:
        self.records.append((topic, key, value, partition))

    def to(self, topic: str) -> list[OutputRecord]:
        return [r for r in self.records if r[0] == topic]


class Crash(Exception):
    """The worker process died here."""


class Broker:
    """What reached the broker through FakeProducers: every acknowledged record, in order."""

    def __init__(self) -> None:
        self.records: list[OutputRecord] = []

    def topic(self, name: str) -> list[OutputRecord]:
        return [r for r in self.records if r[0] == name]

    def latest(self, topic: str) -> dict[bytes, tuple[bytes | None, int | None]]:
        """A compacted topic as a recovering reader sees it: the last value per key."""
        return {key: (value, partition) for t, key, value, partition in self.records if t == topic}


class FakeProducer:
    """Stands in for OutputProducer: `send_all` calls are numbered from 1, and the call `crash_at` raises Crash
    before anything of it reaches the broker."""

    def __init__(self, broker: Broker, crash_at: int | None = None) -> None:
        self.broker = broker
        self.crash_at = crash_at
        self.calls: list[list[OutputRecord]] = []

    async def send_all(self, records: Sequence[OutputRecord]) -> None:
        self.calls.append(list(records))
        if len(self.calls) == self.crash_at:
            raise Crash(f"send_all call {self.crash_at}")
        self.broker.records.extend(records)


class FakeFaustTable:
    """The parts of a faust Table the worker uses: `data`, `items()` and the changelog topic's name."""

    def __init__(self, changelog: str, data: dict[bytes, bytes] | None = None) -> None:
        self.data: dict[bytes, bytes] = dict(data or {})
        self.changelog_topic = SimpleNamespace(get_topic_name=lambda: changelog)

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        return iter(list(self.data.items()))

    @classmethod
    def recovered_from(cls, broker: Broker, changelog: str) -> FakeFaustTable:
        """The table a restarted worker recovers: the changelog's last value per key."""
        return cls(changelog, {key: value for key, (value, _) in broker.latest(changelog).items() if value})
