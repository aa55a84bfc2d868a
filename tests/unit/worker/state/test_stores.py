"""The local stores behind the stock table: a batch's records and its checkpoint land together; a scan sees only
the partitions this worker owns; a lookup opens nothing; both kinds answer the same."""

from __future__ import annotations

from pathlib import Path

import pytest
import rocksdict

from streams.worker.state.keys import CHECKPOINT_KEY
from streams.worker.state.stores import LocalStore, MemoryStore, RocksDBStore


class Databases:
    """One RocksDB database per partition, opened on first use, as faust's store keeps them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.open: dict[int, rocksdict.Rdict] = {}

    def database(self, partition: int) -> rocksdict.Rdict:
        if partition not in self.open:
            self.open[partition] = rocksdict.Rdict(str(self.root / str(partition)), options=rocksdict.Options(
                raw_mode=True))
        return self.open[partition]


def rocksdb(tmp_path: Path, owned: set[int]) -> tuple[RocksDBStore, Databases]:
    databases = Databases(tmp_path)
    return RocksDBStore(databases.database, lambda: databases.open, lambda: owned), databases


@pytest.fixture(params=["memory", "rocksdb"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> LocalStore:
    return MemoryStore({}) if request.param == "memory" else rocksdb(tmp_path, {0, 1})[0]


def test_records_and_checkpoints_are_written_together_and_read_back(store: LocalStore) -> None:
    assert store.checkpoint(0) == -1
    store.write({b"SKU-1": (b"one", 0), b"SKU-2": (b"two", 1)}, {0: 41, 1: 7})
    store.write({b"SKU-1": (None, 0)}, {0: 42})
    assert (store.get(b"SKU-1", 0), store.get(b"SKU-2", 1)) == (None, b"two")
    assert (store.checkpoint(0), store.checkpoint(1)) == (42, 7)
    assert dict(store.items()) == {b"SKU-2": b"two"}  # no checkpoint among the records


def test_a_scan_sees_only_owned_partitions_and_a_lookup_opens_nothing(tmp_path: Path) -> None:
    store, databases = rocksdb(tmp_path, owned={0})
    store.write({b"OWNED": (b"a", 0), b"STANDBY": (b"b", 1)}, {0: 1, 1: 1})
    assert dict(store.items()) == {b"OWNED": b"a"}
    assert store.lookup(b"STANDBY", 1) == b"b" and store.lookup(b"X", 5) is None
    assert set(databases.open) == {0, 1}
    assert databases.open[1].get(CHECKPOINT_KEY) == b"1"
    assert set(store.sizes()) == {"0", "1"}
