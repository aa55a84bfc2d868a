"""The recent sales rate: units sold per location and day over the last 28 days of event time, whatever the
arrival order, re-sent events counted once, bounded whatever the history."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.domain import Kind, Movement, SkuStock, StockRules
from streams.domain.demand import DAY_MS, SALES_DAYS, RecentSales
from tests.unit.domain.helpers import NETWORK, mv

LOCATIONS = ["store-a", "store-b", "wh-1"]
START = 1_000 * DAY_MS  # day 1000 of the epoch
LONG_MEMORY = StockRules(horizon_ms=90 * DAY_MS)  # nothing in these histories is too late: only the window decides
NOW = START + 100 * DAY_MS


@st.composite
def sales_histories(draw: st.DrawFn) -> list[Movement]:
    """Sales, receipts and counts at three locations over two months."""
    movements = []
    for i in range(draw(st.integers(1, 50))):
        kind = draw(st.sampled_from([Kind.SALE, Kind.SALE, Kind.RECEIPT, Kind.COUNT]))
        movements.append(Movement(kind, f"e{i}", "wms", "SKU-1", draw(st.sampled_from(LOCATIONS)),
                                  draw(st.integers(1, 9)), START + draw(st.integers(0, 60 * DAY_MS))))
    return movements


def model(history: list[Movement], window: int) -> dict[str, int]:
    """Units sold per location in the `window` days ending with the day of the newest event."""
    newest = max(m.occurred_at for m in history) // DAY_MS
    sold = dict.fromkeys(LOCATIONS, 0)
    for m in {m.key: m for m in history}.values():
        if m.kind is Kind.SALE and newest - m.occurred_at // DAY_MS < window:
            sold[m.location or ""] += m.quantity
    return sold


@settings(max_examples=300, deadline=None)
@given(sales_histories(), st.randoms(use_true_random=False), st.integers(1, SALES_DAYS))
def test_the_sales_rate_is_the_same_whatever_the_order_and_matches_a_model(
        history: list[Movement], rnd: object, window: int) -> None:
    delivered = history + history[: len(history) // 3]  # some re-sent
    rnd.shuffle(delivered)  # type: ignore[attr-defined]
    one, other = SkuStock("SKU-1"), SkuStock("SKU-1")
    one.apply_all(history, NETWORK, NOW, LONG_MEMORY)
    other.apply_all(delivered, NETWORK, NOW, LONG_MEMORY)
    assert one.sales == other.sales
    expected = model(history, window)
    assert {loc: one.sales.sold(loc, window) for loc in LOCATIONS} == expected
    assert all(one.sales.per_day(loc, window) == expected[loc] / window for loc in LOCATIONS)
    assert all(0 < len(days) <= SALES_DAYS and days[-1] != 0 for days in one.sales.units.values())


def test_fulfilled_reservations_count_as_sales_and_returns_do_not_net_them_off() -> None:
    stock, at = SkuStock("SKU-1"), START
    stock.apply(mv(Kind.RECEIPT, "store-a", 10, at=at), NETWORK, at)
    placed = stock.apply(mv(Kind.RESERVATION_PLACED, None, 3, at=at + 1, channel="web", reservation_id="r1",
                            expires_at=at + 3_600_000), NETWORK, at)
    assert placed.decision is not None and placed.decision.parts == (("store-a", 3),)
    stock.apply(mv(Kind.RESERVATION_FULFILLED, None, 3, at=at + 2, channel="web", reservation_id="r1"), NETWORK, at)
    stock.apply(mv(Kind.SALE, "store-a", 2, at=at + DAY_MS, channel="pos-a"), NETWORK, at + DAY_MS)
    stock.apply(mv(Kind.RETURN, "store-a", 1, at=at + DAY_MS + 1, channel="pos-a", resellable=True), NETWORK,
                at + DAY_MS)
    assert stock.sales.units["store-a"] == [2, 3]  # today's sale, and the day before the fulfilled hold
    assert stock.sales.per_day("store-a", 7) == 5 / 7


def test_days_that_leave_the_window_are_forgotten_and_a_quiet_location_is_dropped() -> None:
    sales = RecentSales()
    sales.add("store-a", START, 5)
    sales.add("store-b", START + 10 * DAY_MS, 1)
    assert sales.units == {"store-a": [0] * 10 + [5], "store-b": [1]}
    sales.advance(START + SALES_DAYS * DAY_MS)  # store-a's day has left the window, store-b's has not
    assert "store-a" not in sales.units and sales.sold("store-b", SALES_DAYS) == 1
    sales.add("store-a", START + DAY_MS - 1, 7)  # a sale on a day that has left the window changes nothing
    assert "store-a" not in sales.units
    assert sales.copy() == sales and sales.copy() is not sales
