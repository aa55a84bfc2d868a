"""A SKU's history in records of its own: long histories across many buckets against the naive replay, records
bounded in size, and forgetting at the horizon that never forgets too much."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.domain import Kind, Movement, SkuStock, Status, StockRules
from streams.domain.history import MAX_CHUNK_ENTRIES, DeltaChunk, EventChunk, History
from tests.unit.domain.helpers import NETWORK, NOW, mv, remembered
from tests.unit.domain.test_properties import LOCATIONS, arrivals, figures, naive_model

# 8 ms buckets: the property tests' event times (1..300) then spread over ~40 buckets, all inside the horizon.
SMALL_BUCKETS = StockRules(horizon_ms=64 * 8)


@settings(max_examples=200, deadline=None)
@given(arrivals(), st.integers(1, 25))
def test_conservation_across_many_buckets_and_batches(case: tuple[list[Movement], list[Movement]], batch: int
                                                      ) -> None:
    history, delivered = case
    stock = SkuStock("SKU-1")
    for start in range(0, len(delivered), batch):
        stock.apply_all(delivered[start:start + batch], NETWORK, NOW, SMALL_BUCKETS)
    assert figures(stock) == naive_model(history)


def test_a_long_history_in_one_bucket_is_split_into_bounded_records() -> None:
    stock = SkuStock("SKU-1")
    receipts = [mv("receipt", location=LOCATIONS[0], at=1_000 + i % 7) for i in range(3 * MAX_CHUNK_ENTRIES + 1)]
    stock.apply_all(receipts, NETWORK, NOW)
    chunks = [v for _, v in stock.records.scan("x:")] + [v for _, v in stock.records.scan("d:")]
    assert chunks and all(len(c.keys if isinstance(c, EventChunk) else c.entries) <= MAX_CHUNK_ENTRIES
                          for c in chunks if isinstance(c, EventChunk | DeltaChunk))
    count = stock.apply(mv("count", location=LOCATIONS[0], quantity=100, at=1_003), NETWORK, NOW)
    after = sum(1 for m in receipts if m.occurred_at > 1_003)
    assert count.status is Status.APPLIED and stock.position(LOCATIONS[0]).on_hand == 100 + after


def test_an_event_remembered_again_later_outlives_its_first_bucket() -> None:
    rules = StockRules(horizon_ms=1_000)
    stock = SkuStock("SKU-1")
    stock.apply(mv("receipt", location="store-a", quantity=5, at=1), NETWORK, NOW, rules)

    def hold(event: str, at: int) -> Movement:
        return mv("reservation_placed", "store-a", 1, channel="web", reservation_id="r1", event_id=event, at=at,
                  expires_at=NOW + 10_000)

    def release(event: str, at: int) -> Movement:
        return mv("reservation_released", None, 0, channel="web", reservation_id="r1", event_id=event, at=at)

    stock.apply_all([hold("p1", 5), release("c1", 10)], NETWORK, NOW, rules)
    stock.apply_all([hold("p2", 1_500), release("c2", 2_000)], NETWORK, NOW, rules)
    assert stock.floor == 2_000 - 1_000  # the bucket of the first hold's events is forgotten...
    known = remembered(stock)
    assert "web:p1" not in known and "web:c1" not in known
    assert known["~ended:web:r1"].at == 2_000  # ... but not how the hold ended the second time
    again = stock.apply(hold("p2", 1_500), NETWORK, NOW, rules)  # re-sent: its hold has ended, and how is known
    assert again.status is Status.DUPLICATE and again.decision is not None
    assert (again.decision.accepted, again.decision.reason) == (False, "released")


def test_forgetting_is_bounded_per_batch_and_exact_meanwhile() -> None:
    stock = SkuStock("SKU-1")
    rules = StockRules(horizon_ms=64_000)  # 1 s buckets
    stock.apply_all([mv("receipt", at=t) for t in range(1, 5_001)], NETWORK, NOW, rules)
    history = History(stock.records, stock.index, rules.horizon_ms // 64)
    stock.floor = 4_000
    history.forget_until(stock.floor, budget=100)
    left = remembered(stock)
    assert 5_000 > len(left) > 1_000  # some forgotten (a bucket record at a time), not all yet
    probe = History(stock.records, stock.index, rules.horizon_ms // 64)
    assert probe.seen("wms:" + next(key for key in left if left[key].at <= 4_000).split(":", 1)[1], stock.floor) \
        is None  # not yet deleted, but forgotten all the same
    for _ in range(100):
        History(stock.records, stock.index, rules.horizon_ms // 64).forget_until(stock.floor, budget=100)
    assert min(event.at for event in remembered(stock).values()) > 4_000 - 1_000
    assert stock.apply(Movement(Kind.RECEIPT, "late", "wms", "SKU-1", "wh-1", 1, 4_000), NETWORK, NOW,
                       rules).reason == "too_late"
