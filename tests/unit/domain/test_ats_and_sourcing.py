"""Channel ATS and sourcing: rules by example, and properties against brute force on small networks."""

from __future__ import annotations

from itertools import combinations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.domain import Kind, Movement, SkuStock, affected_channels, channel_ats, plan_fulfilment
from tests.unit.domain.helpers import NETWORK, NOW, mv

BERLIN = (52.52, 13.40)
MUNICH = (48.14, 11.58)


def stocked(**units: int) -> SkuStock:
    stock = SkuStock("SKU-1")
    for location, quantity in units.items():
        if quantity:
            stock.apply(mv(Kind.RECEIPT, location.replace("_", "-"), quantity), NETWORK, NOW)
    return stock


def test_ats_sums_available_minus_buffer() -> None:
    stock = stocked(store_a=3, store_b=2, wh_1=1)
    stock.apply(mv("reservation_placed", "store-a", 1, channel="web", reservation_id="r", expires_at=NOW + 1),
                NETWORK, NOW)
    assert channel_ats(stock, NETWORK.channels["web"]) == 2 + 2 + 1 - 2
    assert channel_ats(stock, NETWORK.channels["market"]) == 0  # 1 available - buffer 1
    assert channel_ats(stock, NETWORK.channels["pos-a"]) == 2


def test_excluded_sku_has_no_ats() -> None:
    stock = SkuStock("SKU-X")
    stock.apply(Movement(Kind.RECEIPT, "e", "wms", "SKU-X", "wh-1", 50, 1), NETWORK, NOW)
    assert channel_ats(stock, NETWORK.channels["market"]) == 0
    assert channel_ats(stock, NETWORK.channels["wms"]) == 50


def test_affected_channels() -> None:
    assert affected_channels(NETWORK, ["store-a"]) == {"pos-a", "web", "wms"}
    assert affected_channels(NETWORK, []) == frozenset()


def test_nearest_single_location_wins() -> None:
    stock = stocked(store_a=5, store_b=5, wh_1=5)
    plan = plan_fulfilment(stock, NETWORK, "web", 2, *MUNICH)
    assert [(a.location, a.quantity) for a in plan.allocations] == [("store-b", 2)] and plan.complete


def test_split_uses_fewest_locations_then_cheapest() -> None:
    stock = stocked(store_a=4, store_b=1, wh_1=3)
    # 6 units for a customer in Munich: no single location has them; store-a (4) + wh-1 (3) is the only pair
    # that can, and the nearer wh-1 (Frankfurt) gives all it has before Berlin ships the rest.
    plan = plan_fulfilment(stock, NETWORK, "web", 6, *MUNICH)
    assert [(a.location, a.quantity) for a in plan.allocations] == [("wh-1", 3), ("store-a", 3)]
    assert plan.complete and plan.shortfall == 0


def test_never_promises_more_than_the_channel_may_sell() -> None:
    stock = stocked(store_a=2, store_b=1, wh_1=1)  # web ATS = 4 - 2 = 2
    plan = plan_fulfilment(stock, NETWORK, "web", 5, *BERLIN)
    assert plan.allocated == 2 and plan.shortfall == 3 and not plan.complete


def test_pickup_is_one_store_only() -> None:
    stock = stocked(store_a=2, store_b=3, wh_1=9)
    plan = plan_fulfilment(stock, NETWORK, "web", 4, *BERLIN, mode="pickup")
    assert [(a.location, a.quantity) for a in plan.allocations] == [("store-b", 3)]  # wh-1 offers no pickup


def test_bad_quantity() -> None:
    with pytest.raises(ValueError, match="quantity"):
        plan_fulfilment(SkuStock("SKU-1"), NETWORK, "web", 0, *BERLIN)


@settings(max_examples=300, deadline=None)
@given(st.tuples(st.integers(0, 8), st.integers(0, 8), st.integers(0, 8)), st.integers(1, 20),
       st.floats(40, 60), st.floats(0, 20))
def test_plans_are_feasible_and_use_the_fewest_locations(units: tuple[int, int, int], quantity: int,
                                                         lat: float, lon: float) -> None:
    stock = stocked(store_a=units[0], store_b=units[1], wh_1=units[2])
    plan = plan_fulfilment(stock, NETWORK, "web", quantity, lat, lon)
    ats = channel_ats(stock, NETWORK.channels["web"])
    assert plan.allocated == min(quantity, ats)
    assert all(0 < a.quantity <= stock.available(a.location) for a in plan.allocations)
    assert len({a.location for a in plan.allocations}) == len(plan.allocations)
    if plan.complete:
        availability = {loc: stock.available(loc) for loc in ("store-a", "store-b", "wh-1")}
        fewest = min(k for k in range(1, 4) for subset in combinations(availability, k)
                     if sum(availability[loc] for loc in subset) >= quantity)
        assert len(plan.allocations) == fewest
