"""The stock table adapter. faust's table holds, per SKU, its head (key: the SKU) and its history records (key: the
SKU, byte 0x01, then what they are: streams.domain.history), and per partition the InputOffsets record that says
where that partition's committed movements end (key: byte 0x00, "offsets:", the partition)."""

from __future__ import annotations

import types
import weakref
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cached_property
from typing import Any

import rocksdict
from faust.stores.rocksdb import Store as RocksDBStore
from faust.streams import _current_event

from streams.domain import SkuStock
from streams.domain.history import reservation_key
from streams.domain.stock import Reservation
from streams.wire.codec import SingleObjectCodec
from streams.wire.records import history_from_record
from streams.wire.schemas import Schema
from streams.worker.processing.outputs import OutputRecord
from streams.worker.state.records import HISTORY_MARK, head_of

OFFSETS_PREFIX = b"\x00"  # no SKU starts with NUL
# Where a partition's RocksDB database keeps the changelog offset it holds every record up to: faust's own key for
# it (its "persisted offset"), so that faust's recovery, too, starts after it.
CHECKPOINT_KEY: bytes = RocksDBStore.offset_key


def offsets_key(partition: int) -> bytes:
    """The stock-table key of a partition's InputOffsets record."""
    return OFFSETS_PREFIX + b"offsets:%d" % partition


class _InPartition:
    """faust's stores find a key's partition in the event being processed; this stands in for that event."""

    def __init__(self, partition: int) -> None:
        self.message = types.SimpleNamespace(partition=partition)


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


