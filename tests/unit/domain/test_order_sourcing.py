"""Sourcing a whole order against a brute-force model on small networks: every plan is feasible (each line gets
exactly its units, never more than a location has or the channel may sell), uses the fewest parcels the model
finds within max_split, and among those is the cheapest; an order the model cannot fill is refused."""

from __future__ import annotations

from itertools import combinations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.domain import Network
from streams.domain.order_sourcing import LineStock, OrderLine, OrderPlan, plan_order

CUSTOMER = (51.0, 10.0)


def network(places: list[tuple[float, float, float, bool]]) -> Network:
    """Locations loc-0.. at (lat, lon) with a handling cost; every one ships, those flagged are pickup stores."""
    return Network.from_dict({
        "locations": [{"id": f"loc-{i}", "kind": "store", "latitude": lat, "longitude": lon, "ship_from": True,
                       "pickup": pickup, "handling_cost": handling}
                      for i, (lat, lon, handling, pickup) in enumerate(places)],
        "channels": [{"id": "web", "locations": [f"loc-{i}" for i in range(len(places))]}],
    })


@st.composite
def orders(draw: st.DrawFn) -> tuple[Network, list[OrderLine], dict[str, LineStock], int | None]:
    size = draw(st.integers(1, 5))
    places = [(draw(st.floats(47, 55)), draw(st.floats(6, 15)), draw(st.sampled_from([0.0, 2.0, 5.0])),
               draw(st.booleans())) for _ in range(size)]
    lines, stock = [], {}
    for i in range(draw(st.integers(1, 4))):
        line = OrderLine(f"l{i}", f"SKU-{i}", draw(st.integers(1, 6)))
        available = {f"loc-{j}": draw(st.integers(0, 5)) for j in range(size)}
        sellable = draw(st.integers(0, sum(available.values()) + 1))
        lines.append(line)
        stock[line.line_id] = LineStock(available, sellable)
    return network(places), lines, stock, draw(st.none() | st.integers(1, 3))


def model(net: Network, lines: list[OrderLine], stock: dict[str, LineStock], limit: int | None, pickup: bool
          ) -> tuple[int, float] | None:
    """The fewest parcels, then the lowest cost, of any set of locations that can fill every line."""
    ids = sorted(loc.id for loc in net.locations.values() if (loc.pickup if pickup else loc.ship_from))
    if any(line.quantity > stock[line.line_id].sellable for line in lines):
        return None
    most = 1 if pickup else len(ids) if limit is None else min(limit, len(ids))
    for k in range(1, most + 1):
        costs = [round(sum(net.shipment(loc, *CUSTOMER)[1] for loc in subset), 6)
                 for subset in combinations(ids, k)
                 if all(sum(stock[line.line_id].available[loc] for loc in subset) >= line.quantity for line in lines)]
        if costs:
            return k, min(costs)
    return None


def check_feasible(plan: OrderPlan, lines: list[OrderLine], stock: dict[str, LineStock], limit: int | None) -> None:
    used = {}
    for line in lines:
        taken = plan.allocations[line.line_id]
        assert sum(n for _, n in taken) == line.quantity
        for location, n in taken:
            assert 0 < n
            used[(line.line_id, location)] = n
            assert n <= stock[line.line_id].available[location]
    assert {p.location for p in plan.parcels} == {loc for _, loc in used}
    assert limit is None or len(plan.parcels) <= limit
    for parcel in plan.parcels:
        assert all(used[(line_id, parcel.location)] == n for line_id, n in parcel.lines)


@settings(max_examples=300, deadline=None)
@given(orders(), st.booleans())
def test_a_plan_is_feasible_with_the_fewest_parcels_then_the_lowest_cost(
        case: tuple[Network, list[OrderLine], dict[str, LineStock], int | None], pickup: bool) -> None:
    net, lines, stock, limit = case
    plan = plan_order(lines, stock, net, "web", *CUSTOMER, mode="pickup" if pickup else "ship", max_split=limit)
    best = model(net, lines, stock, limit, pickup)
    if best is None:
        assert not plan.accepted and plan.reason is not None
        return
    assert plan.accepted, plan
    check_feasible(plan, lines, stock, 1 if pickup else limit)
    assert len(plan.parcels) == best[0]
    assert plan.cost == pytest.approx(best[1], abs=1e-3 * best[0])  # each parcel's cost is rounded to 3 places


