"""Property tests against a deliberately naive model: replay the whole history sorted by event time.

Conservation: on_hand = last count as of T + deltas after T (all deltas when never counted), whatever the
arrival order, duplicates or late arrivals. Idempotence: re-sending every event changes nothing. Reservations:
the same decisions as a sequential model that grants a request only when enough is available.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.domain import Kind, Movement, SkuStock, Status
from streams.domain.orders import ORDER_EVENT_PREFIX
from streams.wire.records import head_to_record
from tests.unit.domain.helpers import NETWORK, NOW, remembered, same_state

LOCATIONS = ["store-a", "store-b", "wh-1"]


@st.composite
def fact_histories(draw: st.DrawFn) -> list[Movement]:
    """Random supply and sales facts at three locations, with event times that collide and interleave."""
    count = draw(st.integers(1, 60))
    movements: list[Movement] = []
    for i in range(count):
        kind = draw(st.sampled_from(["sale", "receipt", "return", "adjustment", "count", "count", "transfer"]))
        location = draw(st.sampled_from(LOCATIONS))
        at = draw(st.integers(1, 300))
        quantity = draw(st.integers(1, 20))
        event_id = f"e{i}"
        if kind == "transfer":
            other = draw(st.sampled_from([loc for loc in LOCATIONS if loc != location]))
            at_in = draw(st.integers(1, 300))
            movements.append(Movement(Kind.TRANSFER_OUT, f"{event_id}o", "wms", "SKU-1", location, quantity, at,
                                      other_location=other, transfer_id=f"t{i}"))
            if draw(st.booleans()):  # some transfers are still on the road
                movements.append(Movement(Kind.TRANSFER_IN, f"{event_id}i", "wms", "SKU-1", other, quantity,
                                          at_in, other_location=location, transfer_id=f"t{i}"))
        elif kind == "adjustment":
            movements.append(Movement(Kind.ADJUSTMENT, event_id, "wms", "SKU-1", location,
                                      draw(st.sampled_from([-1, 1])) * quantity, at, reason="correction"))
        elif kind == "return":
            movements.append(Movement(Kind.RETURN, event_id, "wms", "SKU-1", location, quantity, at,
                                      resellable=draw(st.booleans())))
        else:
            movements.append(Movement(Kind(kind), event_id, "wms", "SKU-1", location,
                                      draw(st.integers(0, 50)) if kind == "count" else quantity, at))
    return movements


@st.composite
def arrivals(draw: st.DrawFn) -> tuple[list[Movement], list[Movement]]:
    """A history and one arrival order of it: shuffled, with some events delivered again."""
    history = draw(fact_histories())
    order = draw(st.permutations(history))
    resent = draw(st.lists(st.sampled_from(history), max_size=10))
    delivered = list(order)
    for m in resent:
        delivered.insert(draw(st.integers(0, len(delivered))), m)
    return history, delivered


@dataclass(frozen=True)
class Figures:
    on_hand: int
    in_transit: int


def naive_model(history: list[Movement]) -> dict[str, Figures]:
    """Replay sorted by event time: the last count (ties: larger event key) plus every delta after it."""
    unique = {m.key: m for m in history}.values()
    result = {}
    for location in LOCATIONS:
        here = sorted((m for m in unique if m.location == location), key=lambda m: (m.occurred_at, m.key))
        counts = [m for m in here if m.kind is Kind.COUNT]
        last = counts[-1] if counts else None
        on_hand = last.quantity if last else 0
        on_hand += sum(m.delta for m in here if m.kind is not Kind.COUNT
                       and (last is None or m.occurred_at > last.occurred_at))
        transit = 0
        for tid in {m.transfer_id for m in unique if m.transfer_id and m.other_location == location
                    and m.kind is Kind.TRANSFER_OUT}:
            shipped = sum(m.quantity for m in unique if m.transfer_id == tid and m.kind is Kind.TRANSFER_OUT)
            received = sum(m.quantity for m in unique if m.transfer_id == tid and m.kind is Kind.TRANSFER_IN)
            transit += max(0, shipped - received)
        result[location] = Figures(on_hand, transit)
    return result


def figures(stock: SkuStock) -> dict[str, Figures]:
    return {loc: Figures(stock.position(loc).on_hand, stock.position(loc).in_transit) for loc in LOCATIONS}


def replay(movements: list[Movement]) -> SkuStock:
    stock = SkuStock("SKU-1")
    for m in movements:
        stock.apply(m, NETWORK, NOW)
    return stock


@settings(max_examples=300, deadline=None)
@given(arrivals())
def test_conservation_whatever_the_arrival_order(case: tuple[list[Movement], list[Movement]]) -> None:
    history, delivered = case
    assert figures(replay(delivered)) == naive_model(history)


@settings(max_examples=200, deadline=None)
@given(fact_histories(), st.randoms(use_true_random=False))
def test_order_independence(history: list[Movement], rnd: object) -> None:
    shuffled = list(history)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    one, other = replay(history), replay(shuffled)
    assert figures(one) == figures(other)
    assert remembered(one).keys() == remembered(other).keys()


@settings(max_examples=200, deadline=None)
@given(arrivals())
def test_resending_everything_changes_nothing(case: tuple[list[Movement], list[Movement]]) -> None:
    _, delivered = case
    stock = replay(delivered)
    before = copy.deepcopy(stock)
    outcomes = stock.apply_all(delivered, NETWORK, NOW)
    assert all(o.status is Status.DUPLICATE and o.changes == () for o in outcomes)
    assert stock == before and stock.records.data == before.records.data  # type: ignore[attr-defined]


@settings(max_examples=200, deadline=None)
@given(arrivals())
def test_batches_equal_one_by_one(case: tuple[list[Movement], list[Movement]]) -> None:
    _, delivered = case
    batched = SkuStock("SKU-1")
    for start in range(0, len(delivered), 7):
        head = head_to_record(batched)
        batched.apply_all(delivered[start:start + 7], NETWORK, NOW)
        assert batched.head_changed or head_to_record(batched) == head  # a head said unchanged is not written
    assert same_state(batched, replay(delivered))


# --- reservations: decisions equal a sequential model that never grants more than is available ---------------
@st.composite
def reservation_workloads(draw: st.DrawFn) -> list[tuple[str, ...]]:
    steps: list[tuple[str, ...]] = []
    for i in range(draw(st.integers(1, 80))):
        op = draw(st.sampled_from(["receipt", "sale", "reserve", "reserve", "reserve", "release", "fulfil",
                                   "expire", "resend", "confirm"]))
        steps.append((op, str(i), str(draw(st.integers(1, 6))), draw(st.sampled_from(["web", "pos-a"])),
                      str(draw(st.integers(0, max(0, i - 1))))))
    return steps


@settings(max_examples=300, deadline=None)
@given(reservation_workloads())
def test_reservations_match_a_sequential_model(steps: list[tuple[str, ...]]) -> None:
    stock = SkuStock("SKU-1")
    on_hand = 0  # the model: units at store-a,
    held: dict[str, tuple[int, int]] = {}  # and open reservations (key -> (units, expires))
    ended: dict[str, str] = {}  # how granted holds ended
    sent: list[Movement] = []
    granted: list[Movement] = []  # the holds an order's coordinator may confirm
    clock = 1_000
    for op, i, qty_text, channel, earlier in steps:
        clock += 10
        qty = int(qty_text)
        head = head_to_record(stock)
        if op in ("receipt", "sale"):
            m = Movement(Kind(op), f"f{i}", "pos-a", "SKU-1", "store-a", qty, clock)
            on_hand += qty if op == "receipt" else -qty
            stock.apply(m, NETWORK, clock)
        elif op == "reserve":
            expires = clock + 25 * qty
            m = Movement(Kind.RESERVATION_PLACED, f"p{i}", channel, "SKU-1", "store-a", qty, clock,
                         reservation_id=f"r{i}", expires_at=expires)
            outcome = stock.apply(m, NETWORK, clock)
            grant = qty <= max(0, on_hand - sum(units for units, _ in held.values()))
            assert outcome.decision is not None and outcome.decision.accepted == grant
            if grant:
                held[m.reservation_key] = (qty, expires)
                granted.append(m)
            sent.append(m)
        elif op in ("release", "fulfil") and sent:
            target = sent[int(earlier) % len(sent)]
            kind = Kind.RESERVATION_RELEASED if op == "release" else Kind.RESERVATION_FULFILLED
            outcome = stock.apply(Movement(kind, f"c{i}", target.channel, "SKU-1", None, 0, clock,
                                           reservation_id=target.reservation_id), NETWORK, clock)
            units = held.pop(target.reservation_key, None)
            if units is not None:
                ended[target.reservation_key] = "released" if op == "release" else "fulfilled"
            assert (outcome.anomalies == ("unknown_reservation",)) == (units is None)
            if units is not None and op == "fulfil":
                on_hand -= units[0]
        elif op == "expire":
            stock.apply_all(stock.due_expiries(clock), NETWORK, clock)
            ended.update({key: "expired" for key, (_, exp) in held.items() if exp <= clock})
            held = {key: (units, exp) for key, (units, exp) in held.items() if exp > clock}
        elif op == "resend" and sent:
            again = sent[int(earlier) % len(sent)]
            outcome = stock.apply(again, NETWORK, clock)
            assert outcome.status is Status.DUPLICATE and outcome.decision is not None
            decision, key = outcome.decision, again.reservation_key
            # The answer that is true now, and never an acceptance without a hold.
            if key in held:
                assert decision.accepted and sum(units for _, units in decision.parts) == held[key][0]
            else:
                assert not decision.accepted and not decision.parts
                assert decision.reason == ended.get(key, decision.reason)
        elif op == "confirm" and granted:
            # An order's confirmation of an earlier hold: extended while held; after a release or fulfilment,
            # nothing; after it lapsed, held afresh where there is stock.
            target = granted[int(earlier) % len(granted)]
            key, expires = target.reservation_key, clock + 1_000
            confirm = Movement(Kind.RESERVATION_PLACED, f"{ORDER_EVENT_PREFIX}{target.reservation_id}:confirm",
                               target.channel, "SKU-1", None, target.quantity, clock,
                               reservation_id=target.reservation_id, expires_at=expires,
                               parts=(("store-a", target.quantity),))
            outcome = stock.apply(confirm, NETWORK, clock)
            if key in held:
                held[key] = (held[key][0], max(held[key][1], expires))
                assert not stock.head_changed  # only the hold's record changed
                assert head_to_record(stock) == head
            elif ended.get(key, "expired") == "expired" and \
                    target.quantity <= on_hand - sum(units for units, _ in held.values()):
                held[key] = (target.quantity, expires)
                ended.pop(key, None)
            else:
                assert outcome.status is not Status.APPLIED or not outcome.changes
        if not stock.head_changed:
            assert head_to_record(stock) == head
        position = stock.position("store-a")
        assert position.on_hand == on_hand
        assert position.reserved == sum(units for units, _ in held.values())
        assert {r.key for r in stock.open_reservations()} == held.keys()
