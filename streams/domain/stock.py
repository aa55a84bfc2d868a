"""Positions of one SKU at every location, and the rules that apply movements to them.

`SkuStock` is the aggregate: one SKU at every location, owned by one worker that decides alone. Its head (the
positions, version and times) is small; what grows with the SKU's history (the events it has seen, the deltas a
count reconciles, open holds and transfers) is kept in records of its own (streams.domain.history), read and
written one by one as movements need them. `apply` mutates the aggregate and returns an `Outcome` that says what
changed (positions before/after), what was decided (reservations) and what looked wrong (anomalies).

Time rules (all times are event times in epoch ms):
- A count "as of T" sets on_hand to the counted units plus every delta that happened after T; deltas at or
  before T that arrive later are absorbed (the count already saw them).
- The aggregate remembers events and deltas back to its `floor` = newest event time seen - `horizon_ms`, with no
  cap on how many. An event at or before the floor is rejected as `too_late`: it can no longer be told apart
  from a duplicate, nor placed against counts. Such events go to the dead-letter topic for
  a person to reconcile (usually with an adjustment or a new count).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import ClassVar

from streams.domain.demand import RecentSales
from streams.domain.errors import InvalidMovement
from streams.domain.history import (
    History,
    HistoryIndex,
    MemoryRecords,
    RecordStore,
    TransferInTransit,
    reservation_key,
    transfer_key,
)
from streams.domain.movements import (
    DELTA_KINDS,
    MAX_QUANTITY,
    STATE_KINDS,
    UNSELLABLE_STATES,
    WORKER_EVENT_PREFIX,
    Kind,
    Movement,
    expiry_of,
)
from streams.domain.network import Channel, Network
from streams.domain.orders import hold_step

# A position's on-hand stays within this (far inside the 64-bit range of the records, and exact in a JavaScript
# number): a movement that would take it beyond is rejected as out_of_range.
MAX_ON_HAND = 1_000_000 * MAX_QUANTITY


@dataclass(frozen=True, slots=True)
class StockRules:
    horizon_ms: int = 7 * 24 * 3600 * 1000  # how far back late events are still reconciled exactly
    max_future_ms: int = 5 * 60 * 1000  # tolerated clock skew of a reporting channel


class Status(StrEnum):
    APPLIED = "applied"  # changed state (or was a valid no-op such as a damaged return)
    ABSORBED = "absorbed"  # a delta at or before the position's last count: already part of that count
    SUPERSEDED = "superseded"  # a count or safety stock older than the one in force
    DUPLICATE = "duplicate"  # this event id was applied before: nothing changes
    REFUSED = "refused"  # a reservation request that could not be granted (see reason)
    IGNORED = "ignored"  # nothing to do, e.g. expiry of a reservation already released (see anomalies)
    REJECTED = "rejected"  # bad input for this state (unknown location, too late...): dead-letter it


@dataclass(frozen=True, slots=True)
class Position:
    sku: str
    location: str
    on_hand: int = 0
    reserved: int = 0
    safety_stock: int = 0
    in_transit: int = 0  # inbound transfers shipped but not received; not sellable anywhere
    version: int = 0  # the SKU's version when this position last changed: grows with every change
    counted_at: int | None = None  # event time of the count in force
    count_key: str = ""  # event key of that count (breaks ties between counts as of the same time)
    safety_at: int | None = None  # event time of the safety stock in force
    # Units on hand but not sellable (`on_hand` is the sellable units): waiting for inspection, damaged,
    # quarantined. Only state changes, returns and adjustments in a state move them; counts count sellable units.
    quality_control: int = 0
    damaged: int = 0
    quarantine: int = 0

    @property
    def available(self) -> int:
        return max(0, self.on_hand - self.reserved - self.safety_stock)

    def in_state(self, state: str) -> int:
        """Units in a state other than sellable (each has a field of its name)."""
        assert state in UNSELLABLE_STATES, state
        units: int = getattr(self, state)
        return units


@dataclass(frozen=True, slots=True)
class PositionChange:
    before: Position
    after: Position


@dataclass(frozen=True, slots=True)
class Reservation:
    channel: str
    reservation_id: str
    parts: tuple[tuple[str, int], ...]  # (location, units) held
    expires_at: int
    placed_at: int

    @property
    def key(self) -> str:
        return f"{self.channel}:{self.reservation_id}"

    @property
    def quantity(self) -> int:
        return sum(units for _, units in self.parts)


@dataclass(frozen=True, slots=True)
class ReservationDecision:
    channel: str
    reservation_id: str
    sku: str
    accepted: bool
    quantity: int
    reason: str = ""  # why it was refused
    parts: tuple[tuple[str, int], ...] = ()
    expires_at: int | None = None
    # A sourced reservation's plan: per location held, its distance to the delivery point and its cost.
    sourcing: tuple[tuple[str, float, float], ...] = ()


@dataclass(frozen=True, slots=True)
class Outcome:
    movement: Movement
    status: Status
    version: int  # the SKU's version after this movement
    reason: str = ""
    changes: tuple[PositionChange, ...] = ()
    anomalies: tuple[str, ...] = ()
    decision: ReservationDecision | None = None


@dataclass
class SkuStock:
    """All positions of one SKU, and (in `records`) the history that makes applying movements exact and
    idempotent."""

    sku: str
    positions: dict[str, Position] = field(default_factory=dict)
    version: int = 0
    watermark: int = 0  # newest event time applied
    floor: int = -1  # events at or before this time are too late
    index: HistoryIndex = field(default_factory=HistoryIndex)  # how to find the history records
    records: RecordStore = field(default_factory=MemoryRecords, repr=False, compare=False)
    sales: RecentSales = field(default_factory=RecentSales)  # units sold per location over the last days
    _history: History | None = field(default=None, init=False, repr=False, compare=False)
    # Whether the last apply_all changed what the SKU's head record holds (not so when it only extended holds).
    head_changed: bool = field(default=True, init=False, repr=False, compare=False)

    # --- reading ---------------------------------------------------------------------------------------------
    def position(self, location: str) -> Position:
        found = self.positions.get(location)
        return found if found is not None else Position(self.sku, location)

    def available(self, location: str) -> int:
        found = self.positions.get(location)
        return found.available if found is not None else 0

    # --- applying --------------------------------------------------------------------------------------------
    def apply(self, movement: Movement, network: Network, now: int, rules: StockRules = StockRules()) -> Outcome:
        """Apply one movement; `now` (epoch ms) bounds clock skew and expiry of new reservations."""
        return self.apply_all([movement], network, now, rules)[0]

    def apply_all(self, movements: Iterable[Movement], network: Network, now: int,
                  rules: StockRules = StockRules()) -> list[Outcome]:
        """Apply movements in order (a batch); the history records are written, and those the horizon has
        passed forgotten, once at the end."""
        self._history = History(self.records, self.index, rules.horizon_ms // 64)
        head = (self.version, self.watermark, self.floor)
        try:
            return [self._apply(m, network, now, rules) for m in movements]
        finally:
            history, self._history = self._history, None
            history.flush()
            history.forget_until(self.floor)
            self.head_changed = history.touched or head != (self.version, self.watermark, self.floor)

    def open_reservations(self) -> list[Reservation]:
        """Every hold this SKU has open (reads every hold record: for replays and tests, not the hot path)."""
        return sorted((r for _, r in self.records.scan(reservation_key("")) if isinstance(r, Reservation)),
                      key=lambda r: (r.expires_at, r.key))

    def due_expiries(self, now: int) -> list[Movement]:
        """Expiry movements for every reservation whose hold has lapsed by `now`; apply them like any movement."""
        return [expiry_of(r.channel, self.sku, r.reservation_id, r.expires_at)
                for r in self.open_reservations() if r.expires_at <= now]

    @property
    def history(self) -> History:
        assert self._history is not None, "only while applying"
        return self._history

    def _held(self, key: str) -> Reservation | None:
        found = self.records.get(reservation_key(key))
        return found if isinstance(found, Reservation) else None

    def _apply(self, m: Movement, network: Network, now: int, rules: StockRules) -> Outcome:
        if m.sku != self.sku:
            raise InvalidMovement(f"sku: {m.sku!r} applied to the stock of {self.sku!r}")
        confirmation = hold_step(m) == "confirm"
        if m.occurred_at > self.floor and not confirmation:  # older ones are too late, seen before or not
            previous = self.history.seen(m.key, self.floor)
            if previous is not None:
                return self._duplicate(m, previous.result)
        problem = self._input_problem(m, network, now, rules)
        if problem:
            return Outcome(m, Status.REJECTED, self.version, problem)
        if confirmation:
            confirmed = self._confirm(m)
            if confirmed is not None:
                return confirmed
        handler = self._HANDLERS[m.kind]
        outcome: Outcome = handler(self, m, network, now)
        self.history.remember(m.key, m.occurred_at, _remembered(outcome))
        if m.occurred_at > self.watermark:
            self.watermark = m.occurred_at
            self.floor = max(self.floor, self.watermark - rules.horizon_ms)
            self.sales.advance(self.watermark)
        return outcome

    def _input_problem(self, m: Movement, network: Network, now: int, rules: StockRules) -> str:
        if m.occurred_at <= self.floor:
            return "too_late"
        if m.occurred_at > now + rules.max_future_ms:
            return "from_future"
        if m.kind is Kind.RESERVATION_EXPIRED:
            return ""  # made by due_expiries from a held reservation, even if its channel has left the network
        if m.channel not in network.channels:
            return "unknown_channel"
        for location in (m.location, m.other_location):
            if location is not None and location not in network.locations:
                return "unknown_location"
        if m.location is not None and not network.owns(m.channel, m.location):
            return "location_not_owned"
        if m.kind in DELTA_KINDS and m.location is not None:
            position = self.position(m.location)
            if abs(position.on_hand + m.delta) > MAX_ON_HAND:
                return "out_of_range"
            for state, units in m.state_deltas if m.kind in STATE_KINDS else ():
                # A state is not a fact that may go negative as sellable stock may: only what is in it leaves it.
                if position.in_state(state) + units < 0:
                    return "insufficient_in_state"
                if position.in_state(state) + units > MAX_ON_HAND:
                    return "out_of_range"
        return ""

    def _duplicate(self, m: Movement, remembered: str) -> Outcome:
        """A movement seen before changes nothing; a re-sent reservation request gets the answer that is true now:
        the original decision while its hold stands, and once the hold has ended, a refusal saying how."""
        decision = None
        if m.kind is Kind.RESERVATION_PLACED:
            held = self._held(m.reservation_key)
            if remembered != "accepted":
                reason = remembered.removeprefix("refused:")
            elif held is None:
                ended = self.history.seen(_ended_key(m.reservation_key), self.floor)
                reason = ended.result if ended is not None else "no_longer_held"
            else:
                reason = ""
            decision = ReservationDecision(m.channel, m.reservation_id or "", self.sku, not reason, m.quantity,
                                           reason, held.parts if held and not reason else (),
                                           held.expires_at if held and not reason else None)
        return Outcome(m, Status.DUPLICATE, self.version, decision=decision)

    # --- state changes ---------------------------------------------------------------------------------------
    def _bump(self) -> int:
        self.version += 1
        return self.version

    def _set(self, before: Position, on_hand: int | None = None, reserved: int | None = None,
             safety_stock: int | None = None, in_transit: int | None = None, counted_at: int | None = None,
             count_key: str | None = None, safety_at: int | None = None,
             states: tuple[int, int, int] | None = None) -> PositionChange:
        """The position with some figures changed, stamped with the SKU's current version (the hot path: no
        dataclasses.replace, which costs several times more). `states`: quality_control, damaged, quarantine."""
        b = before
        quality_control, damaged, quarantine = (b.quality_control, b.damaged, b.quarantine) if states is None \
            else states
        after = Position(b.sku, b.location, b.on_hand if on_hand is None else on_hand,
                         b.reserved if reserved is None else reserved,
                         b.safety_stock if safety_stock is None else safety_stock,
                         b.in_transit if in_transit is None else in_transit, self.version,
                         b.counted_at if counted_at is None else counted_at,
                         b.count_key if count_key is None else count_key,
                         b.safety_at if safety_at is None else safety_at, quality_control, damaged, quarantine)
        self.positions[b.location] = after
        return PositionChange(before, after)

    def _add_delta(self, location: str, m: Movement, delta: int) -> tuple[PositionChange | None, bool]:
        """Apply `delta` at `location` unless the count in force already includes it (returns absorbed=True)."""
        if m.kind in _SALE_KINDS:  # a sale happened that day, whether a count already includes it or not
            self.sales.add(location, m.occurred_at, -delta)
        before = self.position(location)
        if before.counted_at is not None and m.occurred_at <= before.counted_at:
            return None, True
        self.history.record_delta(location, m.occurred_at, m.key, delta)
        if delta == 0:
            return None, False
        self._bump()
        return self._set(before, on_hand=before.on_hand + delta), False

    def _delta(self, m: Movement, network: Network, now: int) -> Outcome:
        assert m.location is not None
        changes: list[PositionChange] = []
        if m.kind in (Kind.TRANSFER_OUT, Kind.TRANSFER_IN):
            transit = self._track_transfer(m)
            if transit is not None:
                changes.append(transit)
        change, absorbed = self._add_delta(m.location, m, m.delta)
        if change is not None:
            changes.append(change)
        anomalies = ("negative_on_hand",) if change is not None and change.after.on_hand < 0 else ()
        state_deltas = m.state_deltas if m.kind in STATE_KINDS else ()
        if state_deltas:  # never absorbed: counts count sellable units only
            changes.append(self._change_states(m.location, state_deltas))
        status = Status.ABSORBED if absorbed and not state_deltas else Status.APPLIED
        return Outcome(m, status, self.version, changes=_merge(changes), anomalies=anomalies)

    def _change_states(self, location: str, state_deltas: tuple[tuple[str, int], ...]) -> PositionChange:
        before = self.position(location)
        states = {state: before.in_state(state) for state in UNSELLABLE_STATES}
        for state, units in state_deltas:
            states[state] += units
        self._bump()
        return self._set(before, states=(states["quality_control"], states["damaged"], states["quarantine"]))

    def _track_transfer(self, m: Movement) -> PositionChange | None:
        """Units shipped by a transfer out are in transit to its destination until the transfer in arrives."""
        destination = m.other_location if m.kind is Kind.TRANSFER_OUT else m.location
        assert destination is not None and m.transfer_id is not None
        sign = 1 if m.kind is Kind.TRANSFER_OUT else -1
        found = self.records.get(transfer_key(m.transfer_id))
        outstanding = found.outstanding if isinstance(found, TransferInTransit) else 0
        before_total = max(0, outstanding)
        outstanding += sign * m.quantity
        if outstanding == 0:
            self.records.delete(transfer_key(m.transfer_id))
        else:
            self.records.put(transfer_key(m.transfer_id), TransferInTransit(destination, outstanding))
        change_in_transit = max(0, outstanding) - before_total
        if change_in_transit == 0:
            return None
        self._bump()
        before = self.position(destination)
        return self._set(before, in_transit=before.in_transit + change_in_transit)

    def _count(self, m: Movement, network: Network, now: int) -> Outcome:
        assert m.location is not None
        before = self.position(m.location)
        if before.counted_at is not None and (m.occurred_at, m.key) <= (before.counted_at, before.count_key):
            return Outcome(m, Status.SUPERSEDED, self.version, "an equal or newer count is in force")
        on_hand = m.quantity + self.history.deltas_after(m.location, m.occurred_at)
        self._bump()
        change = self._set(before, on_hand=on_hand, counted_at=m.occurred_at, count_key=m.key)
        anomalies = ("negative_on_hand",) if on_hand < 0 else ()
        return Outcome(m, Status.APPLIED, self.version, changes=(change,), anomalies=anomalies)

    def _safety_stock(self, m: Movement, network: Network, now: int) -> Outcome:
        assert m.location is not None
        before = self.position(m.location)
        if before.safety_at is not None and m.occurred_at <= before.safety_at:
            return Outcome(m, Status.SUPERSEDED, self.version, "a newer safety stock is in force")
        self._bump()
        change = self._set(before, safety_stock=m.quantity, safety_at=m.occurred_at)
        return Outcome(m, Status.APPLIED, self.version, changes=(change,))

    def _confirm(self, m: Movement) -> Outcome | None:
        """An order's confirmation: its tentative hold now lasts as long as the order. The hold itself says whether
        it was confirmed already, so a confirmation is not remembered as an event (nor the SKU's head written for
        it). One that finds the hold released or fulfilled (the channel may fulfil an order before its owner
        reads the confirmation: they come on different topics) changes nothing; None: the hold lapsed or is
        unknown here, to be placed afresh like a reservation."""
        assert m.expires_at is not None and m.reservation_id is not None
        held = self._held(m.reservation_key)
        if held is None:
            ended = self.history.seen(_ended_key(m.reservation_key), self.floor)
            if ended is not None and ended.result != "expired":
                return Outcome(m, Status.IGNORED, self.version, f"hold {ended.result}")
            return None
        if tuple(sorted(m.parts)) != held.parts or m.expires_at <= held.expires_at:
            decision = ReservationDecision(m.channel, m.reservation_id, self.sku, True, held.quantity, "",
                                           held.parts, held.expires_at)
            return Outcome(m, Status.DUPLICATE, self.version, decision=decision)
        extended = replace(held, expires_at=m.expires_at)
        self.records.put(reservation_key(m.reservation_key), extended)
        decision = ReservationDecision(m.channel, m.reservation_id, self.sku, True, held.quantity, "", held.parts,
                                       extended.expires_at)
        return Outcome(m, Status.APPLIED, self.version, "extended", decision=decision)

    def _place(self, m: Movement, network: Network, now: int) -> Outcome:
        assert m.expires_at is not None and m.reservation_id is not None
        held = self._held(m.reservation_key)
        if held is not None and m.location is not None and held.parts != ((m.location, m.quantity),):
            return self._move(m, held, ((m.location, m.quantity),), network, now)
        if held is not None and m.parts and tuple(sorted(m.parts)) != held.parts and hold_step(m) == "place":
            return self._move(m, held, tuple(sorted(m.parts)), network, now)
        if held is not None:  # the same reservation re-sent under a new event id: same answer
            decision = ReservationDecision(m.channel, m.reservation_id, self.sku, True, held.quantity, "",
                                           held.parts, held.expires_at, _sourcing(m, held.parts, network))
            return Outcome(m, Status.DUPLICATE, self.version, decision=decision)
        reason, parts = self._allocate(m, network, now)
        if reason:
            decision = ReservationDecision(m.channel, m.reservation_id, self.sku, False, m.quantity, reason)
            return Outcome(m, Status.REFUSED, self.version, reason, decision=decision)
        self._bump()
        changes = []
        for location, units in parts:
            before = self.position(location)
            changes.append(self._set(before, reserved=before.reserved + units))
        self.records.put(reservation_key(m.reservation_key),
                         Reservation(m.channel, m.reservation_id, parts, m.expires_at, m.occurred_at))
        decision = ReservationDecision(m.channel, m.reservation_id, self.sku, True, m.quantity, "", parts,
                                       m.expires_at, _sourcing(m, parts, network))
        return Outcome(m, Status.APPLIED, self.version, changes=tuple(changes), decision=decision)

    def _move(self, m: Movement, held: Reservation, parts: tuple[tuple[str, int], ...], network: Network,
              now: int) -> Outcome:
        """A held reservation asked for again at one location (or an order's line at the parts its plan says):
        moved there whole in one step (released where it was and held there, with no moment in between), or, if
        the target cannot take it, left as it is."""
        assert m.expires_at is not None and m.reservation_id is not None
        channel = network.channels[m.channel]
        own = dict(held.parts)
        reason = ""
        if m.expires_at <= now:
            reason = "expired"
        elif m.quantity != held.quantity or sum(units for _, units in parts) != m.quantity:
            reason = "quantity_differs"  # a move keeps the hold's units: release it and reserve anew instead
        elif any(location in channel.excluded_locations for location, _ in parts):
            reason = "location_excluded"
        elif any(location not in channel.selling_locations for location, _ in parts):
            reason = "location_not_owned"
        elif any(self.available(location) + own.get(location, 0) < units for location, units in parts):
            reason = "insufficient_stock"
        if reason:
            decision = ReservationDecision(m.channel, m.reservation_id, self.sku, False, m.quantity, reason)
            return Outcome(m, Status.REFUSED, self.version, reason, decision=decision)
        self._bump()
        changes = []
        for location, units in held.parts:
            before = self.position(location)
            changes.append(self._set(before, reserved=before.reserved - units))
        for location, units in parts:
            before = self.position(location)
            changes.append(self._set(before, reserved=before.reserved + units))
        self.records.put(reservation_key(m.reservation_key), replace(held, parts=parts, expires_at=m.expires_at))
        decision = ReservationDecision(m.channel, m.reservation_id, self.sku, True, m.quantity, "", parts,
                                       m.expires_at)
        return Outcome(m, Status.APPLIED, self.version, "moved", changes=_merge(changes), decision=decision)

    def _allocate(self, m: Movement, network: Network, now: int) -> tuple[str, tuple[tuple[str, int], ...]]:
        """Where a reservation request can be held, or why it cannot: the single oversell-preventing decision."""
        if m.expires_at is not None and m.expires_at <= now:
            return "expired", ()
        channel = network.channels[m.channel]
        if self.sku in channel.excluded_skus:
            return "sku_excluded", ()
        if m.parts:
            for location, units in m.parts:
                if location not in channel.selling_locations:
                    return "location_not_owned", ()
                if self.available(location) < units:
                    return "insufficient_stock", ()
            return "", tuple(sorted(m.parts))
        if m.location is not None:
            if m.location in channel.excluded_locations:
                return "location_excluded", ()
            if self.available(m.location) < m.quantity:
                return "insufficient_stock", ()
            return "", ((m.location, m.quantity),)
        if m.sourced and hold_step(m) == "source":
            return self._source_order_line(m, network, channel)
        if m.sourced:
            return self._source(m, network, channel)
        # Channel-wide: grant only within the channel's ATS, held where most is available.
        candidates = sorted(((self.available(loc), loc) for loc in channel.selling_locations),
                            key=lambda c: (-c[0], c[1]))
        ats = max(0, sum(avail for avail, _ in candidates) - channel.buffer)
        if ats < m.quantity:
            return "insufficient_stock", ()
        parts, remaining = [], m.quantity
        for avail, location in candidates:
            take = min(avail, remaining)
            if take > 0:
                parts.append((location, take))
                remaining -= take
            if remaining == 0:
                break
        return "", tuple(sorted(parts))

    def _source(self, m: Movement, network: Network, channel: Channel) -> tuple[str, tuple[tuple[str, int], ...]]:
        """Hold a sourced request where the sourcing plan says (the API's rules, on this very state): the cheapest
        single location that can fill it, else (shipping, and the channel allows it) the fewest, cheapest ones."""
        from streams.domain.sourcing import plan_fulfilment  # sourcing builds on this module

        assert m.latitude is not None and m.longitude is not None
        plan = plan_fulfilment(self, network, m.channel, m.quantity, m.latitude, m.longitude,
                               "pickup" if m.mode == "pickup" else "ship")
        if not plan.complete:
            return "insufficient_stock", ()
        if len(plan.allocations) > 1 and not channel.split:
            return "no_single_location", ()  # the plan splits only when no one location can fill it
        return "", tuple(sorted((a.location, a.quantity) for a in plan.allocations))

    def _source_order_line(self, m: Movement, network: Network, channel: Channel
                           ) -> tuple[str, tuple[tuple[str, int], ...]]:
        """A one-round order's line, held where its order's plan would hold it (plan_order, on the figures the
        coordinator would have asked for: this very state)."""
        from streams.domain.ats import line_figures  # both build on this module
        from streams.domain.order_sourcing import OrderLine, plan_order

        line = OrderLine("line", self.sku, m.quantity)
        plan = plan_order((line,), {line.line_id: line_figures(self, channel)}, network, m.channel, m.latitude,
                          m.longitude, "pickup" if m.mode == "pickup" else "ship")
        if not plan.accepted:
            return plan.reason or "insufficient_stock", ()
        return "", tuple(sorted(plan.allocations[line.line_id]))

    def _close(self, m: Movement, network: Network, now: int) -> Outcome:
        """Release, fulfilment or expiry of a reservation."""
        held = self._held(m.reservation_key)
        if m.kind is Kind.RESERVATION_EXPIRED and (held is None or held.expires_at > m.occurred_at):
            return Outcome(m, Status.IGNORED, self.version, "not held or not yet due")
        if held is None:
            if m.kind is Kind.RESERVATION_FULFILLED and m.location is not None and m.quantity > 0:
                # The units left anyway: a fact, applied as a sale, flagged.
                sale = replace(m, kind=Kind.SALE)
                outcome = self._delta(sale, network, now)
                return replace(outcome, movement=m, anomalies=("unknown_reservation",) + outcome.anomalies)
            return Outcome(m, Status.IGNORED, self.version, anomalies=("unknown_reservation",))
        self.records.delete(reservation_key(m.reservation_key))
        # How the hold ended, for a re-sent request (forgotten with the other event ids at the horizon).
        self.history.remember(_ended_key(m.reservation_key), m.occurred_at, _ENDED_AS[m.kind])
        self._bump()
        changes: list[PositionChange] = []
        for location, units in held.parts:
            before = self.position(location)
            changes.append(self._set(before, reserved=before.reserved - units))
        anomalies: tuple[str, ...] = ()
        status = Status.APPLIED
        if m.kind is Kind.RESERVATION_FULFILLED:
            for location, units in held.parts:
                change, absorbed = self._add_delta(location, m, -units)
                if change is not None:
                    changes.append(change)
                    if change.after.on_hand < 0:
                        anomalies = ("negative_on_hand",)
                status = Status.ABSORBED if absorbed else status
        return Outcome(m, status, self.version, changes=_merge(changes), anomalies=anomalies)

    # Which method applies a movement kind (all of them take the movement, the network and the time).
    _HANDLERS: ClassVar[Mapping[Kind, Callable[[SkuStock, Movement, Network, int], Outcome]]] = {
        **dict.fromkeys(DELTA_KINDS, _delta),
        Kind.COUNT: _count,
        Kind.SAFETY_STOCK: _safety_stock,
        Kind.RESERVATION_PLACED: _place,
        Kind.RESERVATION_RELEASED: _close,
        Kind.RESERVATION_FULFILLED: _close,
        Kind.RESERVATION_EXPIRED: _close,
    }


# Units leaving a location to a customer: what the sales rate counts (returns are not netted off).
_SALE_KINDS = frozenset({Kind.SALE, Kind.RESERVATION_FULFILLED})

_ENDED_AS = {Kind.RESERVATION_RELEASED: "released", Kind.RESERVATION_FULFILLED: "fulfilled",
             Kind.RESERVATION_EXPIRED: "expired"}


def _ended_key(reservation_key: str) -> str:
    """The `seen` key that remembers how a hold ended (no channel's event key starts with the workers' prefix:
    channel ids cannot)."""
    return f"{WORKER_EVENT_PREFIX}ended:{reservation_key}"


def _remembered(outcome: Outcome) -> str:
    """What a duplicate of this event must repeat: for reservation requests, the decision."""
    if outcome.decision is not None and outcome.movement.kind is Kind.RESERVATION_PLACED:
        return "accepted" if outcome.decision.accepted else f"refused:{outcome.decision.reason}"
    return outcome.status.value


def _merge(changes: list[PositionChange]) -> tuple[PositionChange, ...]:
    """One change per position: the first before and the last after."""
    merged: dict[str, PositionChange] = {}
    for change in changes:
        location = change.after.location
        first = merged.get(location)
        merged[location] = change if first is None else PositionChange(first.before, change.after)
    return tuple(merged.values())


def _sourcing(m: Movement, parts: tuple[tuple[str, int], ...], network: Network
              ) -> tuple[tuple[str, float, float], ...]:
    """For a sourced reservation, each held location's distance to the delivery point and its cost (the sourcing
    API's cost: distance_weight x km + handling cost); nothing for any other."""
    if not m.sourced:
        return ()
    assert m.latitude is not None and m.longitude is not None
    found = []
    for location_id, _ in parts:
        if location_id in network.locations:
            km, cost = network.shipment(location_id, m.latitude, m.longitude)
            found.append((location_id, round(km, 3), round(cost, 3)))
    return tuple(found)
