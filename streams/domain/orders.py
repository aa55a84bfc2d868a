"""An order's coordinator: all of a cart's lines held, or none, across the SKUs' owners.

The lines of one order belong to SKUs that other workers own. The coordinator owns the order (keyed by its id) and
talks to each line's owner in idempotent messages; it never waits on a lock:

    requested -> ask every line's owner for its figures (available per location, what the channel may sell)
              -> all figures in: plan the whole order (streams.domain.order_sourcing); refused -> decided
              -> place a tentative hold per line where the plan says (lapsing shortly after the order's deadline)
              -> every hold placed: confirm them all (the order's expiry) -> accepted
                 a hold refused (the stock moved since the figures): release the others, ask again (a bounded
                 number of attempts) -> refused when they run out
    the deadline passes first: release every hold asked for -> refused (timeout)

An order of one line to a delivery point (no store named, no split limit; most orders) takes one round instead:
its owner plans the line as the coordinator would, on its own figures, and holds it there until the order's
expiry in the same step (a refusal is final: it was planned on the stock as it is); the coordinator decides on its
answer. Its hold is released like any other when the deadline passes first.

An order of several lines to a delivery point (no store named) holds first and plans after, saving a round:

    requested -> every line's owner plans its line alone and holds it there tentatively, answering with its
                 figures (those of the units the hold took included)
              -> all answers in: plan the whole order on those figures; refused -> release every hold -> decided
              -> a line the plan puts where it is held stays; any other is moved there in one step (or held anew)
              -> every line where the plan says: confirm them all -> accepted
                 a move refused: release every hold, start again (a bounded number of attempts)

Most lines of a cart go where they would go alone (the nearest location that has them all): those orders are
decided in two rounds, not three.

Every step is a state change plus commands, so a coordinator that crashes resumes from its state; every command
carries ids derived from the order, the line and the attempt, so a repeated message changes nothing; a hold that
nobody confirms lapses by itself. A late answer is never trusted: a hold placed for an attempt that is over, or
for an order already decided, is released at once.

This module is pure: `Order.handle(event)` returns the commands to send; the worker sends them in the same Kafka
transaction that writes the order's new state.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

from streams.domain.errors import InvalidMovement
from streams.domain.movements import MAX_QUANTITY, SKU_PATTERN, WORKER_EVENT_PREFIX, Kind, Movement
from streams.domain.network import Network
from streams.domain.order_sourcing import MAX_LINES, LineStock, OrderLine, OrderPlan, plan_order

# An order id is a channel's own (a reservation id of every line's hold is made from it, the line id and the
# attempt: "<order>/<line>/<attempt>"); a line id names a line within its order.
ORDER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}$")
LINE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$")
MAX_ATTEMPTS = 3  # plans tried when stock moves between the figures and the holds
DECISION_MS = 20_000  # by default, an order undecided this long after its request is refused (timeout)
# A tentative hold lapses by itself this long after its order's deadline: a confirmation, sent before the deadline,
# reaches the owner before its hold can lapse unless the owner is this far behind.
HOLD_MARGIN_MS = 10_000


class Phase(StrEnum):
    SOURCING = "sourcing"  # waiting for the lines' figures
    HOLDING = "holding"  # waiting for the tentative holds
    ACCEPTED = "accepted"
    REFUSED = "refused"


@dataclass(frozen=True, slots=True)
class OrderRequest:
    order_id: str
    channel: str
    lines: tuple[OrderLine, ...]
    latitude: float | None = None
    longitude: float | None = None
    mode: Literal["ship", "pickup"] = "ship"
    max_split: int | None = None
    partial: bool = False
    expires_at: int = 0  # when the confirmed holds lapse unless fulfilled
    pickup_at: str | None = None  # a pickup order: the store the customer collects from (None: the cheapest)

    @property
    def holds_first(self) -> bool:
        """Whether every line is held at once where it would go alone and the order planned on the figures that
        come back with the holds (a cart to a delivery point, no store named)."""
        return len(self.lines) > 1 and self.latitude is not None and self.pickup_at is None

    @property
    def one_round(self) -> bool:
        """Whether the line's owner plans and holds it in one step: what plan_order makes of one line alone is the
        owner's to compute (the line's figures are its own) when no store is named and no split limited."""
        return len(self.lines) == 1 and self.latitude is not None and self.pickup_at is None \
            and self.max_split is None

    def fingerprint(self) -> str:
        """What makes a re-sent request the same order (its lines and how they are to be filled)."""
        text = repr((self.channel, sorted((line.line_id, line.sku, line.quantity) for line in self.lines),
                     _rounded(self.latitude), _rounded(self.longitude), self.mode, self.max_split, self.partial,
                     self.pickup_at))
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    def problem(self) -> tuple[str, str | None] | None:
        """What makes the request impossible to plan, as (reason, line) (None when it can be)."""
        if not self.lines:
            return "no_lines", None
        if len(self.lines) > MAX_LINES:
            return "too_many_lines", None
        if self.mode not in ("ship", "pickup") or (self.pickup_at is not None and self.mode != "pickup"):
            return "invalid_mode", None
        lat, lon = self.latitude, self.longitude
        if (lat is None) != (lon is None) or (
                lat is not None and lon is not None and not (-90 <= lat <= 90 and -180 <= lon <= 180)):
            return "invalid_delivery_point", None
        seen_lines, seen_skus = set(), set()
        for line in self.lines:
            if not LINE_ID.match(line.line_id):
                return "invalid_line_id", line.line_id[:32]
            if not line.sku and line.alias is not None:
                return "unknown_alias", line.line_id
            if not SKU_PATTERN.match(line.sku):
                return "unknown_sku", line.line_id
            if line.quantity <= 0 or line.quantity > MAX_QUANTITY:
                return "invalid_quantity", line.line_id
            if line.line_id in seen_lines or line.sku in seen_skus:
                return "duplicate_line", line.line_id
            seen_lines.add(line.line_id)
            seen_skus.add(line.sku)
        if self.max_split is not None and self.max_split < 1:
            return "invalid_max_split", None
        return None


@dataclass(frozen=True, slots=True)
class OrderDecision:
    order_id: str
    channel: str
    accepted: bool
    reason: str | None
    line: str | None
    plan: OrderPlan | None
    decided_at: int
    reservations: tuple[tuple[str, str], ...] = ()  # accepted: (line id, the reservation id of its hold)
    expires_at: int | None = None  # accepted: when the holds lapse unless fulfilled or released


# --- what the coordinator is told ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Figures:
    line_id: str
    attempt: int
    stock: LineStock


@dataclass(frozen=True, slots=True)
class HoldAnswer:
    line_id: str
    hold_id: str
    held: bool
    reason: str | None = None
    parts: tuple[tuple[str, int], ...] = ()  # held: where (the owner chose, for a sourced hold)
    figures: LineStock | None = None  # a sourced hold's: the line's figures once it was held (or refused)


@dataclass(frozen=True, slots=True)
class Tick:
    now: int


Event = Figures | HoldAnswer | Tick


# --- what it asks for --------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class AskFigures:
    order_id: str
    line: OrderLine
    attempt: int


@dataclass(frozen=True, slots=True)
class PlaceHold:
    order_id: str
    line: OrderLine
    hold_id: str
    parts: tuple[tuple[str, int], ...]  # (location, units)
    expires_at: int


@dataclass(frozen=True, slots=True)
class SourceHold:
    """A one-round order's line: planned by its owner as the order would be, and held until `expires_at`."""

    order_id: str
    line: OrderLine
    hold_id: str
    latitude: float
    longitude: float
    mode: Literal["ship", "pickup"]
    expires_at: int


