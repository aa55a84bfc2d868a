"""Transfer suggestions: a store runs short while another location holds units to spare, and nobody moves them.

A location with a stock level (the network's `stock_levels`: per kind, or per location) that has fewer units
available (in transit to it counted) than its minimum needs a transfer up to its target, from the nearest
location with units above its own target (a location without a level keeps none back). A level in days of cover
is that many days of the location's recent sales rate (streams.domain.demand), in whole units. Only locations that
carry the SKU (it has a position there) are replenished. A suggestion never moves stock: the WMS's transfer is
still the movement. Pure: the suggestions of a SKU are a function of its positions and the network."""

from __future__ import annotations

from dataclasses import dataclass

from streams.domain.network import Network, distance_km
from streams.domain.stock import SkuStock


@dataclass(frozen=True, slots=True)
class TransferSuggestion:
    sku: str
    source: str
    destination: str
    units: int
    distance_km: float
    reason: str


def transfer_suggestions(stock: SkuStock, network: Network) -> dict[str, TransferSuggestion]:
    """Per destination that needs units, the suggested transfer (nearest source first; the units one
    destination is promised are not offered to the next, in location order)."""
    if not network.levels_by_kind and not network.levels_by_location:
        return {}
    carried = [location for location in sorted(stock.positions) if location in network.locations]
    levels = {location: _level(stock, network, location) for location in carried}
    spare = {location: max(0, stock.available(location) - _target(levels[location])) for location in carried}
    found: dict[str, TransferSuggestion] = {}
    for destination in carried:
        level = levels[destination]
        if level is None:
            continue
        minimum, target, why = level
        position = stock.position(destination)
        have = stock.available(destination) + position.in_transit
        if have >= minimum:
            continue
        here = network.locations[destination]
        sources = sorted((distance_km(here.latitude, here.longitude, network.locations[s].latitude,
                                      network.locations[s].longitude), s)
                         for s in carried if s != destination and spare[s] > 0)
        if not sources:
            continue
        km, source = sources[0]
        units = min(target - have, spare[source])
        spare[source] -= units
        found[destination] = TransferSuggestion(
            stock.sku, source, destination, units, round(km, 1),
            f"{destination} has {have} (minimum {minimum}, target {target}{why}); {source} has "
            f"{spare[source] + units} to spare")
    return found


def _target(level: tuple[int, int, str] | None) -> int:
    """What a location keeps back: its target in units (none without a level)."""
    return level[1] if level is not None else 0


def _level(stock: SkuStock, network: Network, location: str) -> tuple[int, int, str] | None:
    """A location's (minimum, target) in units, and for a level in days of cover the sales rate behind it."""
    level = network.level(location)
    if level is None:
        return None
    if not level.in_days:
        return level.minimum, level.target, ""
    per_day = stock.sales.per_day(location, network.sales_window_days)
    minimum, target = level.units(per_day)
    return minimum, target, f"; sells {per_day:.2f}/day over {network.sales_window_days} days"
