"""One SKU's state in the stock table: its head and its history records (streams.domain.history), keyed as
streams.worker.state.keys lays them out. Every record is checked against the record limit where it is built."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Protocol

from streams.domain import SkuStock
from streams.domain.history import MemoryRecords
from streams.errors import StocksyncError
from streams.wire.codec import SingleObjectCodec
from streams.wire.records import (
    HISTORY_SCHEMAS,
    head_of_old_state,
    head_to_record,
    history_from_record,
    history_to_record,
    stock_from_head,
    stock_from_old_state,
)
from streams.wire.schemas import Schema
from streams.worker.state.keys import history_prefix


class StockStore(Protocol):
    """The stock table as a batch sees it: reads are immediate, writes (None: delete) are held until the batch
    commits."""

    def get_raw(self, key: bytes, partition: int) -> bytes | None: ...

    def put_raw(self, key: bytes, value: bytes | None, partition: int) -> None: ...

    def scan_raw(self, prefix: bytes) -> Iterator[bytes]: ...


class RecordTooLarge(StocksyncError):
    """A record this worker would write is over its limit (STOCKSYNC_MAX_RECORD_BYTES)."""

    def __init__(self, what: str, size: int, limit: int) -> None:
        super().__init__(f"a {what} record of {size} bytes is over the {limit}-byte limit (STOCKSYNC_MAX_RECORD_BYTES)")


class RecordEncoder:
    """Encodes every record this worker writes (state and outputs), checked against the record limit here and
    only here: past it, the broker would refuse the record for good."""

    def __init__(self, codec: SingleObjectCodec, limit: int) -> None:
        self.codec, self.limit = codec, limit

    def encode(self, schema: Schema, record: Mapping[str, Any]) -> bytes:
        """The record's bytes; RecordTooLarge past the limit."""
        data = self.codec.encode(schema, record)
        if len(data) > self.limit:
            raise RecordTooLarge(schema.value, len(data), self.limit)
        return data


def head_of(codec: SingleObjectCodec, raw: bytes) -> SkuStock:
    """A SKU's positions from its head record (or from the single record of earlier versions), without its
    history."""
    name, record = codec.decode_stored(raw, Schema.SKU_HEAD, Schema.SKU_STOCK_STATE)
    return stock_from_head(record, MemoryRecords()) if name == Schema.SKU_HEAD else head_of_old_state(record)


class TableRecords:
    """One SKU's state in the table: `load` its head, and its history records as the domain's RecordStore. Writes
    stay here until `write_to` hands them to the batch's store, so a SKU that fails half-way leaves nothing."""

    def __init__(self, store: StockStore, sku: str, partition: int, encoder: RecordEncoder) -> None:
        self.store, self.sku, self.partition = store, sku, partition
        self.codec, self.encode = encoder.codec, encoder.encode
        self.prefix = history_prefix(sku)
        self.values: dict[str, object | None] = {}  # decoded, or written by this SKU's batch (None: deleted)
        self.changed: dict[str, bytes | None] = {}  # encoded writes, by key
        self.head: bytes | None = None

    def load(self, bucket_ms: int) -> tuple[SkuStock, bool]:
        """The SKU as stored, and whether it was stored by an earlier version (converted now: write it)."""
        raw = self.store.get_raw(self.sku.encode(), self.partition)
        if not raw:
            return SkuStock(self.sku, records=self), False
        name, record = self.codec.decode_stored(raw, Schema.SKU_HEAD, Schema.SKU_STOCK_STATE)
        if name == Schema.SKU_HEAD:
            return stock_from_head(record, self), False
        return stock_from_old_state(record, self, bucket_ms), True

    def save(self, stock: SkuStock) -> None:
        self.head = self.encode(Schema.SKU_HEAD, head_to_record(stock))

    # --- the domain's RecordStore ----------------------------------------------------------------------------
    def get(self, key: str) -> object | None:
        if key in self.values:
            return self.values[key]
        raw = self.store.get_raw(self.prefix + key.encode(), self.partition)
        value = history_from_record(*self.codec.decode_stored(raw, *HISTORY_SCHEMAS)) if raw else None
        self.values[key] = value
        return value

    def put(self, key: str, value: object) -> None:
        schema, record = history_to_record(value)
        self.changed[key] = self.encode(schema, record)
        self.values[key] = value

    def delete(self, key: str) -> None:
        self.changed[key] = None
        self.values[key] = None

    def scan(self, prefix: str) -> Iterator[tuple[str, object]]:
        """This SKU's records whose key starts with `prefix` (a scan of the whole table: not for the hot path)."""
        start = self.prefix + prefix.encode()
        keys = {key[len(self.prefix):].decode() for key in self.store.scan_raw(start)}
        keys |= {key for key in self.changed if key.startswith(prefix)}
        for key in sorted(keys):
            value = self.get(key)
            if value is not None:
                yield key, value

    # --- writing ---------------------------------------------------------------------------------------------
    def write_to(self, store: StockStore) -> int:
        """Hand this SKU's head (if saved) and changed records to the batch's store; returns how many."""
        if self.head is not None:
            store.put_raw(self.sku.encode(), self.head, self.partition)
        for key, value in self.changed.items():
            store.put_raw(self.prefix + key.encode(), value, self.partition)
        return len(self.changed) + (self.head is not None)
