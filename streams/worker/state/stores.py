"""The local stores behind the stock table, one protocol and two kinds: memory (tests, demos: gone with the
process) and RocksDB (one database per table partition, its checkpoint written in the same atomic batch as the
records). The runtime makes one from the store faust opened for the table (streams.worker.runtime.stores)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Collection, Iterator, Mapping, MutableMapping
from typing import Any, Protocol

import rocksdict

from streams.worker.state.keys import CHECKPOINT_KEY

# What a batch or a changelog chunk puts into the local store: per key, its value (None: delete) and partition.
Writes = Mapping[bytes, tuple[bytes | None, int]]


class LocalStore(Protocol):
    """A worker's local copy of its table partitions: raw records, and per partition the changelog offset it holds
    every record up to (its checkpoint)."""

    def get(self, key: bytes, partition: int) -> bytes | None:
        """The hot path's read of a partition this worker owns, restores or follows."""

    def lookup(self, key: bytes, partition: int) -> bytes | None:
        """A read that opens nothing (a partition that is not open here has nothing)."""

    def write(self, writes: Writes, read_up_to: Mapping[int, int]) -> None:
        """Put `writes` and, per partition in `read_up_to`, the checkpoint, in one atomic batch per partition."""

    def checkpoint(self, partition: int) -> int:
        """The changelog offset the partition holds every record up to (-1: none known)."""

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        """Every record of the partitions this worker owns (a scan: not for the hot path)."""

    def sizes(self) -> dict[str, tuple[int, int]]:
        """Records and bytes held, per partition (or "all")."""

    def memory(self) -> dict[str, int]:
        """Bytes of memory the store holds beyond Python's objects, by what holds them (nothing for a dict)."""


class MemoryStore:
    """One dict for every partition, for the process's life; so are its checkpoints."""

    def __init__(self, data: MutableMapping[bytes, bytes]) -> None:
        self.data = data
        self.checkpoints: dict[int, int] = {}

    def get(self, key: bytes, partition: int) -> bytes | None:
        return self.data.get(key)

    lookup = get

    def write(self, writes: Writes, read_up_to: Mapping[int, int]) -> None:
        data = self.data
        for key, (value, _) in writes.items():
            if value is not None:
                data[key] = value
            else:
                data.pop(key, None)
        self.checkpoints.update(read_up_to)

    def checkpoint(self, partition: int) -> int:
        return self.checkpoints.get(partition, -1)

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        return iter(list(self.data.items()))

    def sizes(self) -> dict[str, tuple[int, int]]:
        held = self.data
        return {"all": (len(held), sum(len(k) + len(v) for k, v in list(held.items())))}

    def memory(self) -> dict[str, int]:
        return {}


class RocksDBStore:
    """A RocksDB database per partition, read and written directly: `database(partition)` opens one when it is not
    open yet, `open_databases()` are those open now, `owned()` the partitions this worker owns."""

    def __init__(self, database: Callable[[int], Any], open_databases: Callable[[], Mapping[int, Any]],
                 owned: Callable[[], Collection[int]]) -> None:
        self.database, self.open_databases, self.owned = database, open_databases, owned

    def get(self, key: bytes, partition: int) -> bytes | None:
        found: bytes | None = self.database(partition).get(key)
        return found

    def lookup(self, key: bytes, partition: int) -> bytes | None:
        database = self.open_databases().get(partition)
        found: bytes | None = database.get(key) if database is not None else None
        return found

    def write(self, writes: Writes, read_up_to: Mapping[int, int]) -> None:
        batches: defaultdict[int, Any] = defaultdict(lambda: rocksdict.WriteBatch(raw_mode=True))
        for key, (value, partition) in writes.items():
            if value is not None:
                batches[partition].put(key, value)
            else:
                batches[partition].delete(key)
        for partition, offset in read_up_to.items():
            batches[partition].put(CHECKPOINT_KEY, str(offset).encode())
        for partition, batch in batches.items():
            self.database(partition).write(batch)

    def checkpoint(self, partition: int) -> int:
        found = self.database(partition).get(CHECKPOINT_KEY)
        return int(found) if found is not None else -1

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        owned = set(self.owned())
        for partition, database in list(self.open_databases().items()):
            if partition in owned:
                for key, value in database.items():
                    if key != CHECKPOINT_KEY:
                        yield key, value

    def sizes(self) -> dict[str, tuple[int, int]]:
        """From RocksDB's own estimates (its SST files and memtables): cheap at any size."""
        return {str(p): (int(db.property_int_value("rocksdb.estimate-num-keys") or 0),
                         int(db.property_int_value("rocksdb.total-sst-files-size") or 0)
                         + int(db.property_int_value("rocksdb.cur-size-all-mem-tables") or 0))
                for p, db in list(self.open_databases().items())}

    def memory(self) -> dict[str, int]:
        """RocksDB's own memory over every open partition, from its properties: memtables (bounded by
        STOCKSYNC_ROCKSDB_WRITE_BUFFER_MB x 2 per partition), the block cache (STOCKSYNC_ROCKSDB_BLOCK_CACHE_MB per
        partition: it fills as data is read, up to that) and the SST files' indexes and filters."""
        found = dict.fromkeys(_MEMORY_PROPERTIES, 0)
        for database in list(self.open_databases().values()):
            for kind, name in _MEMORY_PROPERTIES.items():
                found[kind] += int(database.property_int_value(name) or 0)
        return found


_MEMORY_PROPERTIES = {"memtables": "rocksdb.cur-size-all-mem-tables", "block_cache": "rocksdb.block-cache-usage",
                      "table_readers": "rocksdb.estimate-table-readers-mem"}
