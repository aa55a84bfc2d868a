"""Sourcing a whole order: where to fill every line of a cart from, in the fewest parcels, then at the lowest cost.

A parcel is one shipment from one location; it costs that location's shipment cost (distance_weight x km to the
delivery point + its handling cost), whatever it carries. A plan therefore minimises the number of locations it
uses first (at most `max_split` of them), then the sum of their costs (ties break on the sorted location ids).
Within the chosen locations each line takes from the cheapest first, never more than a location has available,
and never more in total than the channel may sell of the SKU (its ATS, which counts the channel's buffer). A
pickup order is planned for one store that has every line. The planner decides nothing about holds: the order's
coordinator asks each line's owner for its figures, plans, then holds where the plan says.

Lines are all or nothing each. Without `partial`, an order whose lines cannot all be filled is refused, naming
the first line that cannot; with it, the lines that cannot be filled are left out (listed) and the rest planned.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from math import comb
from typing import Literal, cast

from streams.domain.network import Network

MAX_COMBINATIONS = 20_000  # candidate sets tried per parcel count; past it, a greedy cover (largest share first)
MAX_LINES = 100  # lines in one order
MEMO_ENTRIES = 4_096  # delivery points whose candidate places a network remembers


@dataclass(frozen=True, slots=True)
class OrderLine:
    line_id: str
    sku: str  # "" when `alias` named a product the catalog does not know
    quantity: int
    alias: str | None = None  # the channel's own identifier the request named the product by


@dataclass(frozen=True, slots=True)
class LineStock:
    """What the SKU's owner says of a line's SKU: available units per location, and how many the channel may sell
    (its ATS)."""

    available: Mapping[str, int]
    sellable: int


@dataclass(frozen=True, slots=True)
class Parcel:
    location: str
    distance_km: float
    cost: float
    lines: tuple[tuple[str, int], ...]  # (line id, units), in the order's line order


@dataclass(frozen=True, slots=True)
class OrderPlan:
    accepted: bool
    reason: str | None = None  # why refused: insufficient_stock, max_split, no_pickup_store, ...
    line: str | None = None  # the line the reason concerns, if one
    parcels: tuple[Parcel, ...] = ()
    left_out: tuple[str, ...] = ()  # with `partial`: the lines that could not be filled
    allocations: Mapping[str, tuple[tuple[str, int], ...]] = field(default_factory=dict)  # line -> (location, n)

    @property
    def cost(self) -> float:
        return round(sum(p.cost for p in self.parcels), 3)


@dataclass(frozen=True, slots=True)
class _Place:
    location: str
    distance_km: float
    cost: float


def plan_order(lines: Sequence[OrderLine], stock: Mapping[str, LineStock], network: Network, channel_id: str,
               latitude: float | None, longitude: float | None, mode: Literal["ship", "pickup"] = "ship",
               max_split: int | None = None, partial: bool = False, pickup_at: str | None = None) -> OrderPlan:
    """The plan for `lines` (their stock by line id) to a customer at (`latitude`, `longitude`); without a delivery
    point a parcel costs its location's handling cost only. `pickup_at`: the store the customer collects from
    (a pickup order planned for it alone)."""
    limit = 1 if mode == "pickup" else max_split
    if limit is not None and limit < 1:
        raise ValueError("max_split: must be at least 1")
    places = _places(network, channel_id, latitude, longitude, mode)
    if pickup_at is not None:
        if pickup_at not in network.channels[channel_id].selling_locations:
            return OrderPlan(False, "location_not_owned")
        places = [p for p in places if p.location == pickup_at]
        if not places:
            return OrderPlan(False, "not_a_pickup_store")
    fillable, left_out = [], []
    for line in lines:
        if _can_fill(line, stock, places):
            fillable.append(line)
        elif not partial:
            return OrderPlan(False, "insufficient_stock", line.line_id)
        else:
            left_out.append(line.line_id)
    if not fillable:
        return OrderPlan(False, "insufficient_stock", left_out[0] if left_out else None, left_out=tuple(left_out))
    useful = [p for p in places if any(_units(stock, line.line_id, p.location) > 0 for line in fillable)]
    chosen = _fewest_then_cheapest(fillable, stock, useful, limit)
    if chosen is None:
        return OrderPlan(False, "no_pickup_store" if mode == "pickup" else "max_split", left_out=tuple(left_out))
    return _allocate(fillable, stock, chosen, tuple(left_out))


def _places(network: Network, channel_id: str, latitude: float | None, longitude: float | None, mode: str
            ) -> list[_Place]:
    """The channel's locations that can fill in this mode, cheapest first (ties on location id); worked out once
    per delivery point (a cart's lines are planned alone at their owners, then together)."""
    key = ("places", channel_id, latitude, longitude, mode)
    found = cast("tuple[_Place, ...] | None", network.memo.get(key))
    if found is None:
        if len(network.memo) >= MEMO_ENTRIES:
            network.memo.clear()
        found = tuple(_cheapest_first(network, channel_id, latitude, longitude, mode))
        network.memo[key] = found
    return list(found)


def _cheapest_first(network: Network, channel_id: str, latitude: float | None, longitude: float | None, mode: str
                    ) -> list[_Place]:
    found = []
    for location_id in network.channels[channel_id].selling_locations:
        location = network.locations[location_id]
        if location.pickup if mode == "pickup" else location.ship_from:
            if latitude is None or longitude is None:
                km, cost = 0.0, location.handling_cost
            else:
                km, cost = network.shipment(location_id, latitude, longitude)
            found.append(_Place(location_id, km, cost))
    return sorted(found, key=lambda p: (p.cost, p.location))


def _units(stock: Mapping[str, LineStock], line_id: str, location: str) -> int:
    """What a location has of a line's SKU (nothing when it has less than nothing)."""
    return max(0, stock[line_id].available.get(location, 0))


def _can_fill(line: OrderLine, stock: Mapping[str, LineStock], places: Sequence[_Place]) -> bool:
    return line.quantity <= stock[line.line_id].sellable and \
        sum(_units(stock, line.line_id, p.location) for p in places) >= line.quantity


def _covers(lines: Sequence[OrderLine], stock: Mapping[str, LineStock], subset: Sequence[_Place]) -> bool:
    return all(sum(_units(stock, line.line_id, p.location) for p in subset) >= line.quantity for line in lines)


def _fewest_then_cheapest(lines: Sequence[OrderLine], stock: Mapping[str, LineStock], places: Sequence[_Place],
                          limit: int | None) -> list[_Place] | None:
    most = len(places) if limit is None else min(limit, len(places))
    # One parcel (most carts): the cheapest location that has every line.
    single = [p for p in places if all(_units(stock, line.line_id, p.location) >= line.quantity for line in lines)]
    if single and most >= 1:
        return [min(single, key=lambda p: (round(p.cost, 9), (p.location,)))]
    for k in range(2, most + 1):
        if comb(len(places), k) > MAX_COMBINATIONS:
            greedy = _greedy(lines, stock, places)
            return greedy if greedy is not None and len(greedy) <= most else None
        best: tuple[float, tuple[str, ...]] | None = None
        chosen: tuple[_Place, ...] = ()
        for subset in combinations(places, k):
            if not _covers(lines, stock, subset):
                continue
            rank = (round(sum(p.cost for p in subset), 9), tuple(sorted(p.location for p in subset)))
            if best is None or rank < best:
                best, chosen = rank, subset
        if best is not None:
            return list(chosen)
    return None


def _greedy(lines: Sequence[OrderLine], stock: Mapping[str, LineStock], places: Sequence[_Place]
            ) -> list[_Place] | None:
    """A cover too large to search: repeatedly the location that fills the most of what is still missing."""
    missing = {line.line_id: line.quantity for line in lines}
    chosen: list[_Place] = []
    left = list(places)
    while any(missing.values()):
        shares = {p.location: sum(min(n, _units(stock, line_id, p.location)) for line_id, n in missing.items())
                  for p in left}
        best = max(left, key=lambda p: (shares[p.location], -p.cost), default=None)
        if best is None or shares[best.location] == 0:
            return None
        chosen.append(best)
        left.remove(best)
        missing = {line_id: n - min(n, _units(stock, line_id, best.location)) for line_id, n in missing.items()}
    return chosen


def _allocate(lines: Sequence[OrderLine], stock: Mapping[str, LineStock], chosen: Sequence[_Place],
              left_out: tuple[str, ...]) -> OrderPlan:
    """Each line from the cheapest chosen location first, never more than it has."""
    ordered = sorted(chosen, key=lambda p: (p.cost, p.location))
    allocations: dict[str, tuple[tuple[str, int], ...]] = {}
    per_place: dict[str, list[tuple[str, int]]] = {p.location: [] for p in ordered}
    for line in lines:
        remaining, taken = line.quantity, []
        for place in ordered:
            take = min(_units(stock, line.line_id, place.location), remaining)
            if take > 0:
                taken.append((place.location, take))
                per_place[place.location].append((line.line_id, take))
                remaining -= take
        allocations[line.line_id] = tuple(taken)
    parcels = tuple(Parcel(p.location, round(p.distance_km, 3), round(p.cost, 3), tuple(per_place[p.location]))
                    for p in ordered if per_place[p.location])
    return OrderPlan(True, parcels=parcels, left_out=left_out, allocations=allocations)