@settings(max_examples=200, deadline=None)
@given(orders())
def test_a_partial_order_fills_every_line_it_can_and_names_the_others(
        case: tuple[Network, list[OrderLine], dict[str, LineStock], int | None]) -> None:
    net, lines, stock, _ = case
    plan = plan_order(lines, stock, net, "web", *CUSTOMER, partial=True)
    fillable = [line for line in lines if model(net, [line], stock, None, False) is not None]
    assert set(plan.left_out) == {line.line_id for line in lines} - {line.line_id for line in fillable}
    if fillable:
        assert plan.accepted
        check_feasible(plan, fillable, stock, None)
        assert len(plan.parcels) == model(net, fillable, stock, None, False)[0]  # type: ignore[index]


def test_three_lines_leave_in_one_parcel_from_the_warehouse_that_has_them_all() -> None:
    net = network([(52.52, 13.40, 0.0, True), (48.14, 11.58, 0.0, True), (50.11, 8.68, 5.0, False)])
    lines = [OrderLine("1", "A", 1), OrderLine("2", "B", 2), OrderLine("3", "C", 1)]
    # Each line's nearest store has it, but only the warehouse has all three.
    stock = {"1": LineStock({"loc-0": 5, "loc-1": 0, "loc-2": 1}, 6),
             "2": LineStock({"loc-0": 0, "loc-1": 5, "loc-2": 2}, 7),
             "3": LineStock({"loc-0": 5, "loc-1": 5, "loc-2": 1}, 11)}
    plan = plan_order(lines, stock, net, "web", 52.5, 13.4)
    assert plan.accepted and [p.location for p in plan.parcels] == ["loc-2"]
    assert plan.parcels[0].lines == (("1", 1), ("2", 2), ("3", 1))


def test_an_order_that_cannot_be_filled_names_its_line() -> None:
    net = network([(52.52, 13.40, 0.0, True)])
    lines = [OrderLine("1", "A", 1), OrderLine("2", "B", 4)]
    stock = {"1": LineStock({"loc-0": 5}, 5), "2": LineStock({"loc-0": 5}, 3)}  # B: the channel may sell only 3
    plan = plan_order(lines, stock, net, "web", 52.5, 13.4)
    assert (plan.accepted, plan.reason, plan.line) == (False, "insufficient_stock", "2")


def test_max_split_refuses_an_order_that_needs_more_parcels() -> None:
    net = network([(52.52, 13.40, 0.0, True), (48.14, 11.58, 0.0, True)])
    lines = [OrderLine("1", "A", 1), OrderLine("2", "B", 1)]
    stock = {"1": LineStock({"loc-0": 1, "loc-1": 0}, 1), "2": LineStock({"loc-0": 0, "loc-1": 1}, 1)}
    assert len(plan_order(lines, stock, net, "web", 52.5, 13.4).parcels) == 2
    refused = plan_order(lines, stock, net, "web", 52.5, 13.4, max_split=1)
    assert (refused.accepted, refused.reason) == (False, "max_split")
    with pytest.raises(ValueError, match="max_split"):
        plan_order(lines, stock, net, "web", 52.5, 13.4, max_split=0)


def test_a_hundred_lines_over_many_locations_are_planned() -> None:
    net = network([(47 + i * 0.3, 6 + i * 0.4, 0.0, False) for i in range(30)])
    lines = [OrderLine(str(i), f"SKU-{i}", 1 + i % 3) for i in range(100)]
    stock = {str(i): LineStock({f"loc-{j}": (i + j) % 4 for j in range(30)}, 1_000) for i in range(100)}
    plan = plan_order(lines, stock, net, "web", 51.0, 10.0)
    assert plan.accepted
    check_feasible(plan, lines, stock, None)
