"""Stock states: returns by disposition, state changes, write-offs, and the rule that only units in a state can
leave it. Property test against a model that replays the history by event time."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.domain import InvalidMovement, Kind, Movement, SkuStock, Status, channel_ats
from streams.domain.movements import ONWARD_STATES, SELLABLE, UNSELLABLE_STATES, WRITTEN_OFF
from tests.unit.domain.helpers import NETWORK, NOW, mv

WEB = NETWORK.channels["web"]


def stock_with(*movements: Movement) -> SkuStock:
    stock = SkuStock("SKU-1")
    for m in movements:
        assert stock.apply(m, NETWORK, NOW).status is Status.APPLIED, m
    return stock


def test_a_return_goes_where_its_disposition_says_and_only_sellable_units_are_sold() -> None:
    stock = stock_with(mv("return", quantity=2, disposition="sellable", returned_via="store"),
                       mv("return", quantity=3, disposition="inspect", returned_via="post"),
                       mv("return", quantity=4, disposition="damaged", returned_via="pickup_point"),
                       mv("return", quantity=5, resellable=False))  # no disposition: damaged
    position = stock.position("wh-1")
    assert (position.on_hand, position.quality_control, position.damaged, position.quarantine) == (2, 3, 9, 0)
    assert position.available == 2 and channel_ats(stock, WEB) == 0  # web keeps a buffer of 2


def test_inspected_units_are_released_to_sellable_or_written_off() -> None:
    stock = stock_with(mv("receipt", quantity=10), mv("return", quantity=5, disposition="inspect"))
    assert channel_ats(stock, WEB) == 8
    released = stock.apply(mv("adjustment", quantity=3, state="quality_control", to_state=SELLABLE,
                              reason="inspected"), NETWORK, NOW)
    assert released.status is Status.APPLIED and len(released.changes) == 1
    change = released.changes[0]
    assert (change.before.on_hand, change.before.quality_control) == (10, 5)
    assert (change.after.on_hand, change.after.quality_control) == (13, 2)
    assert channel_ats(stock, WEB) == 11
    stock.apply(mv("adjustment", quantity=2, state="quality_control", to_state="damaged"), NETWORK, NOW)
    written = stock.apply(mv("adjustment", quantity=1, state="damaged", to_state=WRITTEN_OFF, reason="damage"),
                          NETWORK, NOW)
    assert written.status is Status.APPLIED
    position = stock.position("wh-1")
    assert (position.on_hand, position.quality_control, position.damaged) == (13, 0, 1)


def test_sellable_units_put_into_quarantine_leave_the_channels_figures_and_come_back() -> None:
    stock = stock_with(mv("receipt", quantity=10))
    stock.apply(mv("adjustment", quantity=4, to_state="quarantine", reason="recall"), NETWORK, NOW)
    assert (stock.position("wh-1").on_hand, stock.position("wh-1").quarantine) == (6, 4)
    assert channel_ats(stock, WEB) == 4
    stock.apply(mv("adjustment", quantity=4, state="quarantine", to_state=SELLABLE), NETWORK, NOW)
    assert (stock.position("wh-1").on_hand, stock.position("wh-1").quarantine) == (10, 0)


def test_an_adjustment_in_a_state_changes_only_that_state() -> None:
    stock = stock_with(mv("return", quantity=2, disposition="damaged"),
                       mv("adjustment", quantity=3, state="damaged", reason="found"),
                       mv("adjustment", quantity=-1, state="damaged", reason="theft"))
    assert (stock.position("wh-1").on_hand, stock.position("wh-1").damaged) == (0, 4)


@pytest.mark.parametrize("taking", [
    mv("adjustment", quantity=4, state="quality_control", to_state=SELLABLE, event_id="take"),
    mv("adjustment", quantity=4, state="quality_control", to_state=WRITTEN_OFF, reason="damage", event_id="take"),
    mv("adjustment", quantity=-4, state="quality_control", reason="correction", event_id="take"),
])
def test_more_units_than_a_state_holds_cannot_leave_it_and_the_movement_is_not_lost(taking: Movement) -> None:
    stock = stock_with(mv("receipt", quantity=10), mv("return", quantity=3, disposition="inspect"))
    refused = stock.apply(taking, NETWORK, NOW)
    assert refused.status is Status.REJECTED and refused.reason == "insufficient_in_state"
    assert refused.changes == () and stock.position("wh-1").quality_control == 3
    # Not remembered: sent again once the units are there (from the dead-letter topic), it applies.
    stock.apply(mv("return", quantity=1, disposition="inspect"), NETWORK, NOW)
    assert stock.apply(taking, NETWORK, NOW).status is Status.APPLIED
    assert stock.position("wh-1").quality_control == 0


def test_sellable_units_moved_into_a_state_are_a_fact_like_a_sale() -> None:
    outcome = SkuStock("SKU-1").apply(mv("adjustment", quantity=2, to_state="damaged"), NETWORK, NOW)
    assert outcome.status is Status.APPLIED and outcome.anomalies == ("negative_on_hand",)
    assert (outcome.changes[0].after.on_hand, outcome.changes[0].after.damaged) == (-2, 2)


def test_a_count_counts_sellable_units_and_leaves_the_states_alone() -> None:
    stock = stock_with(mv("receipt", quantity=10, at=1_000), mv("return", quantity=3, disposition="inspect",
                                                                   at=1_100))
    # Units put into quarantine before the count: the count already saw the shelf without them.
    stock.apply(mv("count", quantity=6, at=2_000), NETWORK, NOW)
    late = stock.apply(mv("adjustment", quantity=4, to_state="quarantine", at=1_500), NETWORK, NOW)
    assert late.status is Status.APPLIED
    position = stock.position("wh-1")
    assert (position.on_hand, position.quality_control, position.quarantine) == (6, 3, 4)


def test_a_state_change_sent_again_changes_nothing() -> None:
    stock = stock_with(mv("return", quantity=3, disposition="inspect"))
    release = mv("adjustment", quantity=2, state="quality_control", to_state=SELLABLE)
    stock.apply(release, NETWORK, NOW)
    assert stock.apply(release, NETWORK, NOW).status is Status.DUPLICATE
    assert (stock.position("wh-1").on_hand, stock.position("wh-1").quality_control) == (2, 1)


@pytest.mark.parametrize(("fields", "named"), [
    ({"kind": "adjustment", "state": "lost", "quantity": 1, "reason": "other"}, "state: 'lost' is not a stock state"),
    ({"kind": "adjustment", "to_state": "limbo"}, "to_state: 'limbo' is neither a stock state"),
    ({"kind": "adjustment", "to_state": "sellable"}, "to_state: the units are in 'sellable' already"),
    ({"kind": "adjustment", "state": "damaged", "to_state": "quality_control"},
     "to_state: units in damaged go to sellable, written_off, not back to quality_control"),
    ({"kind": "adjustment", "state": "quarantine", "to_state": "quality_control"},
     "to_state: units in quarantine go to damaged, sellable, written_off, not back to quality_control"),
    ({"kind": "adjustment", "to_state": "damaged", "quantity": -2}, "quantity: a state change moves a positive"),
    ({"kind": "adjustment", "state": "damaged", "to_state": WRITTEN_OFF}, "reason: a write-off needs one of"),
    ({"kind": "sale", "state": "damaged"}, "state: only an adjustment names a stock state"),
    ({"kind": "sale", "disposition": "inspect"}, "returned_via/disposition: only a return has them"),
    ({"kind": "return", "disposition": "resell"}, "disposition: 'resell' is not one of"),
    ({"kind": "return", "returned_via": "drone"}, "returned_via: 'drone' is not one of"),
])
def test_bad_state_input_is_named(fields: dict[str, object], named: str) -> None:
    kind = Kind(str(fields.pop("kind")))
    quantity = fields.pop("quantity", 2)
    with pytest.raises(InvalidMovement, match=named.replace("(", r"\(")):
        Movement(kind, "e-bad", "wms", "SKU-1", "wh-1", quantity, 1_000, **fields)  # type: ignore[arg-type]


# --- property: conservation across states, idempotence, any order of arrival --------------------------------
LOCATIONS = ["store-a", "wh-1"]


@st.composite
def state_histories(draw: st.DrawFn) -> list[Movement]:
    """Facts in event-time order (times strictly increasing) that are valid in that order: units leave a state
    only when the history has put them there by then."""
    held = {(location, state): 0 for location in LOCATIONS for state in UNSELLABLE_STATES}
    movements: list[Movement] = []
    at = 0
    for i in range(draw(st.integers(1, 40))):
        at += draw(st.integers(1, 20))
        location = draw(st.sampled_from(LOCATIONS))
        kind = draw(st.sampled_from(["receipt", "sale", "count", "return", "into", "out", "out", "adjust"]))
        units = draw(st.integers(1, 6))
        state = draw(st.sampled_from(UNSELLABLE_STATES))
        if kind == "return":
            disposition = draw(st.sampled_from(["sellable", "inspect", "damaged"]))
            m = Movement(Kind.RETURN, f"e{i}", "wms", "SKU-1", location, units, at, disposition=disposition,
                         returned_via=draw(st.sampled_from(["post", "store", "pickup_point"])))
        elif kind == "into":  # sellable or another state's units into a state (onward only)
            source = draw(st.sampled_from([SELLABLE, *[s for s in UNSELLABLE_STATES if held[location, s]
                                                       and state in ONWARD_STATES[s]]]))
            if source != SELLABLE:
                units = min(units, held[location, source])
            m = Movement(Kind.ADJUSTMENT, f"e{i}", "wms", "SKU-1", location, units, at,
                         state=None if source == SELLABLE else source, to_state=state)
        elif kind in ("out", "adjust"):
            if not held[location, state]:
                continue
            units = min(units, held[location, state])
            if kind == "adjust":
                m = Movement(Kind.ADJUSTMENT, f"e{i}", "wms", "SKU-1", location, -units, at, reason="correction",
                             state=state)
            else:
                to_state = draw(st.sampled_from([SELLABLE, WRITTEN_OFF]))
                m = Movement(Kind.ADJUSTMENT, f"e{i}", "wms", "SKU-1", location, units, at, reason="damage",
                             state=state, to_state=to_state)
        else:
            m = Movement(Kind(kind), f"e{i}", "wms", "SKU-1", location, draw(st.integers(0, 30)) if kind == "count"
                         else units, at)
        for changed, delta in m.state_deltas:
            held[location, changed] += delta
        movements.append(m)
    return movements


def event_time_model(history: list[Movement]) -> dict[str, tuple[int, ...]]:
    """Sellable: the last count plus every delta after it; each other state: the sum of what went in and out."""
    result = {}
    for location in LOCATIONS:
        here = [m for m in history if m.location == location]  # already in event-time order
        counts = [i for i, m in enumerate(here) if m.kind is Kind.COUNT]
        start = counts[-1] if counts else -1
        sellable = (here[start].quantity if counts else 0) + sum(m.delta for m in here[start + 1:])
        states = [sum(units for m in here for changed, units in m.state_deltas if changed == state)
                  for state in UNSELLABLE_STATES]
        result[location] = (sellable, *states)
    return result


def figures(stock: SkuStock) -> dict[str, tuple[int, ...]]:
    return {location: (stock.position(location).on_hand,
                       *(stock.position(location).in_state(state) for state in UNSELLABLE_STATES))
            for location in LOCATIONS}


@settings(max_examples=300, deadline=None)
@given(state_histories(), st.randoms(use_true_random=False), st.data())
def test_any_arrival_order_with_its_dead_letters_sent_again_ends_at_the_event_time_truth(
        history: list[Movement], rnd: object, data: st.DataObject) -> None:
    delivered = list(history)
    rnd.shuffle(delivered)  # type: ignore[attr-defined]
    delivered += data.draw(st.lists(st.sampled_from(history), max_size=8)) if history else []
    stock = SkuStock("SKU-1")
    dead_letters = []
    for m in delivered:
        outcome = stock.apply(m, NETWORK, NOW)
        assert all(stock.position(loc).in_state(s) >= 0 for loc in LOCATIONS for s in UNSELLABLE_STATES)
        if outcome.status is Status.REJECTED:
            assert outcome.reason == "insufficient_in_state"
            dead_letters.append(m)
    while dead_letters:  # an operator sends the dead letters again until they apply: each one does, in time
        still = [m for m in dead_letters if stock.apply(m, NETWORK, NOW).status is Status.REJECTED]
        assert len(still) < len(dead_letters), "a dead letter that never applies"
        dead_letters = still
    assert figures(stock) == event_time_model(history)
    again = [stock.apply(m, NETWORK, NOW).status for m in history]
    assert set(again) <= {Status.DUPLICATE}
    assert figures(stock) == event_time_model(history)


def test_a_year_of_a_best_sellers_returns_and_inspections_keeps_its_records_bounded() -> None:
    """200 returns a day for a year, half inspected and released or damaged and written off the next hour: the
    states are three figures in the position; what grows with history is forgotten at the horizon as for any
    movement, so the records held after a year are those of the last week."""
    day, hour = 24 * 3_600_000, 3_600_000
    stock = SkuStock("HOT")
    records_held = []
    n = 0
    for d in range(365):
        batch = []
        for i in range(200):
            at = d * day + i * 60_000
            n += 1
            batch.append(Movement(Kind.RETURN, f"r{n}", "wms", "HOT", "wh-1", 1, at, disposition="inspect",
                                  returned_via="post"))
            to_state = SELLABLE if i % 4 else "damaged"
            batch.append(Movement(Kind.ADJUSTMENT, f"i{n}", "wms", "HOT", "wh-1", 1, at + hour,
                                  state="quality_control", to_state=to_state))
            if to_state == "damaged":
                batch.append(Movement(Kind.ADJUSTMENT, f"w{n}", "wms", "HOT", "wh-1", 1, at + hour + 1,
                                      state="damaged", to_state=WRITTEN_OFF, reason="damage"))
        outcomes = stock.apply_all(batch, NETWORK, d * day + 2 * day)
        assert {o.status for o in outcomes} == {Status.APPLIED}
        records_held.append(len(stock.records.data))  # type: ignore[attr-defined]
    position = stock.position("wh-1")
    assert (position.on_hand, position.quality_control, position.damaged) == (365 * 150, 0, 0)
    assert max(records_held[30:]) <= 1.2 * records_held[14]  # flat after the first week's horizon
