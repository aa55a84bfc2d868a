"""The query and sourcing API of a worker, free of faust: request parameters in, JSON-ready answers out.

Every endpoint is about one SKU, so the worker that owns the SKU's partition answers it; streams.worker.api.routes
forwards a request that reaches another worker to the owner (GET only: no request body is forwarded).
Bad requests raise ApiError with a 4xx status and a message naming the parameter.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from streams.domain import Network, SkuStock, channel_ats, plan_fulfilment
from streams.domain.movements import SKU_PATTERN
from streams.domain.sourcing import eligible_locations
from streams.errors import StocksyncError
from streams.wire.records import figures

MAX_QUANTITY = 1_000_000


class ApiError(StocksyncError):
    """A request the API cannot answer: `status` is the HTTP status, the message names the parameter."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def check_sku(sku: str) -> str:
    if not SKU_PATTERN.match(sku):
        raise ApiError(400, f"sku: {sku!r} is not a SKU (letters, digits, ._/-; max 64)")
    return sku


def _int(query: Mapping[str, str], name: str, low: int, high: int, default: int | None = None) -> int:
    raw = query.get(name)
    if raw is None:
        if default is None:
            raise ApiError(400, f"{name}: missing")
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, f"{name}: {raw!r} is not an integer") from None
    if not low <= value <= high:
        raise ApiError(400, f"{name}: must be between {low} and {high}, got {value}")
    return value


def _float(query: Mapping[str, str], name: str, low: float, high: float) -> float:
    raw = query.get(name)
    if raw is None:
        raise ApiError(400, f"{name}: missing")
    try:
        value = float(raw)
    except ValueError:
        raise ApiError(400, f"{name}: {raw!r} is not a number") from None
    if not math.isfinite(value) or not low <= value <= high:
        raise ApiError(400, f"{name}: must be between {low} and {high}, got {raw}")
    return value


class QueryService:
    """Answers from the worker's own table (`lookup(sku)` -> the SKU's stock, None if never seen) and the
    network in force (`network()` -> (network, version))."""

    def __init__(self, lookup: Callable[[str], SkuStock | None], network: Callable[[], tuple[Network, int]]) -> None:
        self.lookup = lookup
        self.network = network

    def _stock(self, sku: str) -> SkuStock:
        return self.lookup(check_sku(sku)) or SkuStock(sku)

    def positions(self, sku: str) -> dict[str, Any]:
        """Every location of the network, with zeros where the SKU was never seen."""
        stock = self._stock(sku)
        network, version = self.network()
        locations = sorted(set(network.locations) | set(stock.positions))
        return {"sku": sku, "version": stock.version, "network_version": version,
                "positions": [{"location": loc, **figures(stock.position(loc)), "version":
                               stock.position(loc).version, "sales_per_day": _sales_rate(stock, network, loc)}
                              for loc in locations]}

    def position(self, sku: str, location: str) -> dict[str, Any]:
        stock = self._stock(sku)
        network, _ = self.network()
        if location not in network.locations and location not in stock.positions:
            raise ApiError(404, f"location: {location!r} is not in the network")
        p = stock.position(location)
        return {"sku": sku, "location": location, **figures(p), "version": p.version,
                "sales_per_day": _sales_rate(stock, network, location)}

    def channel_ats(self, channel: str, sku: str) -> dict[str, Any]:
        stock = self._stock(sku)
        network, version = self.network()
        found = network.channels.get(channel)
        if found is None:
            raise ApiError(404, f"channel: {channel!r} is not in the network")
        return {"channel": channel, "sku": sku, "ats": channel_ats(stock, found), "version": stock.version,
                "network_version": version}

    def sourcing(self, sku: str, query: Mapping[str, str]) -> dict[str, Any]:
        """A fulfilment plan for one order line: the allocations, and every candidate location ranked by cost."""
        stock = self._stock(sku)
        network, version = self.network()
        channel = query.get("channel")
        if not channel:
            raise ApiError(400, "channel: missing")
        if channel not in network.channels:
            raise ApiError(404, f"channel: {channel!r} is not in the network")
        quantity = _int(query, "quantity", 1, MAX_QUANTITY)
        latitude = _float(query, "lat", -90, 90)
        longitude = _float(query, "lon", -180, 180)
        mode = query.get("mode", "ship")
        if mode not in ("ship", "pickup"):
            raise ApiError(400, f"mode: {mode!r} is neither 'ship' nor 'pickup'")
        plan = plan_fulfilment(stock, network, channel, quantity, latitude, longitude, mode)  # type: ignore[arg-type]
        candidates = [{"location": c.location, "available": c.available, "distance_km": round(c.distance_km, 1),
                       "cost": round(c.cost, 2)}
                      for c in eligible_locations(stock, network, channel, latitude, longitude, mode)]
        return {"sku": sku, "channel": channel, "quantity": quantity, "mode": mode,
                "allocated": plan.allocated, "complete": plan.complete, "shortfall": plan.shortfall,
                "cost": round(plan.cost, 2), "version": stock.version, "network_version": version,
                "allocations": [{"location": a.location, "quantity": a.quantity,
                                 "distance_km": round(a.distance_km, 1), "cost": round(a.cost, 2)}
                                for a in plan.allocations],
                "candidates": candidates}


