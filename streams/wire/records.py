"""Where domain objects meet wire records (dicts shaped by schemas/*.avsc): to_* and *_from functions."""

from __future__ import annotations

from typing import Any

from streams.domain import Kind, Movement, Network, Position, ReservationDecision, SkuStock
from streams.domain.demand import RecentSales
from streams.domain.history import (
    DeltaChunk,
    DeltaSummary,
    EventChunk,
    History,
    HistoryIndex,
    RecordStore,
    SeenEvent,
    TransferInTransit,
    reservation_key,
    transfer_key,
)
from streams.domain.stock import Reservation
from streams.domain.transfers import TransferSuggestion
from streams.wire.schemas import Schema


def movement_to_record(m: Movement) -> dict[str, Any]:
    return {"kind": m.kind.value, "event_id": m.event_id, "sku": m.sku, "location": m.location,
            "quantity": m.quantity, "occurred_at": m.occurred_at, "reason": m.reason, "resellable": m.resellable,
            "other_location": m.other_location, "transfer_id": m.transfer_id, "reservation_id": m.reservation_id,
            "expires_at": m.expires_at, "latitude": m.latitude, "longitude": m.longitude, "mode": m.mode,
            "alias": m.alias, "returned_via": m.returned_via, "disposition": m.disposition, "state": m.state,
            "to_state": m.to_state}


def movement_from_record(record: dict[str, Any], channel: str) -> Movement:
    """The channel comes from the topic the record arrived on, never from the payload."""
    return Movement(Kind(record["kind"]), record["event_id"], channel, record["sku"], record["location"],
                    record["quantity"], record["occurred_at"], record["reason"], record["resellable"],
                    record["other_location"], record["transfer_id"], record["reservation_id"], record["expires_at"],
                    record.get("latitude"), record.get("longitude"), record.get("mode"), record.get("alias"),
                    returned_via=record.get("returned_via"), disposition=record.get("disposition"),
                    state=record.get("state"), to_state=record.get("to_state"))


def figures(p: Position) -> dict[str, int]:
    return {"on_hand": p.on_hand, "reserved": p.reserved, "safety_stock": p.safety_stock,
            "in_transit": p.in_transit, "available": p.available, "quality_control": p.quality_control,
            "damaged": p.damaged, "quarantine": p.quarantine}


def position_record(p: Position, now: int) -> dict[str, Any]:
    return {"sku": p.sku, "location": p.location, "figures": figures(p), "version": p.version, "updated_at": now}


def decision_record(d: ReservationDecision, version: int, event_id: str, now: int, alias: str | None = None
                    ) -> dict[str, Any]:
    return {"channel": d.channel, "reservation_id": d.reservation_id, "sku": d.sku, "accepted": d.accepted,
            "quantity": d.quantity, "reason": d.reason,
            "parts": [{"location": loc, "quantity": units} for loc, units in d.parts],
            "expires_at": d.expires_at, "version": version, "event_id": event_id, "decided_at": now,
            "sourcing": [{"location": loc, "distance_km": km, "cost": cost} for loc, km, cost in d.sourcing],
            "alias": alias}


def suggestion_record(s: TransferSuggestion, version: int, now: int) -> dict[str, Any]:
    return {"sku": s.sku, "source": s.source, "destination": s.destination, "units": s.units,
            "distance_km": s.distance_km, "reason": s.reason, "version": version, "suggested_at": now}


def network_to_record(network: Network, now: int) -> dict[str, Any]:
    return {**network.to_dict(), "applied_at": now}


def network_from_record(record: dict[str, Any]) -> Network:
    return Network.from_dict(record)


# --- the stock table: a SKU's head and its history records ------------------------------------------------
def _position_to_record(p: Position) -> dict[str, Any]:
    return {"location": p.location, "on_hand": p.on_hand, "reserved": p.reserved, "safety_stock": p.safety_stock,
            "in_transit": p.in_transit, "version": p.version, "counted_at": p.counted_at, "count_key": p.count_key,
            "safety_at": p.safety_at, "quality_control": p.quality_control, "damaged": p.damaged,
            "quarantine": p.quarantine}


def _positions_from_record(sku: str, positions: list[dict[str, Any]]) -> dict[str, Position]:
    return {p["location"]: Position(sku, p["location"], p["on_hand"], p["reserved"], p["safety_stock"],
                                    p["in_transit"], p["version"], p["counted_at"], p["count_key"], p["safety_at"],
                                    p.get("quality_control", 0), p.get("damaged", 0), p.get("quarantine", 0))
            for p in positions}


def head_to_record(stock: SkuStock) -> dict[str, Any]:
    index = stock.index
    return {"sku": stock.sku, "version": stock.version, "watermark": stock.watermark, "floor": stock.floor,
            "positions": [_position_to_record(p) for p in stock.positions.values()], "bucket_ms": index.bucket_ms,
            "event_chunks": {str(bucket): n for bucket, n in index.event_chunks.items()},
            "delta_locations": dict(index.delta_locations), "sales_day": stock.sales.day,
            "recent_sales": stock.sales.units}


