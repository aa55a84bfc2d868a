"""Transfer suggestions: a store runs short while another location holds units to spare, and nobody moves them.

A location with a stock level (the network's `stock_levels`: per kind, or per location) that has fewer units
available (in transit to it counted) than its minimum needs a transfer up to its target, from the nearest
location with units above its own target (a location without a level keeps none back). Only locations that
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
    spare: dict[str, int] = {}
    for location in carried:
        level = network.level(location)
        spare[location] = max(0, stock.available(location) - (level.target if level else 0))
    found: dict[str, TransferSuggestion] = {}
    for destination in carried:
        level = network.level(destination)
        if level is None:
            continue
        position = stock.position(destination)
        have = stock.available(destination) + position.in_transit
        if have >= level.minimum:
            continue
        here = network.locations[destination]
        sources = sorted((distance_km(here.latitude, here.longitude, network.locations[s].latitude,
                                      network.locations[s].longitude), s)
                         for s in carried if s != destination and spare[s] > 0)
        if not sources:
            continue
        km, source = sources[0]
        units = min(level.target - have, spare[source])
        spare[source] -= units
        found[destination] = TransferSuggestion(
            stock.sku, source, destination, units, round(km, 1),
            f"{destination} has {have} (minimum {level.minimum}, target {level.target}); {source} has "
            f"{spare[source] + units} to spare")
    return found
