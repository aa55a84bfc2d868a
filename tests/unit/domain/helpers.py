"""A small network and a movement factory shared by the domain tests."""

from __future__ import annotations

import itertools
from typing import Any

from streams.domain import Kind, Movement, Network, SkuStock
from streams.domain.history import DeltaChunk, SeenEvent

NETWORK = Network.from_dict({
    "locations": [
        {"id": "store-a", "kind": "store", "latitude": 52.52, "longitude": 13.40, "ship_from": True, "pickup": True},
        {"id": "store-b", "kind": "store", "latitude": 48.14, "longitude": 11.58, "ship_from": True, "pickup": True},
        {"id": "wh-1", "kind": "warehouse", "latitude": 50.11, "longitude": 8.68, "ship_from": True,
         "handling_cost": 5.0},
    ],
    "channels": [
        {"id": "pos-a", "locations": ["store-a"]},
        {"id": "pos-b", "locations": ["store-b"]},
        {"id": "web", "locations": ["store-a", "store-b", "wh-1"], "buffer": 2},
        {"id": "market", "locations": ["wh-1"], "buffer": 1, "excluded_skus": ["SKU-X"]},
        {"id": "wms", "locations": ["store-a", "store-b", "wh-1"]},
    ],
})
NOW = 10_000_000
_ids = itertools.count()


def mv(kind: Kind | str, location: str | None = "wh-1", quantity: int = 1, at: int = 1_000, channel: str = "wms",
       sku: str = "SKU-1", event_id: str | None = None, **extra: Any) -> Movement:
    event = f"e{next(_ids)}" if event_id is None else event_id
    return Movement(Kind(kind), event, channel, sku, location, quantity, at, **extra)


def remembered(stock: SkuStock) -> dict[str, SeenEvent]:
    """The events a SKU remembers, by event key (its `e:` history records)."""
    return {key.removeprefix("e:"): value for key, value in stock.records.scan("e:") if isinstance(value, SeenEvent)}


def recorded_deltas(stock: SkuStock) -> dict[str, list[tuple[int, str, int]]]:
    """The deltas a SKU has recorded for counts, per location, in a canonical order."""
    found: dict[str, list[tuple[int, str, int]]] = {}
    for key, value in stock.records.scan("d:"):
        if isinstance(value, DeltaChunk):
            location = key.removeprefix("d:").rsplit(":", 2)[0]
            found.setdefault(location, []).extend(value.entries)
    return {location: sorted(entries) for location, entries in found.items()}


def same_state(one: SkuStock, other: SkuStock) -> bool:
    """Equal heads (the history index aside: how records are split depends on how movements were batched) and
    equal history."""
    head = (one.positions, one.version, one.watermark, one.floor)
    return head == (other.positions, other.version, other.watermark, other.floor) \
        and remembered(one) == remembered(other) and recorded_deltas(one) == recorded_deltas(other) \
        and one.open_reservations() == other.open_reservations() \
        and list(one.records.scan("t:")) == list(other.records.scan("t:"))