def stock_from_head(record: dict[str, Any], records: RecordStore) -> SkuStock:
    sku = record["sku"]
    index = HistoryIndex(record["bucket_ms"], {int(b): n for b, n in record["event_chunks"].items()},
                         dict(record["delta_locations"]))
    return SkuStock(sku, _positions_from_record(sku, record["positions"]), record["version"], record["watermark"],
                    record["floor"], index, records, RecentSales(record["sales_day"], record["recent_sales"]))


def _reservation_from_record(r: dict[str, Any]) -> Reservation:
    return Reservation(r["channel"], r["reservation_id"], tuple((p["location"], p["quantity"]) for p in r["parts"]),
                       r["expires_at"], r["placed_at"])


def history_to_record(value: object) -> tuple[Schema, dict[str, Any]]:
    """A history record (streams.domain.history) as the schema and record it is written with."""
    if isinstance(value, SeenEvent):
        return Schema.SEEN_EVENT, {"at": value.at, "result": value.result}
    if isinstance(value, EventChunk):
        return Schema.EVENT_CHUNK, {"keys": "\n".join(value.keys)}
    if isinstance(value, DeltaChunk):
        return Schema.DELTA_CHUNK, {"entries": "\n".join(f"{t}\t{key}\t{d}" for t, key, d in value.entries)}
    if isinstance(value, DeltaSummary):
        return Schema.DELTA_SUMMARY, {"buckets": [{"bucket": b, "sum": total, "records": n}
                                                  for b, (total, n) in sorted(value.buckets.items())]}
    if isinstance(value, Reservation):
        return Schema.HELD_RESERVATION, {
            "channel": value.channel, "reservation_id": value.reservation_id, "expires_at": value.expires_at,
            "parts": [{"location": loc, "quantity": units} for loc, units in value.parts], "placed_at": value.placed_at}
    if isinstance(value, TransferInTransit):
        return Schema.TRANSFER_IN_TRANSIT, {"destination": value.destination, "outstanding": value.outstanding}
    raise TypeError(f"not a history record: {type(value).__name__}")


def history_from_record(name: str, record: dict[str, Any]) -> object:
    if name == Schema.SEEN_EVENT:
        return SeenEvent(record["at"], record["result"])
    if name == Schema.EVENT_CHUNK:
        return EventChunk(tuple(record["keys"].split("\n")) if record["keys"] else ())
    if name == Schema.DELTA_CHUNK:
        entries = []
        for line in record["entries"].split("\n") if record["entries"] else ():
            t, key, d = line.split("\t")
            entries.append((int(t), key, int(d)))
        return DeltaChunk(tuple(entries))
    if name == Schema.DELTA_SUMMARY:
        return DeltaSummary({b["bucket"]: (b["sum"], b["records"]) for b in record["buckets"]})
    if name == Schema.HELD_RESERVATION:
        return _reservation_from_record(record)
    if name == Schema.TRANSFER_IN_TRANSIT:
        return TransferInTransit(record["destination"], record["outstanding"])
    raise ValueError(f"not a history record: {name}")


HISTORY_SCHEMAS = (Schema.SEEN_EVENT, Schema.EVENT_CHUNK, Schema.DELTA_CHUNK, Schema.DELTA_SUMMARY,
                   Schema.HELD_RESERVATION, Schema.TRANSFER_IN_TRANSIT)


def head_of_old_state(record: dict[str, Any]) -> SkuStock:
    """The positions of a SKU as earlier versions stored it, without its history."""
    sku = record["sku"]
    return SkuStock(sku, _positions_from_record(sku, record["positions"]), record["version"], record["watermark"],
                    record["floor"])


def stock_from_old_state(record: dict[str, Any], records: RecordStore, bucket_ms: int) -> SkuStock:
    """A SKU as earlier versions stored it (one SkuStockState holding everything), converted: its head, and its
    history written to `records` as history records."""
    sku = record["sku"]
    stock = SkuStock(sku, _positions_from_record(sku, record["positions"]), record["version"], record["watermark"],
                     record["floor"], HistoryIndex(), records)
    history = History(records, stock.index, bucket_ms)
    for line in record["seen"].split("\n") if record["seen"] else ():
        key, t, result = line.split("\t")
        history.remember(key, int(t), result)
    for location, text in record["deltas"].items():
        for line in text.split("\n") if text else ():
            t, key, d = line.split("\t")
            history.record_delta(location, int(t), key, int(d))
    history.flush()
    for r in record["reservations"]:
        held = _reservation_from_record(r)
        records.put(reservation_key(held.key), held)
    for t in record["transfers"]:
        records.put(transfer_key(t["transfer_id"]), TransferInTransit(t["destination"], t["outstanding"]))
    return stock
