"""One rule per test: deltas, counts with late deltas, transfers, safety stock, reservations, dedupe, bounds."""

from __future__ import annotations

import pytest

from streams.domain import SkuStock, Status, StockRules
from streams.domain import stock as stock_module
from streams.domain.movements import WORKER_EVENT_PREFIX
from tests.unit.domain.helpers import NETWORK, NOW, mv, remembered


def stock_with(*movements: object) -> SkuStock:
    stock = SkuStock("SKU-1")
    for m in movements:
        stock.apply(m, NETWORK, NOW)  # type: ignore[arg-type]
    return stock


def test_sales_receipts_returns_adjustments_move_on_hand() -> None:
    stock = stock_with(mv("receipt", quantity=10), mv("sale", quantity=3), mv("return", quantity=1),
                       mv("return", quantity=5, resellable=False),
                       mv("adjustment", quantity=-2, reason="damage"))
    assert stock.position("wh-1").on_hand == 6
    assert stock.position("wh-1").damaged == 5  # a damaged return is on hand, not sellable: not lost from view
    assert stock.position("wh-1").available == 6


def test_sale_beyond_stock_is_applied_and_flagged() -> None:
    stock = stock_with(mv("receipt", quantity=1))
    outcome = stock.apply(mv("sale", quantity=3), NETWORK, NOW)
    assert outcome.status is Status.APPLIED and outcome.anomalies == ("negative_on_hand",)
    assert stock.position("wh-1").on_hand == -2 and stock.available("wh-1") == 0


def test_count_absorbs_late_deltas_before_it_and_keeps_those_after() -> None:
    stock = stock_with(mv("receipt", quantity=10, at=100))
    # A sale just after the count arrives before the count...
    stock.apply(mv("sale", quantity=1, at=260), NETWORK, NOW)
    stock.apply(mv("count", quantity=20, at=250), NETWORK, NOW)
    assert stock.position("wh-1").on_hand == 19
    # ...and an offline POS uploads sales from before the count afterwards: already in the count.
    late = stock.apply(mv("sale", quantity=4, at=200), NETWORK, NOW)
    assert late.status is Status.ABSORBED and late.changes == ()
    assert stock.position("wh-1").on_hand == 19


def test_older_count_is_superseded_and_ties_break_on_event_key() -> None:
    stock = stock_with(mv("count", quantity=7, at=500, event_id="c2"))
    older = stock.apply(mv("count", quantity=99, at=400), NETWORK, NOW)
    assert older.status is Status.SUPERSEDED and stock.position("wh-1").on_hand == 7
    assert stock.apply(mv("count", quantity=8, at=500, event_id="c1"), NETWORK, NOW).status is Status.SUPERSEDED
    assert stock.apply(mv("count", quantity=9, at=500, event_id="c3"), NETWORK, NOW).status is Status.APPLIED
    assert stock.position("wh-1").on_hand == 9


def test_transfer_units_are_in_transit_then_received() -> None:
    stock = stock_with(mv("receipt", quantity=10, location="wh-1"))
    out = stock.apply(mv("transfer_out", quantity=4, location="wh-1", other_location="store-a", transfer_id="t1",
                         at=2_000), NETWORK, NOW)
    assert {c.after.location: (c.after.on_hand, c.after.in_transit) for c in out.changes} == {
        "wh-1": (6, 0), "store-a": (0, 4)}
    assert stock.available("store-a") == 0  # in transit is not sellable anywhere
    stock.apply(mv("transfer_in", quantity=4, location="store-a", other_location="wh-1", transfer_id="t1",
                   at=3_000), NETWORK, NOW)
    assert (stock.position("store-a").on_hand, stock.position("store-a").in_transit) == (4, 0)
    assert list(stock.records.scan("t:")) == []


def test_transfer_in_before_out_never_shows_negative_transit() -> None:
    stock = SkuStock("SKU-1")
    stock.apply(mv("transfer_in", quantity=3, location="store-a", other_location="wh-1", transfer_id="t"),
                NETWORK, NOW)
    assert stock.position("store-a").in_transit == 0
    stock.apply(mv("transfer_out", quantity=3, location="wh-1", other_location="store-a", transfer_id="t"),
                NETWORK, NOW)
    assert stock.position("store-a").in_transit == 0 and list(stock.records.scan("t:")) == []


def test_safety_stock_holds_units_back() -> None:
    stock = stock_with(mv("receipt", quantity=10), mv("safety_stock", quantity=3, at=5))
    assert stock.available("wh-1") == 7
    assert stock.apply(mv("safety_stock", quantity=0, at=4), NETWORK, NOW).status is Status.SUPERSEDED


def test_duplicate_event_changes_nothing() -> None:
    sale = mv("sale", quantity=2)
    stock = stock_with(mv("receipt", quantity=5), sale)
    again = stock.apply(sale, NETWORK, NOW)
    assert again.status is Status.DUPLICATE and again.changes == ()
    assert stock.position("wh-1").on_hand == 3 and stock.version == 2