class StockTable:
    """The worker's stock table (faust's, with its changelog and recovery) as stocksync reads and writes it."""

    def __init__(self, table: Any, codec: SingleObjectCodec) -> None:
        self.table, self.codec = table, codec
        # The memory store (tests, demos) keeps its data for the process's life; so do its checkpoints.
        self._memory_checkpoints: dict[int, int] = {}

    @cached_property
    def _rocksdb(self) -> Callable[[int], Any] | None:
        """With the RocksDB store, its database of a partition, read and written directly: the hot path skips
        faust's event-context lookup, key codecs and key-index cache (a quarter of a batch's table time), which
        recovery bypasses the same way. None with the memory store. (Looked up at first use: faust makes the
        store late.)"""
        found: Callable[[int], Any] | None = getattr(self.table.data, "_db_for_partition", None)
        return found

    @property
    def changelog(self) -> str:
        return str(self.table.changelog_topic.get_topic_name())

    def get(self, key: bytes, partition: int) -> bytes | None:
        databases = self._rocksdb
        if databases is not None:
            found: bytes | None = databases(partition).get(key)
            return found
        with _in_partition(partition):
            value: bytes | None = self.table.data.get(key)
        return value

    def apply(self, writes: dict[bytes, tuple[bytes | None, int]], read_up_to: dict[int, int] | None = None
              ) -> None:
        """Put records whose changelog records are committed into the local store (None: delete). `read_up_to`:
        per partition, the changelog offset the store then holds every record up to (its checkpoint), written in
        the same atomic batch as the records."""
        databases = self._rocksdb
        if databases is None:
            # The memory store (tests, demos): one dict for every partition, holding the bytes that faust's raw
            # codecs pass through; written directly (through faust, a transaction of 30,000 records held the
            # event loop for 0.2 s).
            held = self.table.data.data
            for key, (value, _) in writes.items():
                if value is not None:
                    held[key] = value
                else:
                    held.pop(key, None)
            self._memory_checkpoints.update(read_up_to or {})
            return
        batches: defaultdict[int, Any] = defaultdict(lambda: rocksdict.WriteBatch(raw_mode=True))
        for key, (value, partition) in writes.items():
            if value is not None:
                batches[partition].put(key, value)
            else:
                batches[partition].delete(key)
        for partition, offset in (read_up_to or {}).items():
            batches[partition].put(CHECKPOINT_KEY, str(offset).encode())
        for partition, batch in batches.items():
            databases(partition).write(batch)

    def checkpoint(self, partition: int) -> int:
        """The changelog offset the local store of `partition` holds every record up to (-1: none known)."""
        databases = self._rocksdb
        if databases is None:
            return self._memory_checkpoints.get(partition, -1)
        found = databases(partition).get(CHECKPOINT_KEY)
        return int(found) if found is not None else -1

    def stocks(self) -> Iterator[SkuStock]:
        """The head of every SKU in this worker's table partitions (positions; not their history)."""
        for key, value in self.table.items():
            if not key.startswith(OFFSETS_PREFIX) and HISTORY_MARK not in key:
                yield head_of(self.codec, value)

    def stock(self, sku: str) -> SkuStock | None:
        raw = self.table.data.get(sku.encode())
        return head_of(self.codec, raw) if raw else None

    def holds(self) -> Iterator[tuple[str, Reservation]]:
        """Every open hold in this worker's table partitions, with its SKU (a scan of the table)."""
        mark = HISTORY_MARK + reservation_key("").encode()
        for key, value in self.table.items():
            if mark in key:
                held = history_from_record(*self.codec.decode_stored(value, Schema.HELD_RESERVATION))
                assert isinstance(held, Reservation)
                yield key.split(HISTORY_MARK, 1)[0].decode(), held

    def sizes(self) -> dict[str, tuple[int, int]]:
        """Records and bytes held locally: per partition from RocksDB's own estimates (its SST files and
        memtables), cheap at any size; the memory store (tests, demos) is one dict, counted as "all"."""
        data = self.table.data
        databases = getattr(data, "_dbs", None)
        if databases is not None:
            return {str(p): (int(db.property_int_value("rocksdb.estimate-num-keys") or 0),
                             int(db.property_int_value("rocksdb.total-sst-files-size") or 0)
                             + int(db.property_int_value("rocksdb.cur-size-all-mem-tables") or 0))
                    for p, db in list(databases.items())}
        held = getattr(data, "data", {})
        return {"all": (len(held), sum(len(k) + len(v) for k, v in list(held.items())))}

    def input_offsets(self, partition: int) -> dict[str, int]:
        """Per input topic, the offset after the last movement of `partition` whose outputs were delivered."""
        raw = self.get(offsets_key(partition), partition)
        return dict(self.codec.decode_stored(raw, Schema.INPUT_OFFSETS)[1]["next_offsets"]) if raw else {}

    def encode_offsets(self, partition: int, offsets: dict[str, int]) -> bytes:
        return self.codec.encode(Schema.INPUT_OFFSETS, {"partition": partition, "next_offsets": offsets})


class TableStore:
    """The stock table for one transaction (a StockStore). Reads see the table as committed; writes are held:
    their changelog records go into the transaction, and the local store takes them once it is committed."""

    def __init__(self, table: StockTable) -> None:
        self.table = table
        self.writes: dict[bytes, tuple[bytes | None, int]] = {}

    def get_raw(self, key: bytes, partition: int) -> bytes | None:
        held = self.writes.get(key)
        return held[0] if held is not None else self.table.get(key, partition)

    def scan_raw(self, prefix: bytes) -> Iterator[bytes]:
        """Every key that starts with `prefix` (a scan of the whole table: not for the hot path)."""
        return iter([key for key, _ in self.table.table.items() if key.startswith(prefix)]
                    + [key for key, (value, _) in self.writes.items() if key.startswith(prefix) and value is not None])

    def put_raw(self, key: bytes, value: bytes | None, partition: int) -> None:
        self.writes[key] = (value, partition)

    def changelog_records(self) -> list[OutputRecord]:
        changelog = self.table.changelog
        return [(changelog, key, value, partition) for key, (value, partition) in self.writes.items()]

    def committed(self, read_up_to: dict[int, int] | None = None) -> None:
        """The changelog records are committed: the local store takes them (faust's own table write would send
        a second changelog record), with its checkpoint (see StockTable.apply)."""
        self.table.apply(self.writes, read_up_to)
        self.writes = {}
