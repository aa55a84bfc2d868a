"""Movements: everything that happens to stock, as reported by a channel, validated on construction."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from streams.domain.errors import InvalidMovement

SKU_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,63}$")
_CONTROL = re.compile(r"[\x00-\x1f]")
ADJUSTMENT_REASONS = frozenset({"damage", "shrinkage", "correction", "found", "theft", "expired_goods", "other"})

# Stock states. Units on hand are sellable (a position's `on_hand`, what counts count and ATS sells) or held apart
# in a state that no channel sells: waiting for inspection, damaged, or quarantined (a recall, a hold by QA).
SELLABLE = "sellable"
UNSELLABLE_STATES = ("quality_control", "damaged", "quarantine")
STATES = frozenset({SELLABLE, *UNSELLABLE_STATES})
WRITTEN_OFF = "written_off"  # where a state change sends units that leave the stock for good
# Between the states that are not sellable, units move one way only (and from any of them to sellable or
# written_off): with no way back, whatever order state changes arrive in, each one applies once the units it
# follows are there (a change arriving early is dead-lettered; sent again then, it applies).
ONWARD_STATES = {"quality_control": ("quarantine", "damaged"), "quarantine": ("damaged",), "damaged": ()}
# How a return came back, and what becomes of its units: a return's disposition names the state they go to.
RETURN_ROUTES = frozenset({"post", "store", "pickup_point"})
DISPOSITIONS = {"sellable": SELLABLE, "inspect": "quality_control", "damaged": "damaged"}


class Kind(StrEnum):
    SALE = "sale"
    RETURN = "return"
    RECEIPT = "receipt"
    ADJUSTMENT = "adjustment"
    COUNT = "count"
    TRANSFER_OUT = "transfer_out"
    TRANSFER_IN = "transfer_in"
    SAFETY_STOCK = "safety_stock"
    RESERVATION_PLACED = "reservation_placed"
    RESERVATION_RELEASED = "reservation_released"
    RESERVATION_FULFILLED = "reservation_fulfilled"
    RESERVATION_EXPIRED = "reservation_expired"


# Movements that change on_hand by a signed amount (the deltas that counts reconcile with).
DELTA_KINDS = frozenset({Kind.SALE, Kind.RETURN, Kind.RECEIPT, Kind.ADJUSTMENT, Kind.TRANSFER_OUT,
                         Kind.TRANSFER_IN})
RESERVATION_KINDS = frozenset({Kind.RESERVATION_PLACED, Kind.RESERVATION_RELEASED, Kind.RESERVATION_FULFILLED,
                               Kind.RESERVATION_EXPIRED})
# One movement carries at most this many units, so that no total (a position's figures, a channel's ATS) can
# leave the 64-bit range the records hold, whatever the history.
MAX_QUANTITY = 1_000_000_000

# Movements only stocksync makes (a lapsed hold's expiry): they come on a worker-only topic, and their event ids
# start with WORKER_EVENT_PREFIX, which no channel's event id may (so the two can never be taken for each other).
WORKER_MADE = frozenset({Kind.RESERVATION_EXPIRED})
WORKER_EVENT_PREFIX = "~"
EXPIRY_EVENT_PREFIX = f"{WORKER_EVENT_PREFIX}expired:"  # + "<channel>:<reservation id>"
# Which input topic of a channel carries a kind it reports: sales-side or supply-side.
SALES_SIDE = frozenset({Kind.SALE, Kind.RETURN} | RESERVATION_KINDS) - WORKER_MADE
SUPPLY_SIDE = frozenset({Kind.RECEIPT, Kind.ADJUSTMENT, Kind.COUNT, Kind.TRANSFER_OUT, Kind.TRANSFER_IN,
                         Kind.SAFETY_STOCK})
# The kinds that may move units into or out of a state other than sellable (and carry a reason for it).
STATE_KINDS = frozenset({Kind.RETURN, Kind.ADJUSTMENT})
_ABSOLUTE = frozenset({Kind.COUNT, Kind.SAFETY_STOCK})  # their quantity is the new figure, not a change
_CLOSING = frozenset({Kind.RESERVATION_RELEASED, Kind.RESERVATION_FULFILLED, Kind.RESERVATION_EXPIRED})
_TRANSFERS = frozenset({Kind.TRANSFER_OUT, Kind.TRANSFER_IN})


@dataclass(frozen=True, slots=True)
class Movement:
    """One event at one SKU. `quantity` is units (signed only for adjustments; absolute for counts and safety
    stock). Times are epoch milliseconds of event time. `location` is None only for a channel-wide reservation."""

    kind: Kind
    event_id: str
    channel: str
    sku: str
    location: str | None
    quantity: int
    occurred_at: int
    reason: str = ""  # adjustment reason, or free text for a return
    resellable: bool = True  # returns: a damaged return does not go back on the shelf
    other_location: str | None = None  # transfers: destination of an out, origin of an in
    transfer_id: str | None = None
    reservation_id: str | None = None
    expires_at: int | None = None  # reservations placed: event time after which the hold lapses
    # A sourced reservation (placed without a location): where the order goes, and how it gets there. The SKU's
    # owner plans it as the sourcing API does and holds the units where the plan says, in the same step.
    latitude: float | None = None
    longitude: float | None = None
    mode: str | None = None  # "ship" (default) or "pickup"
    # The channel's own identifier of the product (a barcode, a listing id): with `sku` "" it names the product
    # instead of the SKU, and the SKU's owner resolves it from the catalog before applying the movement.
    alias: str | None = None
    # A hold at exactly these (location, units), all or none: an order's coordinator asks the SKU's owner for the
    # parts its plan chose (never on the wire: order steps carry them). Re-sent with a later `expires_at` while the
    # hold stands, it extends the hold (the order's confirmation).
    parts: tuple[tuple[str, int], ...] = ()
    # Returns: how the units came back (post, store, pickup_point) and what becomes of them: `sellable` (back on
    # the shelf), `inspect` (into quality control until a state change decides) or `damaged`. Without a
    # disposition, `resellable` says sellable or damaged.
    returned_via: str | None = None
    disposition: str | None = None
    # Adjustments in a stock state: `state` names the state whose units change (None: sellable). With `to_state`
    # the adjustment is a state change instead: `quantity` units move from `state` to `to_state` (written_off:
    # they leave the stock, with the adjustment reason), in one step.
    state: str | None = None
    to_state: str | None = None

    def __post_init__(self) -> None:
        # Every input movement passes here once: each message is formatted only when its check fails.
        if not isinstance(self.kind, Kind):
            try:
                object.__setattr__(self, "kind", Kind(self.kind))
            except ValueError:
                raise InvalidMovement(f"kind: unknown movement type {self.kind!r}") from None
        event_id, quantity, kind = self.event_id, self.quantity, self.kind
        if not event_id:
            raise InvalidMovement("event_id: missing")
        if len(event_id) > 128:
            raise InvalidMovement("event_id: longer than 128 characters")
        if _CONTROL.search(event_id):
            raise InvalidMovement("event_id: contains a tab, newline or other control character")
        if not self.channel:
            raise InvalidMovement("channel: missing")
        if self.alias is not None and not (0 < len(self.alias) <= 128 and not _CONTROL.search(self.alias)):
            raise InvalidMovement("alias: 1 to 128 characters, no control characters")
        if not SKU_PATTERN.match(self.sku) and not (self.sku == "" and self.alias is not None):
            raise InvalidMovement(f"sku: {self.sku!r} is not a SKU (letters, digits, ._/-; max 64)")
        if not isinstance(quantity, int) or isinstance(quantity, bool):
            raise InvalidMovement("quantity: not an integer")
        if not -MAX_QUANTITY <= quantity <= MAX_QUANTITY:
            raise InvalidMovement(f"quantity: {quantity} is beyond the {MAX_QUANTITY:,} units one movement may carry")
        if not isinstance(self.occurred_at, int) or self.occurred_at < 0:
            raise InvalidMovement("occurred_at: not an epoch-ms time")
        if kind is Kind.ADJUSTMENT and self.to_state is not None:
            self._check_state_change()
        elif kind is Kind.ADJUSTMENT:
            if quantity == 0:
                raise InvalidMovement("quantity: an adjustment must change stock (non-zero)")
            if self.reason not in ADJUSTMENT_REASONS:
                raise InvalidMovement(f"reason: adjustment reason {self.reason!r} is not one of "
                                      f"{sorted(ADJUSTMENT_REASONS)}")
        elif kind in _ABSOLUTE:
            if quantity < 0:
                raise InvalidMovement(f"quantity: a {kind} is absolute and cannot be negative")
        elif kind in _CLOSING:
            if quantity < 0:
                raise InvalidMovement("quantity: cannot be negative")
        elif quantity <= 0:
            raise InvalidMovement(f"quantity: must be positive for a {kind}, got {quantity}")
        if kind not in RESERVATION_KINDS and not self.location:
            raise InvalidMovement("location: missing")
        if kind in _TRANSFERS:
            if not self.transfer_id:
                raise InvalidMovement("transfer_id: missing for a transfer")
            if not self.other_location:
                raise InvalidMovement("other_location: a transfer needs its other end")
            if self.other_location == self.location:
                raise InvalidMovement("other_location: a transfer needs two different locations")
        for name, value in (("location", self.location), ("other_location", self.other_location),
                            ("transfer_id", self.transfer_id), ("reservation_id", self.reservation_id)):
            if value is not None and _CONTROL.search(value):
                raise InvalidMovement(f"{name}: contains a control character")
        if kind in RESERVATION_KINDS and not self.reservation_id:
            raise InvalidMovement("reservation_id: missing")
        if kind is Kind.RESERVATION_PLACED and (self.expires_at is None or self.expires_at <= self.occurred_at):
            raise InvalidMovement("expires_at: a reservation needs an expiry after occurred_at")
        if self.latitude is not None or self.longitude is not None or self.mode is not None:
            self._check_sourcing()
        if self.state is not None:
            _check(kind is Kind.ADJUSTMENT, "state: only an adjustment names a stock state")
            _check(self.state in STATES, f"state: {self.state!r} is not a stock state ({_STATE_NAMES})")
        if self.returned_via is not None or self.disposition is not None:
            _check(kind is Kind.RETURN, "returned_via/disposition: only a return has them")
            _check(self.returned_via is None or self.returned_via in RETURN_ROUTES,
                   f"returned_via: {self.returned_via!r} is not one of {sorted(RETURN_ROUTES)}")
            _check(self.disposition is None or self.disposition in DISPOSITIONS,
                   f"disposition: {self.disposition!r} is not one of {sorted(DISPOSITIONS)}")
        if self.parts:
            _check(kind is Kind.RESERVATION_PLACED and self.location is None,
                   "parts: only a reservation without a location names its parts")
            _check(all(units > 0 for _, units in self.parts) and sum(u for _, u in self.parts) == quantity,
                   "parts: positive units that add up to the quantity")

    def _check_state_change(self) -> None:
        to_state = self.to_state
        _check(to_state in STATES or to_state == WRITTEN_OFF,
               f"to_state: {to_state!r} is neither a stock state ({_STATE_NAMES}) nor {WRITTEN_OFF!r}")
        _check(self.quantity > 0, f"quantity: a state change moves a positive number of units, got {self.quantity}")
        source = self.state or SELLABLE
        _check(to_state != source, f"to_state: the units are in {to_state!r} already")
        if source in ONWARD_STATES and to_state in ONWARD_STATES:
            _check(to_state in ONWARD_STATES[source],
                   f"to_state: units in {source} go to {', '.join((*ONWARD_STATES[source], SELLABLE, WRITTEN_OFF))}, "
                   f"not back to {to_state}")
        if to_state == WRITTEN_OFF:
            _check(self.reason in ADJUSTMENT_REASONS, f"reason: a write-off needs one of {sorted(ADJUSTMENT_REASONS)}"
                                                      f", got {self.reason!r}")
        else:
            _check(len(self.reason) <= 64 and not _CONTROL.search(self.reason),
                   "reason: at most 64 characters, no control characters")

    def _check_sourcing(self) -> None:
        _check(self.kind is Kind.RESERVATION_PLACED, "latitude/longitude/mode: only a reservation is sourced")
        _check(self.latitude is not None and self.longitude is not None,
               "latitude, longitude: a sourced reservation needs both (where the order goes)")
        assert self.latitude is not None and self.longitude is not None
        _check(-90 <= self.latitude <= 90, f"latitude: {self.latitude} is outside -90..90")
        _check(-180 <= self.longitude <= 180, f"longitude: {self.longitude} is outside -180..180")
        _check(self.mode in (None, "ship", "pickup"), f"mode: {self.mode!r} is neither 'ship' nor 'pickup'")

    @property
    def key(self) -> str:
        """What makes the movement unique: event ids are unique per channel."""
        return f"{self.channel}:{self.event_id}"

    @property
    def resolved(self) -> bool:
        """It names its SKU (not only the channel's alias for it)."""
        return self.sku != ""

    @property
    def sourced(self) -> bool:
        """A reservation to plan from a delivery point (no location of its own)."""
        return self.latitude is not None and self.location is None

    @property
    def reservation_key(self) -> str:
        return f"{self.channel}:{self.reservation_id}"

    @property
    def delta(self) -> int:
        """The signed change to on_hand at `location` (deltas only)."""
        kind = self.kind
        if kind in (Kind.SALE, Kind.TRANSFER_OUT):
            return -self.quantity
        if kind is Kind.RETURN:
            return self.quantity if self.returned_to == SELLABLE else 0
        if kind is Kind.ADJUSTMENT and (self.state or SELLABLE) != SELLABLE:  # out of another state, or in it
            return self.quantity if self.to_state == SELLABLE else 0
        if kind is Kind.ADJUSTMENT and self.to_state is not None:  # sellable units moved into another state
            return -self.quantity
        if kind in (Kind.RECEIPT, Kind.ADJUSTMENT, Kind.TRANSFER_IN):
            return self.quantity
        raise InvalidMovement(f"kind: a {kind} is not a delta")

    @property
    def in_states(self) -> bool:
        """An adjustment in a stock state or a state change. It may come on either of its channel's topics; the
        channel client sends it on the sales topic, where returns come: one channel's return and the inspection
        that releases it then arrive in the order sent."""
        return self.state is not None or self.to_state is not None

    @property
    def on_sales_topic(self) -> bool:
        """Which of its channel's topics the channel client sends it on."""
        return self.kind in SALES_SIDE or self.in_states

    @property
    def returned_to(self) -> str:
        """The state a return's units go to."""
        if self.disposition is not None:
            return DISPOSITIONS[self.disposition]
        return SELLABLE if self.resellable else "damaged"

    @property
    def state_deltas(self) -> tuple[tuple[str, int], ...]:
        """The signed change to each state other than sellable (sellable is `delta`): units put into a state
        or taken out of it."""
        kind = self.kind
        if kind is Kind.RETURN:
            state = self.returned_to
            return () if state == SELLABLE else ((state, self.quantity),)
        if kind is not Kind.ADJUSTMENT:
            return ()
        source = self.state or SELLABLE
        if self.to_state is None:
            return () if source == SELLABLE else ((source, self.quantity),)
        found = [] if source == SELLABLE else [(source, -self.quantity)]
        if self.to_state in UNSELLABLE_STATES:
            found.append((self.to_state, self.quantity))
        return tuple(found)


_STATE_NAMES = ", ".join(sorted(STATES))


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise InvalidMovement(message)


def expiry_of(channel: str, sku: str, reservation_id: str, expires_at: int) -> Movement:
    """The movement that ends a lapsed hold (made by stocksync, never by a channel)."""
    return Movement(Kind.RESERVATION_EXPIRED, f"{EXPIRY_EVENT_PREFIX}{channel}:{reservation_id}", channel, sku,
                    None, 0, expires_at, reservation_id=reservation_id)


def channel_of_expiry(event_id: str) -> str | None:
    """The channel whose hold an expiry's event id ends (channel ids hold no ':'); None if it is not one."""
    channel, sep, _ = event_id.removeprefix(EXPIRY_EVENT_PREFIX).partition(":")
    return channel if event_id.startswith(EXPIRY_EVENT_PREFIX) and sep and channel else None