def _param(name: str, where: str, description: str, schema: dict[str, Any], required: bool = True
           ) -> dict[str, Any]:
    return {"name": name, "in": where, "required": required, "description": description, "schema": schema}


_SKU = _param("sku", "path", "the SKU (letters, digits, ._/-; max 64)", {"type": "string"})
# What a sourcing question asks about its order line.
_ORDER_LINE = [_param("quantity", "query", "units ordered", {"type": "integer", "minimum": 1}),
               _param("lat", "query", "customer latitude", {"type": "number"}),
               _param("lon", "query", "customer longitude", {"type": "number"}),
               _param("mode", "query", "ship (may split) or pickup (one location)",
                      {"type": "string", "enum": ["ship", "pickup"]}, required=False)]
_ERRORS = {"400": {"description": "a parameter is invalid (the message names it)", "content": {"application/json": {
    "schema": {"$ref": "#/components/schemas/Error"}}}},
           "404": {"description": "unknown channel or location", "content": {"application/json": {
               "schema": {"$ref": "#/components/schemas/Error"}}}},
           "503": {"description": "the SKU's owner is not known right now (rebalancing): retry"}}


def _sales_rate(stock: SkuStock, network: Network, location: str) -> float:
    """Units sold per day at `location` over the network's sales window (what levels in days of cover use)."""
    return round(stock.sales.per_day(location, network.sales_window_days), 3)


def _ok(schema: str) -> dict[str, Any]:
    return {"200": {"description": "OK", "content": {"application/json": {"schema": {
        "$ref": f"#/components/schemas/{schema}"}}}}, **_ERRORS}


_FIGURES = {"on_hand": {"type": "integer"}, "reserved": {"type": "integer"}, "safety_stock": {"type": "integer"},
            "in_transit": {"type": "integer"}, "available": {"type": "integer"}, "version": {"type": "integer"},
            "quality_control": {"type": "integer", "description": "on hand, waiting for inspection: not sellable"},
            "damaged": {"type": "integer", "description": "on hand, damaged: not sellable"},
            "quarantine": {"type": "integer", "description": "on hand, held apart: not sellable"},
            "sales_per_day": {"type": "number", "description": "units sold a day over the network's "
                              "sales_window_days (ending with the SKU's newest event's day)"}}

