"""Sourcing: where to fill an order line from, for a customer at a position, at the lowest cost.

Cost of a shipment from a location = distance_weight x great-circle km + the location's handling cost.
Plan: the cheapest single location that can fill the whole line; otherwise the fewest locations that can, and
among those the cheapest set; otherwise (not enough stock) as much as there is, cheapest first. Never more than
a location has available, and never more in total than the channel's ATS. Ties break on location id.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from math import comb
from typing import Literal

from streams.domain.ats import channel_ats
from streams.domain.network import Network
from streams.domain.stock import SkuStock

MAX_COMBINATIONS = 20_000  # beyond this many candidate sets, fall back to a greedy split (largest stock first)


@dataclass(frozen=True, slots=True)
class Allocation:
    location: str
    quantity: int
    distance_km: float
    cost: float


@dataclass(frozen=True, slots=True)
class FulfilmentPlan:
    sku: str
    channel: str
    quantity: int
    allocations: tuple[Allocation, ...]

    @property
    def allocated(self) -> int:
        return sum(a.quantity for a in self.allocations)

    @property
    def complete(self) -> bool:
        return self.allocated == self.quantity

    @property
    def shortfall(self) -> int:
        return self.quantity - self.allocated

    @property
    def cost(self) -> float:
        return sum(a.cost for a in self.allocations)


@dataclass(frozen=True, slots=True)
class _Candidate:
    location: str
    available: int
    distance_km: float
    cost: float


def plan_fulfilment(stock: SkuStock, network: Network, channel_id: str, quantity: int, latitude: float,
                    longitude: float, mode: Literal["ship", "pickup"] = "ship") -> FulfilmentPlan:
    """Rank the channel's locations for one order line; split across locations only when shipping."""
    if quantity <= 0:
        raise ValueError("quantity: must be positive")
    channel = network.channels[channel_id]
    fillable = min(quantity, channel_ats(stock, channel))
    candidates = _candidates(stock, network, channel_id, latitude, longitude, mode)  # cheapest first
    if fillable == 0 or not candidates:
        return FulfilmentPlan(stock.sku, channel_id, quantity, ())
    single = next((c for c in candidates if c.available >= fillable), None)
    if single is not None:
        chosen = [single]
    elif mode == "pickup":
        chosen = [max(candidates, key=lambda c: (c.available, -c.cost))]  # the most a customer can collect at one
    else:
        chosen = _fewest_then_cheapest(candidates, fillable)
    return FulfilmentPlan(stock.sku, channel_id, quantity, _allocate(chosen, fillable))


def eligible_locations(stock: SkuStock, network: Network, channel_id: str, latitude: float, longitude: float,
                       mode: str) -> list[_Candidate]:
    """Every location the channel can fill from in this mode (ship-from or pickup), with its available units,
    distance and cost, cheapest first (ties on location id); a location without stock included."""
    found = []
    for location_id in network.channels[channel_id].selling_locations:
        location = network.locations[location_id]
        if not (location.pickup if mode == "pickup" else location.ship_from):
            continue
        km, cost = network.shipment(location_id, latitude, longitude)
        found.append(_Candidate(location_id, stock.available(location_id), km, cost))
    return sorted(found, key=lambda c: (c.cost, c.location))


def _candidates(stock: SkuStock, network: Network, channel_id: str, latitude: float, longitude: float,
                mode: str) -> list[_Candidate]:
    return [c for c in eligible_locations(stock, network, channel_id, latitude, longitude, mode) if c.available > 0]


def _fewest_then_cheapest(candidates: list[_Candidate], quantity: int) -> list[_Candidate]:
    by_stock = sorted(candidates, key=lambda c: (-c.available, c.cost, c.location))
    total, k = 0, 0
    for candidate in by_stock:  # k: how many of the largest it takes
        total += candidate.available
        k += 1
        if total >= quantity:
            break
    if total < quantity or comb(len(candidates), k) > MAX_COMBINATIONS:
        return by_stock[:k]
    best: tuple[float, tuple[str, ...]] | None = None
    chosen: tuple[_Candidate, ...] = ()
    for subset in combinations(candidates, k):
        if sum(c.available for c in subset) < quantity:
            continue
        rank = (round(sum(c.cost for c in subset), 9), tuple(sorted(c.location for c in subset)))
        if best is None or rank < best:
            best, chosen = rank, subset
    return list(chosen)


def _allocate(chosen: list[_Candidate], quantity: int) -> tuple[Allocation, ...]:
    """Take from the cheapest chosen location first, never more than it has."""
    allocations, remaining = [], quantity
    for c in sorted(chosen, key=lambda c: (c.cost, c.location)):
        take = min(c.available, remaining)
        if take > 0:
            allocations.append(Allocation(c.location, take, round(c.distance_km, 3), round(c.cost, 3)))
            remaining -= take
    return tuple(allocations)
