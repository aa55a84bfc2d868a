"""The stock table as stocksync reads and writes it: per SKU its head and history records, per partition the
InputOffsets record that says where that partition's committed movements end (the key layout:
streams.worker.state.keys), in a local store (streams.worker.state.stores) whose changelog faust declares."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import cached_property
from typing import Any

from streams.domain import SkuStock
from streams.domain.history import reservation_key
from streams.domain.stock import Reservation
from streams.wire.codec import SingleObjectCodec
from streams.wire.partitioner import sku_partition
from streams.wire.records import history_from_record
from streams.wire.schemas import Schema
from streams.worker.state.keys import (
    DECIDED_PREFIX,
    HISTORY_MARK,
    ORDER_PREFIX,
    decided_bucket,
    is_head,
    offsets_key,
    sku_of,
)
from streams.worker.state.records import head_of
from streams.worker.state.stores import LocalStore, Writes


class StockTable:
    """The worker's stock table: its changelog topic, and the local store that holds its partitions here."""

    def __init__(self, local_store: Callable[[], LocalStore], changelog: str, partitions: int,
                 codec: SingleObjectCodec) -> None:
        """`local_store`: made at first use (faust opens its stores late)."""
        self._local_store, self.changelog, self.partitions, self.codec = local_store, changelog, partitions, codec

    @cached_property
    def store(self) -> LocalStore:
        return self._local_store()

    def get(self, key: bytes, partition: int) -> bytes | None:
        return self.store.get(key, partition)

    def apply(self, writes: Writes, read_up_to: dict[int, int] | None = None) -> None:
        """Put records whose changelog records are committed into the local store (None: delete). `read_up_to`:
        per partition, the changelog offset the store then holds every record up to (its checkpoint), written in
        the same atomic batch as the records."""
        self.store.write(writes, read_up_to or {})

    def checkpoint(self, partition: int) -> int:
        """The changelog offset the local store of `partition` holds every record up to (-1: none known)."""
        return self.store.checkpoint(partition)

    def stocks(self) -> Iterator[SkuStock]:
        """The head of every SKU in this worker's table partitions (positions; not their history)."""
        for key, value in self.store.items():
            if is_head(key):
                yield head_of(self.codec, value)

    def stock(self, sku: str) -> SkuStock | None:
        raw = self.store.lookup(sku.encode(), sku_partition(sku, self.partitions))
        return head_of(self.codec, raw) if raw else None

    def holds(self) -> Iterator[tuple[str, Reservation]]:
        """Every open hold in this worker's table partitions, with its SKU (a scan of the table)."""
        mark = HISTORY_MARK + reservation_key("").encode()
        for key, value in self.store.items():
            if mark in key:
                held = history_from_record(*self.codec.decode_stored(value, Schema.HELD_RESERVATION))
                assert isinstance(held, Reservation)
                yield sku_of(key), held

    def order_states(self) -> Iterator[dict[str, Any]]:
        """Every order's coordinator state (OrderState records) in this worker's table partitions (a scan)."""
        for key, value in self.store.items():
            if key.startswith(ORDER_PREFIX):
                yield self.codec.decode_stored(value, Schema.ORDER_STATE)[1]

    def decided_buckets(self) -> Iterator[tuple[int, int]]:
        """The (partition, time bucket) of every record of decided orders in this worker's table partitions."""
        for key, _ in self.store.items():
            if key.startswith(DECIDED_PREFIX):
                yield decided_bucket(key)

    def sizes(self) -> dict[str, tuple[int, int]]:
        """Records and bytes held locally, per partition (the memory store: "all")."""
        return self.store.sizes()

    def memory(self) -> dict[str, int]:
        """Memory the local store holds outside Python, by what holds it."""
        return self.store.memory()

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
        return iter([key for key, _ in self.table.store.items() if key.startswith(prefix)]
                    + [key for key, (value, _) in self.writes.items() if key.startswith(prefix) and value is not None])

    def put_raw(self, key: bytes, value: bytes | None, partition: int) -> None:
        self.writes[key] = (value, partition)

    def changelog_records(self) -> list[tuple[str, bytes, bytes | None, int]]:
        changelog = self.table.changelog
        return [(changelog, key, value, partition) for key, (value, partition) in self.writes.items()]

    def committed(self, read_up_to: dict[int, int] | None = None) -> None:
        """The changelog records are committed: the local store takes them (faust's own table write would send
        a second changelog record), with its checkpoint (see StockTable.apply)."""
        self.table.apply(self.writes, read_up_to)
        self.writes = {}
