"""The stock table's key layout, in one place. Per SKU: its head under the SKU's key, and its history records
(streams.domain.history) under the SKU's key, byte 0x01, then what they are. Per partition: the InputOffsets record
under byte 0x00, "offsets:", the partition. Per order (in its order id's partition): its coordinator's state under
byte 0x02, "o:", the channel, ":", the order id. In each partition's local store: the checkpoint."""

from __future__ import annotations

HISTORY_MARK = b"\x01"  # between a SKU and what its history record is (SKUs have no control characters)
OFFSETS_PREFIX = b"\x00"  # no SKU starts with NUL
ORDER_PREFIX = b"\x02o:"  # nor with 0x02
# Where a partition's local RocksDB database keeps the changelog offset it holds every record up to: faust's own
# key for it (its "persisted offset"), so that faust's recovery, too, starts after it (the runtime checks it is).
CHECKPOINT_KEY = b"__faust\x00offset__"


def offsets_key(partition: int) -> bytes:
    """The stock-table key of a partition's InputOffsets record."""
    return OFFSETS_PREFIX + b"offsets:%d" % partition


def order_key(channel: str, order_id: str) -> bytes:
    """The stock-table key of an order's coordinator state (order ids are unique per channel)."""
    return ORDER_PREFIX + f"{channel}:{order_id}".encode()


def history_prefix(sku: str) -> bytes:
    """The start of every history record key of `sku`."""
    return sku.encode() + HISTORY_MARK


def is_head(key: bytes) -> bool:
    """Whether `key` is a SKU's head (not a history record, not a partition's offsets)."""
    return not key.startswith(OFFSETS_PREFIX) and not key.startswith(ORDER_PREFIX) and HISTORY_MARK not in key


def sku_of(key: bytes) -> str:
    """The SKU a head or history record key belongs to."""
    return key.split(HISTORY_MARK, 1)[0].decode()
