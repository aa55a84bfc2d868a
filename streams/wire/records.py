"""Where domain objects meet wire records (dicts shaped by schemas/*.avsc): to_* and *_from functions."""

from __future__ import annotations

from typing import Any

from streams.domain import Kind, Movement, Network, Position, ReservationDecision, SkuStock
from streams.domain.stock import Reservation


def movement_to_record(m: Movement) -> dict[str, Any]:
    return {"kind": m.kind.value, "event_id": m.event_id, "sku": m.sku, "location": m.location,
            "quantity": m.quantity, "occurred_at": m.occurred_at, "reason": m.reason, "resellable": m.resellable,
            "other_location": m.other_location, "transfer_id": m.transfer_id, "reservation_id": m.reservation_id,
            "expires_at": m.expires_at}


def movement_from_record(record: dict[str, Any], channel: str) -> Movement:
    """The channel comes from the topic the record arrived on, never from the payload."""
    return Movement(Kind(record["kind"]), record["event_id"], channel, record["sku"], record["location"],
                    record["quantity"], record["occurred_at"], record["reason"], record["resellable"],
                    record["other_location"], record["transfer_id"], record["reservation_id"], record["expires_at"])


def figures(p: Position) -> dict[str, int]:
    return {"on_hand": p.on_hand, "reserved": p.reserved, "safety_stock": p.safety_stock,
            "in_transit": p.in_transit, "available": p.available}


def position_record(p: Position, now: int) -> dict[str, Any]:
    return {"sku": p.sku, "location": p.location, "figures": figures(p), "version": p.version, "updated_at": now}


def decision_record(d: ReservationDecision, version: int, event_id: str, now: int) -> dict[str, Any]:
    return {"channel": d.channel, "reservation_id": d.reservation_id, "sku": d.sku, "accepted": d.accepted,
            "quantity": d.quantity, "reason": d.reason,
            "parts": [{"location": loc, "quantity": units} for loc, units in d.parts],
            "expires_at": d.expires_at, "version": version, "event_id": event_id, "decided_at": now}


def network_to_record(network: Network, now: int) -> dict[str, Any]:
    return {**network.to_dict(), "applied_at": now}


def network_from_record(record: dict[str, Any]) -> Network:
    return Network.from_dict(record)


# --- the stock table value ----------------------------------------------------------------------------------
def stock_to_record(stock: SkuStock) -> dict[str, Any]:
    return {
        "sku": stock.sku, "version": stock.version, "watermark": stock.watermark, "floor": stock.floor,
        "positions": [{"location": p.location, "on_hand": p.on_hand, "reserved": p.reserved,
                       "safety_stock": p.safety_stock, "in_transit": p.in_transit, "version": p.version,
                       "counted_at": p.counted_at, "count_key": p.count_key, "safety_at": p.safety_at}
                      for p in stock.positions.values()],
        "seen": "\n".join(f"{key}\t{t}\t{result}" for key, (t, result) in stock.seen.items()),
        "deltas": {loc: "\n".join(f"{t}\t{key}\t{d}" for t, key, d in entries)
                   for loc, entries in stock.deltas.items() if entries},
        "reservations": [{"channel": r.channel, "reservation_id": r.reservation_id,
                          "parts": [{"location": loc, "quantity": units} for loc, units in r.parts],
                          "expires_at": r.expires_at, "placed_at": r.placed_at}
                         for r in stock.reservations.values()],
        "transfers": [{"transfer_id": tid, "destination": dest, "outstanding": units}
                      for tid, (dest, units) in stock.transfers.items()],
    }


def stock_from_record(record: dict[str, Any]) -> SkuStock:
    sku = record["sku"]
    stock = SkuStock(sku, version=record["version"], watermark=record["watermark"], floor=record["floor"])
    stock.positions = {
        p["location"]: Position(sku, p["location"], p["on_hand"], p["reserved"], p["safety_stock"],
                                p["in_transit"], p["version"], p["counted_at"], p["count_key"], p["safety_at"])
        for p in record["positions"]}
    if record["seen"]:
        for line in record["seen"].split("\n"):
            key, t, result = line.split("\t")
            stock.seen[key] = (int(t), result)
    for loc, text in record["deltas"].items():
        entries = []
        for line in text.split("\n"):
            t, key, d = line.split("\t")
            entries.append((int(t), key, int(d)))
        stock.deltas[loc] = entries
    for r in record["reservations"]:
        res = Reservation(r["channel"], r["reservation_id"],
                          tuple((p["location"], p["quantity"]) for p in r["parts"]), r["expires_at"], r["placed_at"])
        stock.reservations[res.key] = res
    stock.transfers = {t["transfer_id"]: (t["destination"], t["outstanding"]) for t in record["transfers"]}
    return stock