@dataclass(frozen=True, slots=True)
class ConfirmHold:
    order_id: str
    line: OrderLine
    hold_id: str
    parts: tuple[tuple[str, int], ...]  # as placed: the owner extends the hold only if these match it
    expires_at: int


@dataclass(frozen=True, slots=True)
class ReleaseHold:
    order_id: str
    line: OrderLine
    hold_id: str


@dataclass(frozen=True, slots=True)
class Decide:
    decision: OrderDecision


Command = AskFigures | PlaceHold | SourceHold | ConfirmHold | ReleaseHold | Decide


def _rounded(degrees: float | None) -> float | None:
    return None if degrees is None else round(degrees, 6)


def hold_id(order_id: str, line_id: str, attempt: int, requested_at: int) -> str:
    """"<order>/<line>/<attempt>.<when the order was requested, base 36>": the request time tells a hold of an
    order apart from one of an earlier order with the same id, forgotten since."""
    return f"{order_id}/{line_id}/{attempt}.{_base36(requested_at)}"


def _base36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if n == 0:
            return out


@dataclass
class Order:
    """One order's coordinator state (small: its request, the current attempt's figures and holds)."""

    request: OrderRequest
    requested_at: int
    deadline: int  # undecided then: refused (timeout), its holds released
    phase: Phase = Phase.SOURCING
    attempt: int = 1
    figures: dict[str, LineStock] = field(default_factory=dict)
    plan: OrderPlan | None = None
    holds: dict[str, bool | None] = field(default_factory=dict)  # line id -> its hold placed (None: no answer yet)
    decision: OrderDecision | None = None
    sourced: dict[str, tuple[tuple[str, int], ...]] = field(default_factory=dict)  # holds first: where each line is

    @classmethod
    def start(cls, request: OrderRequest, now: int, decision_ms: int = DECISION_MS) -> tuple[Order, list[Command]]:
        """A new order, to be decided within `decision_ms`: refused at once if it cannot be planned, else its first
        round sent (its lines' figures asked for, or its lines held first)."""
        order = cls(request, now, now + decision_ms)
        problem = request.problem() or (("expired", None) if request.expires_at <= now else None)
        if problem is not None:
            return order, order._decide(False, *problem, now)
        return order, order._first_round()

    @property
    def lines(self) -> dict[str, OrderLine]:
        return {line.line_id: line for line in self.request.lines}

    def again(self, request: OrderRequest, now: int) -> list[Command]:
        """The same order id requested again: the same order gets its decision (once decided), another is refused
        as a conflict (this order is left as it is)."""
        if request.fingerprint() != self.request.fingerprint():
            return [Decide(OrderDecision(request.order_id, request.channel, False, "conflict", None, None, now))]
        return [Decide(self.decision)] if self.decision is not None else []

    def handle(self, event: Event, network: Network, now: int) -> list[Command]:
        if self.decision is None and now >= self.deadline:
            # Past the deadline nothing is confirmed any more (a tentative hold may be about to lapse): refused,
            # and a hold this answer reports placed is released with the others.
            late = self._on_tick(now)
            return late + (self._on_hold(event, network, now) if isinstance(event, HoldAnswer) else [])
        if isinstance(event, Figures):
            return self._on_figures(event, network, now)
        if isinstance(event, HoldAnswer):
            return self._on_hold(event, network, now)
        return self._on_tick(event.now)

    def hold_of(self, line_id: str) -> str:
        """The id of the line's hold in the current attempt."""
        return hold_id(self.request.order_id, line_id, self.attempt, self.requested_at)

    # --- steps -----------------------------------------------------------------------------------------------
    def _first_round(self) -> list[Command]:
        r = self.request
        if not (r.one_round or r.holds_first):
            return self._ask_figures()
        assert r.latitude is not None and r.longitude is not None
        # One round: held for good at once. Holds first: tentatively, until the plan is known.
        expires = r.expires_at if r.one_round else self.deadline + HOLD_MARGIN_MS
        self.phase, self.holds = Phase.HOLDING, {line.line_id: None for line in r.lines}
        return [SourceHold(r.order_id, line, self.hold_of(line.line_id), r.latitude, r.longitude, r.mode, expires)
                for line in r.lines]

    def _ask_figures(self) -> list[Command]:
        return [AskFigures(self.request.order_id, line, self.attempt) for line in self.request.lines]

    def _on_figures(self, event: Figures, network: Network, now: int) -> list[Command]:
        if self.phase is not Phase.SOURCING or event.attempt != self.attempt or event.line_id not in self.lines:
            return []  # late, repeated or foreign: what it says is asked again if still needed
        self.figures[event.line_id] = event.stock
        if len(self.figures) < len(self.request.lines):
            return []
        r = self.request
        plan = plan_order(r.lines, self.figures, network, r.channel, r.latitude, r.longitude, r.mode, r.max_split,
                          r.partial, r.pickup_at)
        self.plan = plan
        if not plan.accepted:
            return self._decide(False, plan.reason, plan.line, now)
        self.phase, self.figures = Phase.HOLDING, {}  # planned: what they said is in the plan now
        expires = self.deadline + HOLD_MARGIN_MS
        commands: list[Command] = []
        for line_id, parts in plan.allocations.items():
            self.holds[line_id] = None
            commands.append(PlaceHold(r.order_id, self.lines[line_id], self.hold_of(line_id), parts, expires))
        return commands

    def _on_hold(self, event: HoldAnswer, network: Network, now: int) -> list[Command]:
        line = self.lines.get(event.line_id)
        if line is None:
            return []
        ours = event.line_id in self.holds and event.hold_id == self.hold_of(event.line_id)
        if not (ours and self.phase is Phase.HOLDING):
            # An answer for an attempt that is over, or for an order already decided: a hold placed then is
            # released, unless it is one this order confirmed.
            confirmed = ours and self.phase is Phase.ACCEPTED
            return [] if confirmed or not event.held else [ReleaseHold(self.request.order_id, line, event.hold_id)]
        if self.holds[event.line_id] is not None:
            return []  # answered already
        if self.request.holds_first:
            if self.plan is None:
                return self._on_sourced(line, event, network, now)
            if event.held and tuple(sorted(event.parts)) != tuple(sorted(self.plan.allocations[event.line_id])):
                return []  # the first round's answer again, not the answer to the move
        self.holds[event.line_id] = event.held
        if self.request.one_round:
            return self._sourced(line, event, network, now)
        if not event.held:
            return self._replan(line, event.reason, now)
        return self._confirm_when_held(now)

    def _confirm_when_held(self, now: int) -> list[Command]:
        if not all(self.holds.values()):
            return []
        expires = self.request.expires_at
        assert self.plan is not None
        allocations = self.plan.allocations
        confirms: list[Command] = [ConfirmHold(self.request.order_id, self.lines[line_id], self.hold_of(line_id),
                                               allocations[line_id], expires) for line_id in self.holds]
        return confirms + self._decide(True, None, None, now)

    def _sourced(self, line: OrderLine, event: HoldAnswer, network: Network, now: int) -> list[Command]:
        """A one-round order's answer: held (the plan is the hold's, its parcels and costs computed as the owner
        did) or refused, for the reason the owner's plan gave."""
        if not event.held:
            return self._decide(False, event.reason or "insufficient_stock", line.line_id, now)
        r = self.request
        plan = plan_order(r.lines, {line.line_id: LineStock(dict(event.parts), line.quantity)}, network, r.channel,
                          r.latitude, r.longitude, r.mode, r.max_split, r.partial, r.pickup_at)
        if not plan.accepted:  # the network changed between the owner's plan and this one: not the order it was
            return self._release_all() + self._decide(False, plan.reason, plan.line, now)
        self.plan = plan
        return self._decide(True, None, None, now)

    def _on_sourced(self, line: OrderLine, event: HoldAnswer, network: Network, now: int) -> list[Command]:
        """A holds-first answer: the line held where it would go alone (or refused), and its figures. With every
        answer in, the order is planned on the figures as they were before its own holds took their units."""
        self.holds[line.line_id] = event.held
        held = tuple(sorted(event.parts)) if event.held else ()
        self.sourced[line.line_id] = held
        figures = event.figures if event.figures is not None else LineStock(dict(held), line.quantity if held else 0)
        available = dict(figures.available)
        for location, units in held:
            available[location] = available.get(location, 0) + units
        self.figures[line.line_id] = LineStock(available, figures.sellable + (line.quantity if held else 0))
        if len(self.figures) < len(self.request.lines):
            return []
        r = self.request
        plan = plan_order(r.lines, self.figures, network, r.channel, r.latitude, r.longitude, r.mode, r.max_split,
                          r.partial, r.pickup_at)
        if not plan.accepted:
            return self._release_all() + self._decide(False, plan.reason, plan.line, now)
        self.plan, self.figures = plan, {}
        expires = self.deadline + HOLD_MARGIN_MS
        commands: list[Command] = [ReleaseHold(r.order_id, self.lines[line_id], self.hold_of(line_id))
                                   for line_id, placed in self.holds.items()
                                   if placed and line_id not in plan.allocations]  # left out (partial)
        self.holds = {}
        for line_id, parts in plan.allocations.items():
            in_place = tuple(sorted(parts)) == self.sourced.get(line_id)
            self.holds[line_id] = True if in_place else None
            if not in_place:  # moved at its owner in one step (held anew if it was refused)
                commands.append(PlaceHold(r.order_id, self.lines[line_id], self.hold_of(line_id), parts, expires))
        self.sourced = {}
        return commands + self._confirm_when_held(now)

    def _replan(self, line: OrderLine, reason: str | None, now: int) -> list[Command]:
        """A hold was refused: release the attempt's others; plan again from fresh figures, or give up."""
        if self.request.holds_first:
            # A refused move leaves the line held where it was: its hold is released with the others.
            self.holds[line.line_id] = None
        releases = self._release_all()
        if self.attempt >= MAX_ATTEMPTS:
            return releases + self._decide(False, "stock_moved" if reason == "insufficient_stock" else reason,
                                           line.line_id, now)
        self.attempt += 1
        self.phase, self.figures, self.plan, self.holds, self.sourced = Phase.SOURCING, {}, None, {}, {}
        return releases + self._first_round()

    def _on_tick(self, now: int) -> list[Command]:
        if self.decision is not None or now < self.deadline:
            return []
        return self._release_all() + self._decide(False, "timeout", None, now)

    def _release_all(self) -> list[Command]:
        """Release every hold of the current attempt not known to be refused (one not answered yet may still be
        placed: its release follows it to the same owner; and it lapses by itself)."""
        lines = self.lines
        return [ReleaseHold(self.request.order_id, lines[line_id], self.hold_of(line_id))
                for line_id, placed in self.holds.items() if placed is not False]

    def _decide(self, accepted: bool, reason: str | None, line: str | None, now: int) -> list[Command]:
        self.phase = Phase.ACCEPTED if accepted else Phase.REFUSED
        self.figures, self.sourced = {}, {}  # for planning only: a decided order keeps what its decision says
        r = self.request
        held = tuple((line_id, self.hold_of(line_id)) for line_id in self.holds) if accepted else ()
        self.decision = OrderDecision(r.order_id, r.channel, accepted, reason, line,
                                      self.plan if accepted else None, now, held,
                                      r.expires_at if accepted else None)
        return [Decide(self.decision)]


