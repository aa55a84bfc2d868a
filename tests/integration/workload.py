"""A seeded multi-channel retail workload: sales, receipts, counts, transfers, returns and stock states,
reservations, duplicates, late POS."""

from __future__ import annotations

import random
import time
from typing import Any

from streams.domain import Kind, Movement

NETWORK: dict[str, Any] = {
    "locations": [
        {"id": "s1", "kind": "store", "latitude": 52.5, "longitude": 13.4, "ship_from": True, "pickup": True},
        {"id": "s2", "kind": "store", "latitude": 53.5, "longitude": 10.0, "ship_from": True, "pickup": True},
        {"id": "w1", "kind": "warehouse", "latitude": 51.3, "longitude": 9.5, "ship_from": True},
        {"id": "w2", "kind": "warehouse", "latitude": 51.3, "longitude": 12.4, "ship_from": True},
    ],
    "channels": [
        {"id": "pos-1", "locations": ["s1"]},
        {"id": "pos-2", "locations": ["s2"]},
        {"id": "web", "locations": ["s1", "s2", "w1", "w2"], "buffer": 2},
        {"id": "app", "locations": ["s1", "s2", "w1", "w2"], "buffer": 1},
        {"id": "market", "locations": ["w1", "w2"], "buffer": 3, "excluded_skus": ["SKU-0007"],
         "coalesce_ms": 500},
        {"id": "wms", "locations": ["s1", "s2", "w1", "w2"]},
    ],
}
LOCATIONS = ["s1", "s2", "w1", "w2"]


