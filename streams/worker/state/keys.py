"""The stock table's key layout, in one place. Per SKU: its head under the SKU's key, and its history records
(streams.domain.history) under the SKU's key, byte 0x01, then what they are. Per partition: the InputOffsets record
under byte 0x00, "offsets:", the partition. Per order (in its order id's partition): its coordinator's state under
byte 0x02, "o:", the channel, ":", the order id; the ids of the orders a partition decided in a time bucket (forgotten
together once the order memory has passed) under byte 0x02, "d:", the partition, ":", the bucket. In each
partition's local store: the checkpoint."""

from __future__ import annotations

HISTORY_MARK = b"\x01"  # between a SKU and what its history record is (SKUs have no control characters)
OFFSETS_PREFIX = b"\x00"  # no SKU starts with NUL
ORDERS_MARK = b"\x02"  # nor with 0x02: orders' records
ORDER_PREFIX = ORDERS_MARK + b"o:"
DECIDED_PREFIX = ORDERS_MARK + b"d:"
# Where a partition's local RocksDB database keeps the changelog offset it holds every record up to: faust's own
# key for it (its "persisted offset"), so that faust's recovery, too, starts after it (the runtime checks it is).
CHECKPOINT_KEY = b"__faust\x00offset__"


def offsets_key(partition: int) -> bytes:
    """The stock-table key of a partition's InputOffsets record."""
    return OFFSETS_PREFIX + b"offsets:%d" % partition


def order_key(channel: str, order_id: str) -> bytes:
    """The stock-table key of an order's coordinator state (order ids are unique per channel)."""
    return ORDER_PREFIX + f"{channel}:{order_id}".encode()


def decided_key(partition: int, bucket: int) -> bytes:
    """The stock-table key of the orders of a partition decided in a time bucket (forgotten together)."""
    return DECIDED_PREFIX + b"%d:%d" % (partition, bucket)


def decided_bucket(key: bytes) -> tuple[int, int]:
    """(partition, bucket) of a decided_key."""
    partition, bucket = key[len(DECIDED_PREFIX):].split(b":")
    return int(partition), int(bucket)


def history_prefix(sku: str) -> bytes:
    """The start of every history record key of `sku`."""
    return sku.encode() + HISTORY_MARK


def is_head(key: bytes) -> bool:
    """Whether `key` is a SKU's head (not a history record, not a partition's offsets)."""
    return not key.startswith((OFFSETS_PREFIX, ORDERS_MARK)) and HISTORY_MARK not in key


def sku_of(key: bytes) -> str:
    """The SKU a head or history record key belongs to."""
    return key.split(HISTORY_MARK, 1)[0].decode()