def test_reservation_at_location_granted_only_when_available() -> None:
    stock = stock_with(mv("receipt", quantity=3, location="store-a"))
    ok = stock.apply(mv("reservation_placed", "store-a", 2, channel="web", reservation_id="r1",
                        expires_at=NOW + 60_000), NETWORK, NOW)
    no = stock.apply(mv("reservation_placed", "store-a", 2, channel="pos-a", reservation_id="r2",
                        expires_at=NOW + 60_000), NETWORK, NOW)
    assert ok.decision is not None and ok.decision.accepted and ok.decision.parts == (("store-a", 2),)
    assert no.status is Status.REFUSED and no.decision is not None and no.decision.reason == "insufficient_stock"
    assert stock.position("store-a").reserved == 2 and stock.available("store-a") == 1


def test_channel_reservation_respects_buffer_and_splits() -> None:
    stock = stock_with(mv("receipt", quantity=3, location="store-a"), mv("receipt", quantity=2, location="store-b"),
                       mv("receipt", quantity=1, location="wh-1"))
    # web: 6 available - buffer 2 = ATS 4
    too_many = stock.apply(mv("reservation_placed", None, 5, channel="web", reservation_id="big",
                              expires_at=NOW + 1), NETWORK, NOW)
    assert too_many.status is Status.REFUSED
    granted = stock.apply(mv("reservation_placed", None, 4, channel="web", reservation_id="r",
                             expires_at=NOW + 1), NETWORK, NOW)
    assert granted.decision is not None and granted.decision.parts == (("store-a", 3), ("store-b", 1))


def test_resent_request_gets_the_same_answer() -> None:
    stock = stock_with(mv("receipt", quantity=1, location="store-a"))
    request = mv("reservation_placed", "store-a", 1, channel="web", reservation_id="r", expires_at=NOW + 1)
    first = stock.apply(request, NETWORK, NOW)
    stock.apply(mv("receipt", quantity=1, location="store-a"), NETWORK, NOW)  # would change a fresh decision
    refused_request = mv("reservation_placed", "store-a", 5, channel="web", reservation_id="r2", expires_at=NOW + 1)
    refused = stock.apply(refused_request, NETWORK, NOW)
    stock.apply(mv("receipt", quantity=10, location="store-a"), NETWORK, NOW)
    assert stock.apply(request, NETWORK, NOW).decision == first.decision
    again = stock.apply(refused_request, NETWORK, NOW)
    assert again.status is Status.DUPLICATE and again.decision == refused.decision
    assert again.decision is not None and not again.decision.accepted
    assert stock.position("store-a").reserved == 1


def test_release_fulfil_and_expiry() -> None:
    stock = stock_with(mv("receipt", quantity=5, location="store-a"))
    for rid in ("r1", "r2", "r3"):
        stock.apply(mv("reservation_placed", "store-a", 1, channel="web", reservation_id=rid,
                       expires_at=NOW + 100), NETWORK, NOW)
    assert stock.position("store-a").reserved == 3
    stock.apply(mv("reservation_released", None, 0, channel="web", reservation_id="r1"), NETWORK, NOW)
    fulfilled = stock.apply(mv("reservation_fulfilled", None, 0, channel="web", reservation_id="r2", at=2_000),
                            NETWORK, NOW)
    assert fulfilled.status is Status.APPLIED
    assert (stock.position("store-a").on_hand, stock.position("store-a").reserved) == (4, 1)
    assert stock.due_expiries(NOW + 99) == []
    due = stock.due_expiries(NOW + 100)
    assert [m.reservation_id for m in due] == ["r3"]
    stock.apply_all(due, NETWORK, NOW + 100)
    assert stock.position("store-a").reserved == 0 and stock.open_reservations() == []
    assert stock.apply(due[0], NETWORK, NOW + 100).status is Status.DUPLICATE


def test_unknown_reservation_is_an_anomaly_not_a_crash() -> None:
    stock = stock_with(mv("receipt", quantity=5, location="store-a"))
    release = stock.apply(mv("reservation_released", None, 0, channel="web", reservation_id="nope"), NETWORK, NOW)
    assert release.status is Status.IGNORED and release.anomalies == ("unknown_reservation",)
    # A fulfilment of an unknown reservation still shipped units: applied as a sale, flagged.
    shipped = stock.apply(mv("reservation_fulfilled", "store-a", 2, channel="web", reservation_id="gone"),
                          NETWORK, NOW)
    assert shipped.anomalies == ("unknown_reservation",) and stock.position("store-a").on_hand == 3


def test_expired_request_is_refused() -> None:
    stock = stock_with(mv("receipt", quantity=5, location="store-a"))
    late = stock.apply(mv("reservation_placed", "store-a", 1, channel="web", reservation_id="r", at=10,
                          expires_at=NOW - 1), NETWORK, NOW)
    assert late.status is Status.REFUSED and late.reason == "expired"


