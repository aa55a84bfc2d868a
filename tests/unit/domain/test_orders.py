"""An order's coordinator against simulated owners: whatever the order of delivery, repeats, stock taken by other
shoppers between figures and holds, and a deadline that may pass, an order ends all or nothing: accepted with every
line's hold confirmed where the plan says and nothing else held, or refused with nothing held at all."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.domain.order_sourcing import LineStock, OrderLine
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
    Tick,
)
from tests.unit.domain.helpers import NETWORK

LOCATIONS = ["store-a", "store-b", "wh-1"]  # the channel web sells from all three


@dataclass
class Owner:
    """A SKU's owner as the coordinator sees it through messages: it answers figures from what is available now,
    places a hold only where every part is available, releases and confirms by hold id."""

    available: dict[str, int]
    holds: dict[str, tuple[tuple[str, int], ...]] = field(default_factory=dict)
    confirmed: set[str] = field(default_factory=set)

    def figures(self) -> LineStock:
        return LineStock(dict(self.available), sum(self.available.values()))

    def place(self, command: PlaceHold) -> HoldAnswer:
        if command.hold_id in self.holds:
            return HoldAnswer(command.line.line_id, command.hold_id, True)
        if any(self.available[loc] < n for loc, n in command.parts):
            return HoldAnswer(command.line.line_id, command.hold_id, False, "insufficient_stock")
        for loc, n in command.parts:
            self.available[loc] -= n
        self.holds[command.hold_id] = command.parts
        return HoldAnswer(command.line.line_id, command.hold_id, True)

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
    request = OrderRequest("o-1", "web", lines, 52.5, 13.4, max_split=draw(st.none() | st.integers(1, 3)),
                           expires_at=10_000_000)
    return request, owners, draw(st.integers(0, 2**32))


def run(request: OrderRequest, owners: dict[str, Owner], seed: int) -> tuple[Order, list[Command]]:
    """Deliver every message in a random order, some twice; other shoppers take stock now and then; the clock
    moves on, past the deadline in some runs."""
    rng = random.Random(seed)
    now = 1_000
    order, sent = Order.start(request, now)
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
        wanted = {(line.sku, order.hold_of(line.line_id)): decision.plan.allocations[line.line_id]
                  for line in request.lines}
        assert held == wanted  # every line held where the plan says, nothing else of the order
        assert confirmed == set(wanted)
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