OPENAPI: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "stocksync query and sourcing API", "version": "1",
             "description": "Served by every worker; a request reaching a worker that does not own the SKU is "
                            "answered by the owner (routed by SKU)."},
    "paths": {
        "/skus/{sku}/positions": {"get": {"summary": "every position of a SKU", "parameters": [_SKU],
                                          "responses": _ok("Positions")}},
        "/skus/{sku}/positions/{location}": {"get": {
            "summary": "one position", "parameters": [_SKU, _param("location", "path", "location id",
                                                                   {"type": "string"})],
            "responses": _ok("Position")}},
        "/channels/{channel}/ats/{sku}": {"get": {
            "summary": "a channel's available-to-sell for a SKU",
            "parameters": [_param("channel", "path", "channel id", {"type": "string"}), _SKU],
            "responses": _ok("ChannelAts")}},
        "/skus/{sku}/sourcing": {"get": {
            "summary": "a ranked fulfilment plan for an order line, split across locations when needed",
            "parameters": [_SKU, _param("channel", "query", "the selling channel", {"type": "string"}),
                           *_ORDER_LINE],
            "responses": _ok("Plan")}},
        "/channels/{channel}/aliases/{alias}": {"get": {
            "summary": "the SKU a channel's own identifier (a barcode, a listing id) names, from the catalog",
            "parameters": [_param("channel", "path", "channel id", {"type": "string"}),
                           _param("alias", "path", "the channel's identifier", {"type": "string"})],
            "responses": _ok("Alias")}},
        "/channels/{channel}/aliases/{alias}/ats": {"get": {
            "summary": "a channel's available-to-sell for the product it knows by `alias`",
            "parameters": [_param("channel", "path", "channel id", {"type": "string"}),
                           _param("alias", "path", "the channel's identifier", {"type": "string"})],
            "responses": _ok("ChannelAts")}},
        "/channels/{channel}/aliases/{alias}/sourcing": {"get": {
            "summary": "a ranked fulfilment plan for an order line of the product a channel knows by `alias` (a "
                       "scanned barcode, a listing id)",
            "parameters": [_param("channel", "path", "channel id", {"type": "string"}),
                           _param("alias", "path", "the channel's identifier", {"type": "string"}),
                           *_ORDER_LINE],
            "responses": _ok("Plan")}},
        "/skus/{sku}/transfer-suggestions": {"get": {
            "summary": "transfers suggested for a SKU (to each location below its minimum, from the nearest with "
                       "units to spare)", "parameters": [_SKU], "responses": _ok("Suggestions")}},
        "/locations/{location}/transfer-suggestions": {"get": {
            "summary": "transfers suggested to or from a location",
            "parameters": [_param("location", "path", "location id", {"type": "string"})],
            "responses": _ok("Suggestions")}},
    },
    "components": {"schemas": {
        "Error": {"type": "object", "properties": {"error": {"type": "string"}}},
        "Alias": {"type": "object", "properties": {"channel": {"type": "string"}, "alias": {"type": "string"},
                                                   "sku": {"type": "string"}}},
        "Suggestions": {"type": "object", "properties": {"suggestions": {"type": "array", "items": {
            "type": "object", "properties": {
                "sku": {"type": "string"}, "source": {"type": "string"}, "destination": {"type": "string"},
                "units": {"type": "integer"}, "distance_km": {"type": "number"}, "reason": {"type": "string"},
                "version": {"type": "integer"}, "suggested_at": {"type": "integer"}}}}}},
        "Position": {"type": "object", "properties": {"sku": {"type": "string"}, "location": {"type": "string"},
                                                      **_FIGURES}},
        "Positions": {"type": "object", "properties": {
            "sku": {"type": "string"}, "version": {"type": "integer"}, "network_version": {"type": "integer"},
            "positions": {"type": "array", "items": {"$ref": "#/components/schemas/Position"}}}},
        "ChannelAts": {"type": "object", "properties": {
            "channel": {"type": "string"}, "sku": {"type": "string"}, "ats": {"type": "integer"},
            "version": {"type": "integer"}, "network_version": {"type": "integer"}}},
        "Plan": {"type": "object", "properties": {
            "sku": {"type": "string"}, "channel": {"type": "string"}, "quantity": {"type": "integer"},
            "allocated": {"type": "integer"}, "complete": {"type": "boolean"}, "shortfall": {"type": "integer"},
            "cost": {"type": "number"},
            "allocations": {"type": "array", "items": {"type": "object", "properties": {
                "location": {"type": "string"}, "quantity": {"type": "integer"},
                "distance_km": {"type": "number"}, "cost": {"type": "number"}}}},
            "candidates": {"type": "array", "description": "the channel's eligible locations, cheapest first",
                           "items": {"type": "object"}}}},
    }},
}
