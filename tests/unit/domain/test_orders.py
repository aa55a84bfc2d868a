"""An order's coordinator against simulated owners: whatever the order of delivery, repeats, stock taken by other
shoppers between figures and holds, and a deadline that may pass, an order ends all or nothing: accepted with every
line's hold confirmed where the plan says and nothing else held, or refused with nothing held at all."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.domain.order_sourcing import LineStock, OrderLine, plan_order
from streams.domain.orders import (
    DECISION_MS,
    AskFigures,
    Command,
    Decide,
    Event,
    Figures,
    HoldAnswer,
    Order,
    OrderRequest,
    PlaceHold,
    ReleaseHold,
    SourceHold,
    Tick,
)
from tests.unit.domain.helpers import NETWORK

LOCATIONS = ["store-a", "store-b", "wh-1"]  # the channel web sells from all three
requests: dict[str, OrderRequest] = {}  # what each order asked for, as its owners' steps carry it


@dataclass
class Owner:
    """A SKU's owner as the coordinator sees it through messages: it answers figures from what is available now,
    places a hold only where every part is available (a hold placed elsewhere moves whole, or stays), sources a
    line where it would go alone (answering with its figures), releases and confirms by hold id."""

    available: dict[str, int]
    holds: dict[str, tuple[tuple[str, int], ...]] = field(default_factory=dict)
    confirmed: set[str] = field(default_factory=set)
    sourced: set[str] = field(default_factory=set)  # holds placed for good in one round (released on timeout)
    answered: dict[tuple[str, str], HoldAnswer] = field(default_factory=dict)  # (hold, step) -> the first answer

    def once(self, hold: str, step: str, answer: Callable[[], HoldAnswer]) -> HoldAnswer:
        """A step seen before gets its first answer again (the real owner remembers every event id): a hold
        refused stays refused; one placed and since released is answered as no longer held."""
        first = self.answered.get((hold, step))
        if first is None:
            first = self.answered[(hold, step)] = answer()
            return first
        if first.held and hold not in self.holds:
            return HoldAnswer(first.line_id, hold, False, "released")
        return first

    def figures(self) -> LineStock:
        return LineStock(dict(self.available), sum(self.available.values()))

    def place(self, command: PlaceHold) -> HoldAnswer:
        return self.once(command.hold_id, "place", lambda: self._place(command))

    def _place(self, command: PlaceHold) -> HoldAnswer:
        line, parts = command.line.line_id, tuple(sorted(command.parts))
        own = dict(self.holds.get(command.hold_id, ()))
        if own == dict(parts):
            return HoldAnswer(line, command.hold_id, True, None, parts)
        if any(self.available[loc] + own.get(loc, 0) < n for loc, n in parts):
            return HoldAnswer(line, command.hold_id, False, "insufficient_stock")
        for loc, n in own.items():
            self.available[loc] += n
        for loc, n in parts:
            self.available[loc] -= n
        self.holds[command.hold_id] = parts
        return HoldAnswer(line, command.hold_id, True, None, parts)

    def source(self, command: SourceHold, request: OrderRequest) -> HoldAnswer:
        return self.once(command.hold_id, "source", lambda: self._source(command, request))

    def _source(self, command: SourceHold, request: OrderRequest) -> HoldAnswer:
        """A line planned here alone, on these figures, as the coordinator would, and held at once: for good (a
        one-round order's, until the order expires) or tentatively (an order held first)."""
        line = command.line
        if command.hold_id in self.holds:
            return HoldAnswer(line.line_id, command.hold_id, True, None, self.holds[command.hold_id], self.figures())
        plan = plan_order((line,), {line.line_id: self.figures()}, NETWORK, request.channel, command.latitude,
                          command.longitude, command.mode)
        if not plan.accepted:
            return HoldAnswer(line.line_id, command.hold_id, False, plan.reason, (), self.figures())
        parts = tuple(sorted(plan.allocations[line.line_id]))
        for loc, n in parts:
            self.available[loc] -= n
        self.holds[command.hold_id] = parts
        if command.expires_at == request.expires_at:
            self.sourced.add(command.hold_id)
        return HoldAnswer(line.line_id, command.hold_id, True, None, parts, self.figures())

    def release(self, hold: str) -> None:
        parts = self.holds.pop(hold, None) if hold not in self.confirmed else None
        for loc, n in parts or ():
            self.available[loc] += n

    def confirm(self, hold: str) -> None:
        assert hold in self.holds, f"confirmed a hold that is not placed: {hold}"
        self.confirmed.add(hold)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[OrderRequest, dict[str, Owner], int]:
    count = draw(st.integers(1, 4))
    lines = tuple(OrderLine(f"l{i}", f"SKU-{i}", draw(st.integers(1, 4))) for i in range(count))
    owners = {line.sku: Owner({loc: draw(st.integers(0, 4)) for loc in LOCATIONS}) for line in lines}
    # To a delivery point (several lines: held first, then planned) or not (figures first, then held).
    lat, lon = (52.5, 13.4) if draw(st.booleans()) else (None, None)
    request = OrderRequest("o-1", "web", lines, lat, lon, max_split=draw(st.none() | st.integers(1, 3)),
                           partial=draw(st.booleans()), expires_at=10_000_000)
    return request, owners, draw(st.integers(0, 2**32))


def run(request: OrderRequest, owners: dict[str, Owner], seed: int) -> tuple[Order, list[Command]]:
    """Deliver every message in a random order, some twice; other shoppers take stock now and then; the clock
    moves on, past the deadline in some runs."""
    rng = random.Random(seed)
    now = 1_000
    order, sent = Order.start(request, now)
    requests[request.order_id] = request
    log = list(sent)
    to_coordinator: list[Event] = []
    to_owners: list[Command] = [c for c in sent if not isinstance(c, Decide)]
    late = rng.random() < 0.3
    while to_owners or to_coordinator:
        now += rng.randint(0, 1_500 if late else 200)
        if rng.random() < 0.15:  # another shopper takes a unit somewhere
            owner = rng.choice(list(owners.values()))
            loc = rng.choice(LOCATIONS)
            owner.available[loc] = max(0, owner.available[loc] - 1)
        if to_owners and (not to_coordinator or rng.random() < 0.5):
            command = to_owners.pop(rng.randrange(len(to_owners)))
            if rng.random() < 0.2:
                to_owners.append(command)  # delivered again later
            deliver(command, owners, to_coordinator)
        else:
            event = to_coordinator.pop(rng.randrange(len(to_coordinator)))
            if rng.random() < 0.2:
                to_coordinator.append(event)
            out = order.handle(event, NETWORK, now)
            log += out
            to_owners += [c for c in out if not isinstance(c, Decide)]
        if not to_owners and not to_coordinator and order.decision is None:
            to_coordinator.append(Tick(now + DECISION_MS))  # nothing more will come: the deadline passes
    return order, log


def deliver(command: Command, owners: dict[str, Owner], to_coordinator: list[Event]) -> None:
    """A command reaches its line's owner, which may answer."""
    if isinstance(command, Decide):
        return
    owner = owners[command.line.sku]
    if isinstance(command, AskFigures):
        to_coordinator.append(Figures(command.line.line_id, command.attempt, owner.figures()))
    elif isinstance(command, PlaceHold):
        to_coordinator.append(owner.place(command))
    elif isinstance(command, SourceHold):
        to_coordinator.append(owner.source(command, requests[command.order_id]))
    elif isinstance(command, ReleaseHold):
        owner.release(command.hold_id)
    else:
        owner.confirm(command.hold_id)


@settings(max_examples=400, deadline=None)
@given(scenarios())
def test_an_order_ends_all_or_nothing(scenario: tuple[OrderRequest, dict[str, Owner], int]) -> None:
    request, owners, seed = scenario
    order, log = run(request, owners, seed)
    decisions = [c.decision for c in log if isinstance(c, Decide)]
    assert decisions == [order.decision]  # decided once
    decision = order.decision
    assert decision is not None
    held = {(sku, hold): parts for sku, owner in owners.items() for hold, parts in owner.holds.items()}
    confirmed = {(sku, hold) for sku, owner in owners.items() for hold in owner.confirmed}
    if decision.accepted:
        assert decision.plan is not None
        planned = decision.plan.allocations
        wanted = {(line.sku, order.hold_of(line.line_id)): tuple(sorted(planned[line.line_id]))
                  for line in request.lines if line.line_id in planned}  # a partial order's left out lines: none
        held = {key: tuple(sorted(parts)) for key, parts in held.items()}
        assert held == wanted  # every line held where the plan says, nothing else of the order
        sourced = {(sku, hold) for sku, owner in owners.items() for hold in owner.sourced}
        assert confirmed | sourced == set(wanted)
        assert bool(sourced) == request.one_round  # one round: held for good at once, nothing to confirm
    else:
        assert held == {} and confirmed == set()
        assert decision.reason in {"insufficient_stock", "max_split", "stock_moved", "timeout"}


@settings(max_examples=200, deadline=None)
@given(scenarios())
def test_a_repeated_request_gets_the_same_decision_and_another_with_the_same_id_a_conflict(
        scenario: tuple[OrderRequest, dict[str, Owner], int]) -> None:
    request, owners, seed = scenario
    order, _ = run(request, owners, seed)
    assert order.again(request, 99_999) == [Decide(order.decision)]  # type: ignore[arg-type]
    other = OrderRequest(request.order_id, "web", request.lines[:1] + (OrderLine("x", "SKU-X", 1),), 52.5, 13.4)
    [conflict] = order.again(other, 99_999)
    assert isinstance(conflict, Decide) and (conflict.decision.accepted, conflict.decision.reason) == (False,
                                                                                                        "conflict")


def test_a_request_that_cannot_be_planned_is_refused_at_once_naming_the_line() -> None:
    lines = (OrderLine("1", "SKU-1", 1), OrderLine("2", "SKU-1", 2))
    order, commands = Order.start(OrderRequest("o-2", "web", lines, 52.5, 13.4), 1_000)
    assert commands == [Decide(order.decision)]  # type: ignore[arg-type]
    assert order.decision is not None and (order.decision.reason, order.decision.line) == ("duplicate_line", "2")
    zero = Order.start(OrderRequest("o-3", "web", (OrderLine("1", "SKU-1", 0),), 52.5, 13.4), 1_000)[0]
    assert zero.decision is not None and zero.decision.reason == "invalid_quantity"


@settings(max_examples=300, deadline=None)
@given(units=st.lists(st.integers(0, 6), min_size=3, max_size=3), held=st.lists(st.integers(0, 3), min_size=3,
                                                                                 max_size=3),
       quantity=st.integers(1, 12), lat=st.floats(47.0, 55.0), lon=st.floats(6.0, 15.0),
       mode=st.sampled_from(["ship", "pickup"]))
def test_one_round_holds_a_line_where_the_two_round_plan_would(units: list[int], held: list[int], quantity: int,
                                                                lat: float, lon: float, mode: str) -> None:
    """The owner of a one-round order's line plans it on its own state exactly as the coordinator would plan it
    on the figures it asks that owner for: the same locations and units, or the same refusal."""
    from streams.domain import Kind, SkuStock
    from streams.domain.ats import line_figures
    from streams.domain.orders import SourcedLine, hold_movement
    from tests.unit.domain.helpers import NOW, mv

    stock = SkuStock("SKU-1")
    for location, n, other in zip(LOCATIONS, units, held, strict=True):
        if n:
            stock.apply(mv(Kind.RECEIPT, location, n, at=NOW - 5_000), NETWORK, NOW)
        if other:  # another shopper's hold takes some of it
            stock.apply(mv(Kind.RESERVATION_PLACED, location, other, at=NOW - 4_000, channel="web",
                           reservation_id=f"other-{location}", expires_at=NOW + 60_000), NETWORK, NOW)
    line = OrderLine("l1", "SKU-1", quantity)
    request = OrderRequest("o-9", "web", (line,), lat, lon, mode, expires_at=NOW + 900_000)  # type: ignore[arg-type]
    assert request.one_round
    planned = plan_order((line,), {"l1": line_figures(stock, NETWORK.channels["web"])}, NETWORK, "web", lat, lon,
                         mode)  # type: ignore[arg-type]
    sourced = SourcedLine(quantity, lat, lon, mode)
    outcome = stock.apply(hold_movement("source", "web", "SKU-1", "o-9/l1/1.x", (), request.expires_at, NOW,
                                        sourced), NETWORK, NOW)
    decision = outcome.decision
    assert decision is not None
    if planned.accepted:
        assert decision.accepted and decision.parts == tuple(sorted(planned.allocations["l1"]))
    else:
        assert not decision.accepted and decision.reason == planned.reason


def _answer(order: Order, owners: dict[str, Owner], commands: list[Command], now: int) -> list[Command]:
    """Deliver `commands` to the owners, in order, and each answer to the coordinator; what it sent next."""
    answers: list[Event] = []
    for command in commands:
        deliver(command, owners, answers)
    return [out for event in answers for out in order.handle(event, NETWORK, now)]


def test_a_cart_whose_lines_go_where_they_would_alone_is_decided_in_two_rounds() -> None:
    """Held first (each line where it would go alone, with its figures), the cart's plan keeps every hold where
    it is: the next round confirms them, with no figures round and no hold placed twice."""
    lines = (OrderLine("l1", "SKU-1", 2), OrderLine("l2", "SKU-2", 1), OrderLine("l3", "SKU-3", 1))
    owners = {line.sku: Owner({"store-a": 0, "store-b": 0, "wh-1": 5}) for line in lines}
    request = OrderRequest("o-7", "web", lines, 50.0, 8.7, expires_at=10_000_000)
    requests[request.order_id] = request
    order, first = Order.start(request, 1_000)
    assert request.holds_first and {type(c) for c in first} == {SourceHold}
    second = _answer(order, owners, first, 1_100)
    assert [type(c).__name__ for c in second] == ["ConfirmHold"] * 3 + ["Decide"]
    assert order.decision is not None and order.decision.accepted and order.decision.plan is not None
    assert len(order.decision.plan.parcels) == 1
    assert {h: p for o in owners.values() for h, p in o.holds.items()} == {
        order.hold_of(line.line_id): (("wh-1", line.quantity),) for line in lines}


def test_a_line_the_cart_is_planned_elsewhere_for_is_moved_there() -> None:
    """Alone, SKU-2 would leave from store-a (nearest); with SKU-1 only at wh-1, one parcel from wh-1 is fewer
    parcels: SKU-2's hold is moved to wh-1 in one step, then both are confirmed, and store-a holds nothing."""
    lines = (OrderLine("l1", "SKU-1", 1), OrderLine("l2", "SKU-2", 1))
    owners = {"SKU-1": Owner({"store-a": 0, "store-b": 0, "wh-1": 3}),
              "SKU-2": Owner({"store-a": 3, "store-b": 0, "wh-1": 3})}
    request = OrderRequest("o-8", "web", lines, 52.5, 13.4, expires_at=10_000_000)
    requests[request.order_id] = request
    order, first = Order.start(request, 1_000)
    assert owners["SKU-2"].holds == {} and _answer(order, owners, first[1:], 1_050) == []
    assert owners["SKU-2"].holds == {order.hold_of("l2"): (("store-a", 1),)}
    moves = _answer(order, owners, first[:1], 1_100)
    assert moves == [PlaceHold("o-8", lines[1], order.hold_of("l2"), (("wh-1", 1),), order.deadline + 10_000)]
    third = _answer(order, owners, moves, 1_200)
    assert [type(c).__name__ for c in third] == ["ConfirmHold", "ConfirmHold", "Decide"]
    assert owners["SKU-2"].holds == {order.hold_of("l2"): (("wh-1", 1),)}
    assert owners["SKU-2"].available == {"store-a": 3, "store-b": 0, "wh-1": 2}


def test_a_coordinator_stored_between_its_first_rounds_answers_plans_as_if_it_had_never_stopped() -> None:
    """Its state holds where each answered line is held and its figures: restored from the stored record (as
    after a restart) between two answers, it moves the same line as the one that never stopped."""
    from streams.wire.codec import default_codec
    from streams.wire.order_records import order_from_state, order_state_record
    from streams.wire.schemas import Schema

    codec = default_codec()
    lines = (OrderLine("l1", "SKU-1", 1), OrderLine("l2", "SKU-2", 1))
    results = []
    for restart in (False, True):
        owners = {"SKU-1": Owner({"store-a": 0, "store-b": 0, "wh-1": 3}),
                  "SKU-2": Owner({"store-a": 3, "store-b": 0, "wh-1": 3})}
        request = OrderRequest(f"o-s{restart}", "web", lines, 52.5, 13.4, expires_at=10_000_000)
        requests[request.order_id] = request
        order, first = Order.start(request, 1_000)
        assert _answer(order, owners, first[1:], 1_050) == []
        if restart:
            order = order_from_state(codec.decode_as(codec.encode(Schema.ORDER_STATE, order_state_record(order)),
                                                     Schema.ORDER_STATE)[1])
            assert order.sourced == {"l2": (("store-a", 1),)}
        results.append([(type(c).__name__, getattr(c, "parts", None)) for c in _answer(order, owners, first[:1],
                                                                                       1_100)])
    assert results[0] == results[1] == [("PlaceHold", (("wh-1", 1),))]


def test_a_confirmation_extends_its_hold_once_and_never_brings_back_a_fulfilled_one() -> None:
    """A confirmation only extends the tentative hold (no event remembered, the SKU's head unchanged); again, it
    changes nothing. The channel may fulfil an accepted order before the owner reads its confirmation (they come
    on different topics): the late confirmation then holds nothing. A hold that lapsed is held afresh."""
    from streams.domain import Kind, SkuStock, Status
    from streams.domain.orders import hold_movement
    from tests.unit.domain.helpers import NOW, mv, remembered

    stock = SkuStock("SKU-1")
    stock.apply(mv(Kind.RECEIPT, "wh-1", 8), NETWORK, NOW)
    parts = (("wh-1", 2),)

    def step(kind: str, hold: str, expires: int, at: int = NOW) -> Status:
        movement = hold_movement(kind, "web", "SKU-1", hold, parts, expires, at)  # type: ignore[arg-type]
        return stock.apply(movement, NETWORK, NOW).status

    assert step("place", "o-1/l1/1.x", NOW + 30_000) is Status.APPLIED
    events, version = set(remembered(stock)), stock.version
    assert step("confirm", "o-1/l1/1.x", NOW + 900_000) is Status.APPLIED
    assert not stock.head_changed and set(remembered(stock)) == events and stock.version == version
    assert step("confirm", "o-1/l1/1.x", NOW + 900_000) is Status.DUPLICATE
    assert stock.open_reservations()[0].expires_at == NOW + 900_000

    assert step("place", "o-2/l1/1.x", NOW + 30_000) is Status.APPLIED
    stock.apply(mv(Kind.RESERVATION_FULFILLED, None, 0, channel="web", reservation_id="o-2/l1/1.x"), NETWORK, NOW)
    assert step("confirm", "o-2/l1/1.x", NOW + 900_000) is Status.IGNORED
    assert [r.reservation_id for r in stock.open_reservations()] == ["o-1/l1/1.x"]
    assert stock.position("wh-1").reserved == 2 and stock.position("wh-1").on_hand == 6

    assert step("place", "o-3/l1/1.x", NOW + 30_000) is Status.APPLIED
    stock.apply_all(stock.due_expiries(NOW + 30_000), NETWORK, NOW + 30_000)
    assert stock.position("wh-1").reserved == 2
    assert step("confirm", "o-3/l1/1.x", NOW + 900_000, at=NOW + 1) is Status.APPLIED  # lapsed: held afresh
    assert stock.position("wh-1").reserved == 4