def test_bad_input_is_rejected_with_a_reason() -> None:
    stock = SkuStock("SKU-1")
    cases = {
        "unknown_location": mv("receipt", location="nowhere"),
        "location_not_owned": mv("sale", location="store-b", channel="pos-a"),
        "unknown_channel": mv("sale", location="store-a", channel="ghost"),
        "from_future": mv("receipt", at=NOW + StockRules().max_future_ms + 1),
    }
    for reason, movement in cases.items():
        outcome = stock.apply(movement, NETWORK, NOW)
        assert (outcome.status, outcome.reason) == (Status.REJECTED, reason)
    assert stock.version == 0 and remembered(stock) == {}


def test_events_beyond_the_horizon_are_rejected_as_too_late_and_forgotten() -> None:
    rules = StockRules(horizon_ms=1_000)
    stock = SkuStock("SKU-1")
    for t in range(0, 5_000, 10):
        stock.apply(mv("receipt", at=t), NETWORK, NOW, rules)
    assert stock.floor == 4_990 - 1_000  # exactly the horizon behind the newest event
    late = stock.apply(mv("sale", at=3_990), NETWORK, NOW, rules)
    assert (late.status, late.reason) == (Status.REJECTED, "too_late")
    assert stock.apply(mv("sale", at=3_991), NETWORK, NOW, rules).status is Status.APPLIED
    # What lies before the floor is deleted, up to the bucket (1/64 of the horizon) the floor is in.
    assert min(event.at for event in remembered(stock).values()) > stock.floor - 1_000 // 64
    # Three records per event (itself, its bucket's index, its delta), for the events of the horizon and of the
    # floor's bucket only: 500 events were applied.
    assert len(stock.records.data) <= 3 * (1_000 + 2 * 1_000 // 64) // 10 + 1  # type: ignore[attr-defined]


def test_no_volume_cap_inside_the_horizon() -> None:
    stock = SkuStock("SKU-1")
    receipts = [mv("receipt", at=t) for t in range(1, 20_001)]
    for start in range(0, len(receipts), 1_000):
        stock.apply_all(receipts[start:start + 1_000], NETWORK, NOW)
    assert stock.position("wh-1").on_hand == 20_000
    assert len(remembered(stock)) == 20_000 and stock.floor == -1
    assert stock.apply(receipts[0], NETWORK, NOW).status is Status.DUPLICATE  # the very first one still known
    # A count as of the middle keeps the 10,000 receipts after it: reconciled against every one.
    stock.apply(mv("count", quantity=7, at=10_000), NETWORK, NOW)
    assert stock.position("wh-1").on_hand == 7 + 10_000


@pytest.mark.parametrize(("ending", "reason"), [("reservation_released", "released"),
                                                ("reservation_fulfilled", "fulfilled"),
                                                ("reservation_expired", "expired")])
def test_a_request_re_sent_after_its_hold_ended_is_never_accepted(ending: str, reason: str) -> None:
    stock = stock_with(mv("receipt", "store-a", 5))
    request = mv("reservation_placed", "store-a", 2, channel="web", reservation_id="r1", expires_at=NOW + 100)
    first = stock.apply(request, NETWORK, NOW)
    assert first.decision is not None and first.decision.accepted
    again = stock.apply(request, NETWORK, NOW)  # while the hold stands: the same answer
    assert again.decision == first.decision and again.status is Status.DUPLICATE
    end = mv(ending, None, 0, channel="web", reservation_id="r1", at=NOW + 100) if ending != "reservation_expired" \
        else stock.due_expiries(NOW + 100)[0]
    stock.apply(end, NETWORK, NOW + 100)
    late = stock.apply(request, NETWORK, NOW + 200)
    assert late.status is Status.DUPLICATE and late.decision is not None
    assert (late.decision.accepted, late.decision.reason, late.decision.parts) == (False, reason, ())
    assert stock.position("store-a").reserved == 0


def test_a_movement_taking_on_hand_out_of_range_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stock_module, "MAX_ON_HAND", 10)
    stock = stock_with(mv("receipt", "store-a", 8))
    outcome = stock.apply(mv("receipt", "store-a", 5), NETWORK, NOW)
    assert (outcome.status, outcome.reason) == (Status.REJECTED, "out_of_range")
    assert stock.position("store-a").on_hand == 8


def test_an_expiry_is_never_taken_for_a_channel_event_of_the_same_name() -> None:
    stock = stock_with(mv("receipt", "store-a", 5))
    stock.apply(mv("reservation_placed", "store-a", 2, channel="web", reservation_id="r1", event_id="expired:r1",
                   expires_at=NOW + 100), NETWORK, NOW)
    [expiry] = stock.due_expiries(NOW + 100)
    assert expiry.event_id.startswith(WORKER_EVENT_PREFIX)
    assert stock.apply(expiry, NETWORK, NOW + 100).status is Status.APPLIED
    assert stock.position("store-a").reserved == 0
