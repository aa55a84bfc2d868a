"""The retail network as data: locations with coordinates and flags, channels with the locations they sell from."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType
from typing import Any

from streams.domain.demand import SALES_DAYS
from streams.domain.errors import NetworkError

ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
LOCATION_KINDS = frozenset({"store", "warehouse", "dark_store", "supplier", "other"})
MAX_COVER_DAYS = 365  # a stock level in days of cover is at most a year of sales


@dataclass(frozen=True, slots=True)
class Location:
    id: str
    kind: str
    latitude: float
    longitude: float
    ship_from: bool = False
    pickup: bool = False
    handling_cost: float = 0.0  # cost of one shipment from here, in the same unit as distance cost


@dataclass(frozen=True, slots=True)
class Channel:
    """A channel sells from `locations` and holds back `buffer` units of every SKU.

    Excluded SKUs get ATS 0; excluded locations (e.g. a store closed for a count) are left out of the sum.
    `coalesce_ms` lets the feed merge updates for rate-limited channels (a drop to zero is never delayed)."""

    id: str
    locations: frozenset[str]
    buffer: int = 0
    excluded_skus: frozenset[str] = frozenset()
    excluded_locations: frozenset[str] = frozenset()
    coalesce_ms: int = 0
    split: bool = True  # a sourced reservation may be held at several locations (False: one, or refused)
    # locations - excluded_locations, once: every ATS figure sums over it
    selling_locations: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "selling_locations", self.locations - self.excluded_locations)


@dataclass(frozen=True, slots=True)
class StockLevel:
    """Where a location's stock should be: below its minimum available it needs a transfer, up to its target;
    above its target it has units to spare. Each is given in units, in days of cover (that many days of the
    location's recent sales rate, rounded up to whole units), or both (the larger counts). A location without a
    level keeps none back (it can give all)."""

    minimum: int = 0
    target: int = 0
    minimum_days: float = 0.0
    target_days: float = 0.0

    @property
    def in_days(self) -> bool:
        return self.target_days > 0

    def units(self, per_day: float) -> tuple[int, int]:
        """(minimum, target) in units for a location selling `per_day` units a day."""
        minimum = max(self.minimum, _cover(self.minimum_days, per_day))
        return minimum, max(self.target, _cover(self.target_days, per_day), minimum)


def _cover(days: float, per_day: float) -> int:
    """Whole units that last `days` days at `per_day` units a day (a hair of float error is not a unit more)."""
    return max(0, math.ceil(days * per_day - 1e-9))


@dataclass(frozen=True)
class Network:
    locations: Mapping[str, Location] = field(default_factory=dict)
    channels: Mapping[str, Channel] = field(default_factory=dict)
    distance_weight: float = 1.0  # cost per km of distance in sourcing, against each location's handling cost
    # Stock levels for transfer suggestions: per location kind, and per location (which wins over its kind).
    levels_by_kind: Mapping[str, StockLevel] = field(default_factory=dict)
    levels_by_location: Mapping[str, StockLevel] = field(default_factory=dict)
    sales_window_days: int = SALES_DAYS  # the recent sales rate behind levels in days: units sold over these days
    _by_location: Mapping[str, frozenset[str]] = field(init=False, repr=False, compare=False)
    # What sourcing works out once per channel, delivery point and mode (the cart's lines and its plan share it).
    memo: dict[object, object] = field(init=False, repr=False, compare=False, default_factory=dict)

    def __post_init__(self) -> None:
        for channel in self.channels.values():
            for location in sorted(channel.locations | channel.excluded_locations):
                if location not in self.locations:
                    raise NetworkError(f"channels.{channel.id}.locations: unknown location {location!r}")
        index: dict[str, set[str]] = {}
        for channel in self.channels.values():
            for location in channel.selling_locations:
                index.setdefault(location, set()).add(channel.id)
        object.__setattr__(self, "locations", MappingProxyType(dict(self.locations)))
        object.__setattr__(self, "channels", MappingProxyType(dict(self.channels)))
        object.__setattr__(self, "_by_location",
                           MappingProxyType({loc: frozenset(chs) for loc, chs in index.items()}))
        for location in self.levels_by_location:
            if location not in self.locations:
                raise NetworkError(f"stock_levels: unknown location {location!r}")

    @cached_property
    def levels_in_days(self) -> bool:
        """Does any stock level depend on the sales rate?"""
        return any(level.in_days for level in (*self.levels_by_kind.values(), *self.levels_by_location.values()))

    def level(self, location: str) -> StockLevel | None:
        """The stock level a location keeps (its own, else its kind's), if any."""
        found = self.levels_by_location.get(location)
        if found is None and location in self.locations:
            found = self.levels_by_kind.get(self.locations[location].kind)
        return found

    def channels_selling_from(self, location: str) -> frozenset[str]:
        """The channels whose ATS includes `location`."""
        return self._by_location.get(location, frozenset())

    def shipment(self, location: str, latitude: float, longitude: float) -> tuple[float, float]:
        """Distance (km) from `location` to a delivery point, and the cost of shipping from there: distance_weight
        x km + the location's handling cost (the sourcing rule)."""
        here = self.locations[location]
        km = distance_km(latitude, longitude, here.latitude, here.longitude)
        return km, self.distance_weight * km + here.handling_cost

    def owns(self, channel: str, location: str) -> bool:
        """May `channel` report movements at `location`? (its locations, excluded or not)."""
        found = self.channels.get(channel)
        return found is not None and location in found.locations

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Network:
        """Build and validate a network from plain data (a parsed YAML file); errors name the field."""
        if not isinstance(data, Mapping):
            raise NetworkError("network: expected a mapping with 'locations' and 'channels'")
        locations = [_location(i, raw) for i, raw in enumerate(_list(data, "locations"))]
        channels = [_channel(i, raw) for i, raw in enumerate(_list(data, "channels"))]
        _unique("locations", (loc.id for loc in locations))
        _unique("channels", (ch.id for ch in channels))
        weight = _number(data, "distance_weight", "distance_weight", 1.0)
        if weight < 0:
            raise NetworkError("distance_weight: must be >= 0")
        by_kind, by_location = _stock_levels(data.get("stock_levels") or [])
        window = _int(data, "sales_window_days", "sales_window_days", SALES_DAYS)
        if not 1 <= window <= SALES_DAYS:
            raise NetworkError(f"sales_window_days: must be 1 to {SALES_DAYS}, got {window}")
        return cls({loc.id: loc for loc in locations}, {ch.id: ch for ch in channels}, weight, by_kind,
                   by_location, window)

    def to_dict(self) -> dict[str, Any]:
        return {
            "distance_weight": self.distance_weight,
            "locations": [{"id": loc.id, "kind": loc.kind, "latitude": loc.latitude, "longitude": loc.longitude,
                           "ship_from": loc.ship_from, "pickup": loc.pickup, "handling_cost": loc.handling_cost}
                          for loc in self.locations.values()],
            "channels": [{"id": ch.id, "locations": sorted(ch.locations), "buffer": ch.buffer,
                          "excluded_skus": sorted(ch.excluded_skus),
                          "excluded_locations": sorted(ch.excluded_locations), "coalesce_ms": ch.coalesce_ms,
                          "split": ch.split}
                         for ch in self.channels.values()],
            "stock_levels": [{"kind": kind, "location": None, **_level_dict(level)}
                             for kind, level in sorted(self.levels_by_kind.items())]
            + [{"kind": None, "location": location, **_level_dict(level)}
               for location, level in sorted(self.levels_by_location.items())],
            "sales_window_days": self.sales_window_days,
        }


def distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance (haversine) in kilometres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371.0088 * math.asin(min(1.0, math.sqrt(a)))


# --- validation helpers: each error names the field as a path, e.g. "channels[2].buffer" ---------------------
def _list(data: Mapping[str, Any], key: str) -> list[Any]:
    value = data.get(key, [])
    if not isinstance(value, list):
        raise NetworkError(f"{key}: expected a list")
    return value


def _unique(what: str, ids: Iterable[str]) -> None:
    seen: set[str] = set()
    for ident in ids:
        if ident in seen:
            raise NetworkError(f"{what}: duplicate id {ident!r}")
        seen.add(ident)


def _id(raw: Mapping[str, Any], path: str) -> str:
    ident = raw.get("id")
    if not isinstance(ident, str) or not ID_PATTERN.match(ident):
        raise NetworkError(f"{path}.id: {ident!r} is not an id (lowercase letters, digits, '-', '_'; max 63)")
    return ident


def _number(raw: Mapping[str, Any], key: str, path: str, default: float | None = None) -> float:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise NetworkError(f"{path}: expected a number, got {value!r}")
    return float(value)


def _int(raw: Mapping[str, Any], key: str, path: str, default: int) -> int:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise NetworkError(f"{path}: expected a whole number >= 0, got {value!r}")
    return value


def _bool(raw: Mapping[str, Any], key: str, path: str, default: bool = False) -> bool:
    value = raw.get(key, default)
    if not isinstance(value, bool):
        raise NetworkError(f"{path}: expected true or false, got {value!r}")
    return value


def _strings(raw: Mapping[str, Any], key: str, path: str) -> frozenset[str]:
    value = raw.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise NetworkError(f"{path}: expected a list of ids")
    return frozenset(value)


def _mapping(raw: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise NetworkError(f"{path}: expected a mapping")
    return raw


def _location(index: int, raw: Any) -> Location:
    path = f"locations[{index}]"
    raw = _mapping(raw, path)
    ident = _id(raw, path)
    path = f"locations.{ident}"
    kind = raw.get("kind")
    if kind not in LOCATION_KINDS:
        raise NetworkError(f"{path}.kind: {kind!r} is not one of {sorted(LOCATION_KINDS)}")
    latitude = _number(raw, "latitude", f"{path}.latitude")
    longitude = _number(raw, "longitude", f"{path}.longitude")
    if not -90 <= latitude <= 90:
        raise NetworkError(f"{path}.latitude: {latitude} is outside -90..90")
    if not -180 <= longitude <= 180:
        raise NetworkError(f"{path}.longitude: {longitude} is outside -180..180")
    cost = _number(raw, "handling_cost", f"{path}.handling_cost", 0.0)
    if cost < 0:
        raise NetworkError(f"{path}.handling_cost: must be >= 0")
    return Location(ident, kind, latitude, longitude, _bool(raw, "ship_from", f"{path}.ship_from"),
                    _bool(raw, "pickup", f"{path}.pickup"), cost)


def _channel(index: int, raw: Any) -> Channel:
    path = f"channels[{index}]"
    raw = _mapping(raw, path)
    ident = _id(raw, path)
    path = f"channels.{ident}"
    locations = _strings(raw, "locations", f"{path}.locations")
    if not locations:
        raise NetworkError(f"{path}.locations: a channel needs at least one location")
    return Channel(ident, locations, _int(raw, "buffer", f"{path}.buffer", 0),
                   _strings(raw, "excluded_skus", f"{path}.excluded_skus"),
                   _strings(raw, "excluded_locations", f"{path}.excluded_locations"),
                   _int(raw, "coalesce_ms", f"{path}.coalesce_ms", 0),
                   _bool(raw, "split", f"{path}.split", default=True))


def _level_dict(level: StockLevel) -> dict[str, Any]:
    return {"minimum": level.minimum, "target": level.target, "minimum_days": level.minimum_days,
            "target_days": level.target_days}


def _stock_levels(raw: Any) -> tuple[dict[str, StockLevel], dict[str, StockLevel]]:
    """`stock_levels`: a list of {kind or location, minimum and target in units and/or in days of cover}."""
    if not isinstance(raw, list):
        raise NetworkError(f"stock_levels: expected a list, got {type(raw).__name__}")
    by_kind: dict[str, StockLevel] = {}
    by_location: dict[str, StockLevel] = {}
    for index, item in enumerate(raw):
        path = f"stock_levels[{index}]"
        item = _mapping(item, path)
        kind, location = item.get("kind"), item.get("location")
        if (kind is None) == (location is None):
            raise NetworkError(f"{path}: name either a location kind or a location")
        level = _stock_level(item, path)
        if kind is not None:
            if kind not in LOCATION_KINDS:
                raise NetworkError(f"{path}.kind: {kind!r} is not one of {sorted(LOCATION_KINDS)}")
            if kind in by_kind:
                raise NetworkError(f"{path}: a second level for kind {kind!r}")
            by_kind[kind] = level
        else:
            if location in by_location:
                raise NetworkError(f"{path}: a second level for location {location!r}")
            by_location[str(location)] = level
    return by_kind, by_location


def _stock_level(item: Mapping[str, Any], path: str) -> StockLevel:
    minimum = _int(item, "minimum", f"{path}.minimum", 0)
    target = _int(item, "target", f"{path}.target", minimum)
    minimum_days = _number(item, "minimum_days", f"{path}.minimum_days", 0.0)
    target_days = _number(item, "target_days", f"{path}.target_days", minimum_days)
    if target < minimum:
        raise NetworkError(f"{path}.target: must be at least the minimum ({minimum})")
    if not 0 <= minimum_days <= target_days <= MAX_COVER_DAYS:
        raise NetworkError(f"{path}.target_days: days of cover must be 0 <= minimum_days ({minimum_days:g}) <= "
                           f"target_days ({target_days:g}) <= {MAX_COVER_DAYS}")
    if target == 0 and target_days == 0:
        raise NetworkError(f"{path}: set a target above 0, in units (target) or in days of cover (target_days)")
    return StockLevel(minimum, target, minimum_days, target_days)
