"""Sourced reservations: a request with a delivery point is planned by the SKU's owner with the sourcing API's rules
and held where the plan says, in the same step. Property tests against a brute-force model: a hold never exceeds
what a location has available or what the channel may sell, and it is the cheapest feasible one (the fewest
locations, then the lowest cost); a channel that forbids splitting gets one location or a refusal."""

from __future__ import annotations

from itertools import combinations
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.domain import InvalidMovement, Kind, Network, SkuStock
from streams.domain.network import distance_km
from streams.domain.stock import Status
from tests.unit.domain.helpers import NOW, mv

LOCATIONS = [("st-1", 52.52, 13.40, True, 4.0), ("st-2", 53.55, 9.99, True, 4.0), ("st-3", 48.14, 11.58, True, 4.0),
             ("wh-1", 51.31, 9.48, False, 1.0), ("wh-2", 51.34, 12.37, False, 1.0)]


def network(split: bool, buffer: int) -> Network:
    return Network.from_dict({
        "locations": [{"id": ident, "kind": "store" if pickup else "warehouse", "latitude": lat, "longitude": lon,
                       "ship_from": True, "pickup": pickup, "handling_cost": cost}
                      for ident, lat, lon, pickup, cost in LOCATIONS],
        "channels": [{"id": "web", "locations": [loc[0] for loc in LOCATIONS], "buffer": buffer, "split": split},
                     {"id": "wms", "locations": [loc[0] for loc in LOCATIONS]}]})


def stocked(net: Network, units: list[int], reserved_first: int) -> SkuStock:
    stock = SkuStock("SKU-1")
    for (ident, *_), n in zip(LOCATIONS, units, strict=True):
        if n:
            stock.apply(mv(Kind.RECEIPT, ident, n), net, NOW)
    if reserved_first and units[0] >= reserved_first:  # some units already held: available < on_hand
        stock.apply(mv(Kind.RESERVATION_PLACED, LOCATIONS[0][0], reserved_first, channel="web",
                       reservation_id="earlier", expires_at=NOW * 10), net, NOW)
    return stock


def model(stock: SkuStock, net: Network, quantity: int, lat: float, lon: float, mode: str
          ) -> frozenset[str] | None:
    """The cheapest feasible set of locations by brute force (None: none can fill it)."""
    channel = net.channels["web"]
    ats = max(0, sum(stock.available(loc) for loc in channel.selling_locations) - channel.buffer)
    if ats < quantity:
        return None
    eligible = {ident: (stock.available(ident), net.distance_weight * distance_km(lat, lon, spec.latitude,
                                                                                   spec.longitude)
                        + spec.handling_cost)
                for ident, spec in net.locations.items() if (spec.pickup if mode == "pickup" else spec.ship_from)
                and stock.available(ident) > 0}
    sizes = [1] if mode == "pickup" or not channel.split else range(1, len(eligible) + 1)
    for k in sizes:
        feasible = [set_ for set_ in combinations(sorted(eligible), k)
                    if sum(eligible[i][0] for i in set_) >= quantity]
        if feasible:
            return frozenset(min(feasible, key=lambda s: (round(sum(eligible[i][1] for i in s), 9), sorted(s))))
    return None


@settings(max_examples=300, deadline=None)
@given(units=st.lists(st.integers(0, 9), min_size=5, max_size=5), quantity=st.integers(1, 25),
       lat=st.floats(47.0, 55.0), lon=st.floats(6.0, 15.0), mode=st.sampled_from(["ship", "pickup"]),
       split=st.booleans(), buffer=st.integers(0, 3), reserved_first=st.integers(0, 3))
def test_a_sourced_hold_is_feasible_and_the_cheapest(units: list[int], quantity: int, lat: float, lon: float,
                                                     mode: str, split: bool, buffer: int,
                                                     reserved_first: int) -> None:
    net = network(split, buffer)
    stock = stocked(net, units, reserved_first)
    available = {ident: stock.available(ident) for ident, *_ in LOCATIONS}
    ats = max(0, sum(available.values()) - buffer)
    expected = model(stock, net, quantity, lat, lon, mode)  # decided on the state before the request
    outcome = stock.apply(mv(Kind.RESERVATION_PLACED, None, quantity, channel="web", reservation_id="order-1",
                             expires_at=NOW * 10, latitude=lat, longitude=lon, mode=mode), net, NOW)
    decision = outcome.decision
    assert decision is not None
    if expected is None:
        assert outcome.status is Status.REFUSED and not decision.accepted
        assert all(stock.available(ident) == n for ident, n in available.items())  # nothing held
        return
    assert outcome.status is Status.APPLIED and decision.accepted
    held = dict(decision.parts)
    assert sum(held.values()) == quantity <= ats
    assert all(0 < units_ <= available[ident] for ident, units_ in held.items())
    assert frozenset(held) == expected
    assert all(stock.available(ident) == available[ident] - held.get(ident, 0) for ident in available)
    assert {loc for loc, _, _ in decision.sourcing} == set(held)  # each held location with its distance and cost
    if mode == "pickup" or not split:
        assert len(held) == 1


def test_a_channel_that_forbids_splitting_is_refused_when_no_one_location_can_fill_it() -> None:
    net = network(split=False, buffer=0)
    stock = stocked(net, [2, 2, 0, 3, 0], 0)
    outcome = stock.apply(mv(Kind.RESERVATION_PLACED, None, 5, channel="web", reservation_id="o-1",
                             expires_at=NOW * 10, latitude=52.5, longitude=13.4), net, NOW)
    assert outcome.status is Status.REFUSED and outcome.reason == "no_single_location"
    splitting = network(split=True, buffer=0)
    outcome = stocked(splitting, [2, 2, 0, 3, 0], 0).apply(
        mv(Kind.RESERVATION_PLACED, None, 5, channel="web", reservation_id="o-1", expires_at=NOW * 10,
           latitude=52.5, longitude=13.4), splitting, NOW)
    assert outcome.status is Status.APPLIED and dict(outcome.decision.parts) == {"st-1": 2, "wh-1": 3}  # type: ignore[union-attr]


def test_a_resent_sourced_request_gets_the_same_holds_with_their_distances() -> None:
    net = network(split=True, buffer=0)
    stock = stocked(net, [5, 0, 0, 5, 0], 0)
    request: dict[str, Any] = dict(channel="web", reservation_id="o-7", expires_at=NOW * 10, latitude=51.3,
                                   longitude=9.5)
    first = stock.apply(mv(Kind.RESERVATION_PLACED, None, 2, **request), net, NOW).decision
    again = stock.apply(mv(Kind.RESERVATION_PLACED, None, 2, **request), net, NOW).decision
    assert first is not None and again is not None
    assert first.parts == again.parts == (("wh-1", 2),) and first.sourcing == again.sourcing
    assert first.sourcing[0][1] < 5  # km: the delivery point is next to wh-1


@pytest.mark.parametrize(("extra", "message"), [
    (dict(latitude=52.5), "needs both"), (dict(latitude=95.0, longitude=10.0), "outside -90..90"),
    (dict(latitude=52.5, longitude=10.0, mode="drone"), "neither 'ship' nor 'pickup'")])
def test_a_bad_delivery_point_is_an_invalid_movement(extra: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidMovement, match=message):
        mv(Kind.RESERVATION_PLACED, None, 1, channel="web", reservation_id="o", expires_at=NOW, **extra)


def test_only_a_reservation_is_sourced() -> None:
    with pytest.raises(InvalidMovement, match="only a reservation is sourced"):
        mv(Kind.SALE, "st-1", 1, channel="web", latitude=52.5, longitude=13.4)
