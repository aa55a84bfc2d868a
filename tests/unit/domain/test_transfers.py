"""Transfer suggestions: a location below its minimum gets a transfer up to its target from the nearest location
with units to spare; the spare units are never promised twice; a location that does not carry the SKU, or has
enough, or has units in transit, gets none; no suggestion without stock levels."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.domain import Kind, Network, SkuStock
from streams.domain.errors import NetworkError
from streams.domain.transfers import transfer_suggestions
from tests.unit.domain.helpers import NOW, mv

PLACES = [("st-1", 52.52, 13.40, "store"), ("st-2", 53.55, 9.99, "store"), ("wh-1", 51.31, 9.48, "warehouse"),
          ("wh-2", 51.34, 12.37, "warehouse")]


def network(levels: list[dict[str, object]]) -> Network:
    return Network.from_dict({
        "locations": [{"id": i, "kind": k, "latitude": lat, "longitude": lon} for i, lat, lon, k in PLACES],
        "channels": [{"id": "wms", "locations": [p[0] for p in PLACES]}], "stock_levels": levels})


LEVELS = network([{"kind": "store", "minimum": 3, "target": 8}, {"location": "wh-1", "minimum": 0, "target": 10}])


def stocked(units: dict[str, int], net: Network = LEVELS) -> SkuStock:
    stock = SkuStock("SKU-1")
    for location, n in units.items():
        stock.apply(mv(Kind.COUNT, location, n, at=NOW - 1_000), net, NOW)
    return stock


def test_a_store_below_its_minimum_gets_units_from_the_nearest_location_with_some_to_spare() -> None:
    found = transfer_suggestions(stocked({"st-1": 1, "wh-1": 30, "wh-2": 4}), LEVELS)
    assert list(found) == ["st-1"]
    suggestion = found["st-1"]
    assert (suggestion.source, suggestion.units) == ("wh-2", 4)  # Leipzig is nearer Berlin than Kassel
    assert "st-1 has 1 (minimum 3, target 8)" in suggestion.reason


def test_no_suggestion_when_enough_is_there_or_on_its_way_or_nothing_to_spare() -> None:
    assert transfer_suggestions(stocked({"st-1": 3, "wh-1": 30}), LEVELS) == {}
    assert transfer_suggestions(stocked({"st-1": 1, "wh-1": 10}), LEVELS) == {}  # wh-1 keeps its target of 10
    assert transfer_suggestions(stocked({"st-1": 1, "wh-1": 30}), network([])) == {}  # no stock levels
    assert "st-2" not in transfer_suggestions(stocked({"st-1": 5, "wh-1": 30}), LEVELS)  # st-2 does not carry it
    moving = stocked({"st-1": 1, "wh-1": 30})
    moving.apply(mv(Kind.TRANSFER_OUT, "wh-1", 5, other_location="st-1", transfer_id="t-1"), LEVELS, NOW)
    assert transfer_suggestions(moving, LEVELS) == {}  # 1 + 5 in transit: not below the minimum


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from([p[0] for p in PLACES]), st.integers(0, 40), min_size=1))
def test_suggestions_never_promise_spare_units_twice_nor_overfill(units: dict[str, int]) -> None:
    stock = stocked(units)
    found = transfer_suggestions(stock, LEVELS)
    taken: dict[str, int] = {}
    for destination, s in found.items():
        level = LEVELS.level(destination)
        assert level is not None and stock.available(destination) < level.minimum
        assert 0 < s.units <= level.target - stock.available(destination)
        taken[s.source] = taken.get(s.source, 0) + s.units
    for source, total in taken.items():
        level = LEVELS.level(source)
        assert total <= stock.available(source) - (level.target if level else 0)


def test_a_level_needs_a_kind_or_a_location_and_a_sane_target() -> None:
    bad_levels: list[dict[str, object]] = [
        {"minimum": 1, "target": 2}, {"kind": "store", "location": "st-1", "minimum": 1, "target": 2},
        {"kind": "store", "minimum": 5, "target": 2}, {"location": "nowhere", "minimum": 1, "target": 2},
        {"kind": "store", "minimum_days": 5, "target_days": 2}, {"kind": "store", "target_days": -1},
        {"kind": "store", "minimum_days": 1, "target_days": 400}, {"kind": "store", "target_days": "a week"},
        {"kind": "store", "minimum": 0, "target_days": 0}]
    for bad in bad_levels:
        try:
            network([bad])
        except NetworkError:
            continue
        raise AssertionError(f"accepted {bad}")


DAY = 24 * 3600 * 1000
IN_DAYS = network([{"kind": "store", "minimum_days": 3, "target_days": 10},
                   {"location": "wh-1", "minimum": 0, "target": 10}])


def selling(per_day: dict[str, int], units: dict[str, int], net: Network = IN_DAYS) -> SkuStock:
    """A SKU that sold `per_day` units a day at each location for the last 14 days, then was counted."""
    stock, now = SkuStock("SKU-1"), 100 * DAY
    for day in range(14):
        for location, rate in per_day.items():
            stock.apply(mv(Kind.SALE, location, rate, at=now - (14 - day) * DAY), net, now)
    for location, n in units.items():
        stock.apply(mv(Kind.COUNT, location, n, at=now - 1_000), net, now)
    return stock


def test_a_level_in_days_of_cover_follows_the_store_s_sales_rate() -> None:
    # st-1 sells 2 a day over the last 14 of 28 days: 1 a day; minimum 3 days = 3 units, target 10 days = 10.
    found = transfer_suggestions(selling({"st-1": 2}, {"st-1": 2, "wh-1": 30}), IN_DAYS)
    assert (found["st-1"].source, found["st-1"].units) == ("wh-1", 8)
    assert "st-1 has 2 (minimum 3, target 10; sells 1.00/day over 28 days)" in found["st-1"].reason
    # Over the last 7 days it sells 2 a day: minimum 6, target 20.
    weekly = Network.from_dict({**IN_DAYS.to_dict(), "sales_window_days": 7})
    found = transfer_suggestions(selling({"st-1": 2}, {"st-1": 5, "wh-1": 30}, weekly), weekly)
    assert found["st-1"].units == 15
    # A store that sells nothing needs nothing and keeps nothing back: st-2's 6 units are spare for st-1.
    found = transfer_suggestions(selling({"st-1": 2}, {"st-1": 2, "st-2": 6, "wh-1": 10}), IN_DAYS)
    assert (found["st-1"].source, found["st-1"].units) == ("st-2", 6)
    assert "st-2" not in found


def test_units_and_days_together_take_the_larger() -> None:
    both = network([{"kind": "store", "minimum": 4, "target": 6, "minimum_days": 2, "target_days": 10}])
    slow = transfer_suggestions(selling({"st-1": 1}, {"st-1": 3, "wh-1": 30}, both), both)
    assert slow["st-1"].units == 3 and "minimum 4, target 6" in slow["st-1"].reason  # 0.5/day: units win
    fast = transfer_suggestions(selling({"st-1": 4}, {"st-1": 3, "wh-1": 30}, both), both)
    assert fast["st-1"].units == 17 and "minimum 4, target 20" in fast["st-1"].reason  # 2/day: days win
    assert Network.from_dict(both.to_dict()) == both and both.levels_in_days and not LEVELS.levels_in_days
