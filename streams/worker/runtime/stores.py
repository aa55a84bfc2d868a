"""faust's stores of the stock table, as the state room's LocalStore: faust declares the table and opens one store
per partition (RocksDB) or one dict (memory); stocksync reads and writes them directly, past faust's event context,
key codecs and key-index cache (a quarter of a batch's table time), as its own restore and commits need."""

from __future__ import annotations

from typing import Any

from faust.stores.rocksdb import Store as FaustRocksDB

from streams.worker.state.keys import CHECKPOINT_KEY
from streams.worker.state.stores import LocalStore, MemoryStore, RocksDBStore

if FaustRocksDB.offset_key != CHECKPOINT_KEY:  # faust's recovery would start elsewhere than the store's checkpoint
    raise ImportError(f"faust keeps a store's offset under {FaustRocksDB.offset_key!r}, not {CHECKPOINT_KEY!r}")


def local_store(table: Any) -> LocalStore:
    """The store faust opened for `table` (call it once faust has made it: at the first batch, not at start)."""
    data: Any = table.data
    if isinstance(data, FaustRocksDB):
        changelog = table.changelog_topic.get_topic_name()
        return RocksDBStore(
            database=data._db_for_partition,  # noqa: SLF001 - opens a partition's database on first use
            open_databases=lambda: data._dbs,  # noqa: SLF001
            owned=lambda: {tp.partition for tp in table.app.assignor.assigned_actives() if tp.topic == changelog})
    # The memory store: a dict holding the bytes that faust's raw codecs pass through (through faust, a
    # transaction of 30,000 records held the event loop for 0.2 s).
    return MemoryStore(data.data)