# --- the owner's side: an order's steps as the movements of a line's SKU -----------------------------------------
ORDER_EVENT_PREFIX = f"{WORKER_EVENT_PREFIX}order:"  # + "<hold id>:<step>"
HoldStep = Literal["place", "source", "confirm", "release"]
# The coordinator's steps (as the order-steps topic names them) that are a hold's movements at its owner.
HOLD_STEPS: dict[str, HoldStep] = {"place_hold": "place", "source_hold": "source", "confirm_hold": "confirm",
                                   "release_hold": "release"}


@dataclass(frozen=True, slots=True)
class SourcedLine:
    """What a source_hold step adds to a hold: the line's units and where the order goes."""

    quantity: int
    latitude: float
    longitude: float
    mode: str


def hold_movement(step: HoldStep, channel: str, sku: str, hold: str, parts: tuple[tuple[str, int], ...],
                  expires_at: int, at: int, sourced: SourcedLine | None = None) -> Movement:
    """A coordinator's step as the movement its line's owner applies: place and confirm hold exactly `parts` (a
    confirmation extends the tentative hold to the order's expiry), source holds where the owner's plan of the
    line says (`sourced`), release ends it."""
    event_id = f"{ORDER_EVENT_PREFIX}{hold}:{step}"
    if step == "release":
        return Movement(Kind.RESERVATION_RELEASED, event_id, channel, sku, None, 0, at, reservation_id=hold)
    if step == "source":
        if sourced is None:
            raise InvalidMovement(f"{event_id}: a sourced hold needs its quantity and delivery point")
        return Movement(Kind.RESERVATION_PLACED, event_id, channel, sku, None, sourced.quantity, at,
                        reservation_id=hold, expires_at=expires_at, latitude=sourced.latitude,
                        longitude=sourced.longitude, mode=sourced.mode)
    return Movement(Kind.RESERVATION_PLACED, event_id, channel, sku, None, sum(units for _, units in parts), at,
                    reservation_id=hold, expires_at=expires_at, parts=tuple(sorted(parts)))


def hold_step(movement: Movement) -> HoldStep | None:
    """Which of an order's steps at a line's owner `movement` is (place: tentatively, or moved to where the
    order's plan says; source: planned by the owner; confirm; release), None for any other movement."""
    event_id = movement.event_id
    if not event_id.startswith(ORDER_EVENT_PREFIX):
        return None
    step = event_id.rpartition(":")[2]
    return step if step in _HOLD_STEP_NAMES else None


_HOLD_STEP_NAMES = frozenset(HOLD_STEPS.values())


def placed_hold(movement: Movement) -> tuple[str, str] | None:
    """(order id, line id) when `movement` is an order's hold being placed (tentatively, or a one-round order's
    for good); None for any other."""
    if hold_step(movement) not in ("place", "source"):
        return None
    order_id, line_id, _ = (movement.reservation_id or "").rsplit("/", 2)
    return order_id, line_id