def retail_workload(size: int, skus: int, seed: int, expiring_after_ms: int = 3_000) -> list[Movement]:
    """`size` movements (plus re-sends) in arrival order; event times end about a minute before now."""
    rnd = random.Random(seed)
    now = int(time.time() * 1000)
    clock = now - 30 * 60 * 1000
    step = max(1, (29 * 60 * 1000) // size)
    sku_ids = [f"SKU-{i:04d}" for i in range(skus)]
    out: list[Movement] = []
    late_pos: list[Movement] = []
    reservations: list[tuple[str, str]] = []
    state_change = _StateChanges(rnd)
    n = 0

    def next_id(prefix: str) -> str:
        nonlocal n
        n += 1
        return f"{prefix}{n}"

    for sku in sku_ids:
        for loc in LOCATIONS:
            out.append(Movement(Kind.RECEIPT, next_id("r"), "wms", sku, loc, rnd.randint(5, 40), clock))
    while len(out) < size:
        clock += step
        sku = rnd.choice(sku_ids)
        roll = rnd.random()
        if roll < 0.35:
            store, channel = rnd.choice([("s1", "pos-1"), ("s2", "pos-2")])
            sale = Movement(Kind.SALE, next_id("s"), channel, sku, store, rnd.randint(1, 3), clock)
            (late_pos if channel == "pos-2" and rnd.random() < 0.3 else out).append(sale)
        elif roll < 0.50:
            out.append(Movement(Kind.RECEIPT, next_id("r"), "wms", sku, rnd.choice(LOCATIONS), rnd.randint(1, 20),
                                clock))
        elif roll < 0.55:
            # A cycle count as of a little while ago: it absorbs deltas before it, keeps those after.
            out.append(Movement(Kind.COUNT, next_id("c"), "wms", sku, rnd.choice(LOCATIONS), rnd.randint(0, 30),
                                clock - rnd.randint(0, 120_000)))
        elif roll < 0.58:
            out.append(Movement(Kind.ADJUSTMENT, next_id("a"), "wms", sku, rnd.choice(LOCATIONS),
                                rnd.choice([-2, -1, 1, 3]), clock, reason=rnd.choice(["damage", "correction"])))
        elif roll < 0.62:
            src, dst = rnd.sample(LOCATIONS, 2)
            tid = next_id("t")
            qty = rnd.randint(1, 5)
            out.append(Movement(Kind.TRANSFER_OUT, next_id("to"), "wms", sku, src, qty, clock, other_location=dst,
                                transfer_id=tid))
            if rnd.random() < 0.8:
                out.append(Movement(Kind.TRANSFER_IN, next_id("ti"), "wms", sku, dst, qty, clock + 60_000,
                                    other_location=src, transfer_id=tid))
        elif roll < 0.64:
            store, channel = rnd.choice([("s1", "pos-1"), ("s2", "pos-2")])
            if rnd.random() < 0.3:
                out.append(Movement(Kind.RETURN, next_id("rt"), channel, sku, store, 1, clock,
                                    resellable=rnd.random() < 0.7))
            else:
                out.append(Movement(Kind.RETURN, next_id("rt"), channel, sku, store, rnd.randint(1, 2), clock,
                                    returned_via=rnd.choice(["store", "post", "pickup_point"]),
                                    disposition=rnd.choice(["sellable", "inspect", "inspect", "damaged"])))
        elif roll < 0.67:
            out.append(state_change(sku, rnd.choice(LOCATIONS), next_id("st"), clock))
        elif roll < 0.89:
            channel = rnd.choice(["web", "app"])
            rid = next_id("res")
            expiring = rnd.random() < 0.15
            expires = now + (expiring_after_ms if expiring else 20 * 60 * 1000)
            location = rnd.choice([None, None, "w1", "w2", "s1"]) if channel == "web" else None
            out.append(Movement(Kind.RESERVATION_PLACED, next_id("p"), channel, sku, location, rnd.randint(1, 3),
                                clock, reservation_id=rid, expires_at=expires))
            if not expiring:
                reservations.append((channel, rid))
        elif reservations:
            channel, rid = reservations.pop(rnd.randrange(len(reservations)))
            kind = Kind.RESERVATION_FULFILLED if rnd.random() < 0.6 else Kind.RESERVATION_RELEASED
            placed = next(m for m in reversed(out) if m.reservation_id == rid)
            out.append(Movement(kind, next_id("x"), channel, placed.sku, None, 0, clock, reservation_id=rid))
    # The offline store uploads its sales at the end; at-least-once delivery re-sends some movements (a state
    # change only after itself: a copy ahead of the units it moves would be dead-lettered as it should be).
    out.extend(late_pos)
    for m in rnd.sample(out, len(out) // 30):
        after = out.index(m) + 1 if m.state_deltas and m.kind is Kind.ADJUSTMENT else 0
        out.insert(rnd.randint(after, len(out)), m)
    return out


class _StateChanges:
    """The warehouse's state changes: units into quality control or quarantine, and out of the units it put
    there itself (its movements share a topic, so they arrive in order; returns come on the stores' topics)."""

    def __init__(self, rnd: random.Random) -> None:
        self.rnd = rnd
        self.held: dict[tuple[str, str, str], int] = {}

    def __call__(self, sku: str, location: str, event_id: str, at: int) -> Movement:
        rnd = self.rnd
        full = [(state, units) for (s, loc, state), units in self.held.items() if (s, loc) == (sku, location)
                and units > 0]
        if full and rnd.random() < 0.6:
            state, units = rnd.choice(full)
            units = rnd.randint(1, units)
            to_state = rnd.choice({"quality_control": ["sellable", "damaged"], "quarantine": ["sellable"],
                                   "damaged": ["written_off"]}[state])
            self.held[sku, location, state] -= units
            if to_state == "damaged":
                self.held[sku, location, to_state] = self.held.get((sku, location, to_state), 0) + units
            return Movement(Kind.ADJUSTMENT, event_id, "wms", sku, location, units, at, state=state,
                            to_state=to_state, reason="damage" if to_state == "written_off" else "inspected")
        to_state, units = rnd.choice(["quality_control", "quarantine"]), rnd.randint(1, 3)
        self.held[sku, location, to_state] = self.held.get((sku, location, to_state), 0) + units
        return Movement(Kind.ADJUSTMENT, event_id, "wms", sku, location, units, at, to_state=to_state,
                        reason="recall" if to_state == "quarantine" else "")


ORDER_PREFIX = "chaos-order-"


def order_workload(count: int, skus: int, seed: int) -> list[tuple[str, dict[str, Any]]]:
    """`count` orders of the web and app channels, (channel, OrderRequest record): carts of 1 to 4 SKUs of the
    retail workload, held for an hour (nothing lapses while a run settles); one in three has no delivery point
    (its figures are asked for first), the others one (a cart held first, a single line in one round)."""
    rnd = random.Random(seed * 7 + 1)
    now = int(time.time() * 1000)
    orders = []
    for n in range(count):
        chosen = rnd.sample([f"SKU-{i:04d}" for i in range(skus)], rnd.randint(1, 4))
        lines = [{"line_id": str(i + 1), "sku": sku, "quantity": rnd.randint(1, 2), "alias": None}
                 for i, sku in enumerate(chosen)]
        deliver_to = (None, None) if n % 3 == 2 else (52.0, 11.0)
        request = {"order_id": f"{ORDER_PREFIX}{seed}-{n}", "lines": lines, "latitude": deliver_to[0],
                   "longitude": deliver_to[1],
                   "mode": "ship", "max_split": None, "partial": False, "expires_at": now + 3_600_000,
                   "requested_at": now}
        orders.append((rnd.choice(["web", "app"]), request))
    return orders
