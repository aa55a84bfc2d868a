"""Reservation expiry: an index of the open holds of the SKUs this worker owns, and the expiry movements for the
lapsed ones, sent through the expiries topic (written by workers only) so that the SKU's owner applies them like
any movement."""

from __future__ import annotations

import heapq
from collections.abc import Iterable

from streams.domain.movements import expiry_of
from streams.domain.stock import Reservation
from streams.kafka.topics import TopicRegistry
from streams.wire.codec import SingleObjectCodec
from streams.wire.records import movement_to_record
from streams.wire.schemas import Schema
from streams.worker.ops.clock import now_ms
from streams.worker.processing.outputs import Outbox
from streams.worker.reference.network_in_force import NetworkInForce

# An expiry movement not applied after this long is sent again (a repeat is a harmless duplicate).
EXPIRY_RESEND_MS = 10_000
# At most this many expiries per round, earliest first, so one round stays short.
MAX_EXPIRIES_PER_ROUND = 10_000

HoldKey = tuple[str, str, str]  # (sku, channel, reservation id)


class ExpiryScheduler:
    """Knows when each open hold of this worker's SKUs lapses, and asks for its expiry once it has.

    A best-seller may hold thousands of open holds: each hold placed, extended or ended costs O(log n), never a
    pass over the SKU's holds. A heap of (when to look, hold, its expiry then) is checked lazily: an entry whose
    hold has since ended or moved its expiry is dropped when it comes up."""

    def __init__(self, registry: TopicRegistry, codec: SingleObjectCodec, network: NetworkInForce) -> None:
        self.registry, self.codec, self.network = registry, codec, network
        self._expires: dict[HoldKey, int] = {}  # every open hold's expiry
        self._due: list[tuple[int, HoldKey, int]] = []  # (when to look, hold, the expiry it was for)

    def held(self, sku: str, hold: Reservation) -> None:
        """A hold was placed or extended (its batch is committed)."""
        key = (sku, hold.channel, hold.reservation_id)
        self._expires[key] = hold.expires_at
        heapq.heappush(self._due, (hold.expires_at, key, hold.expires_at))

    def ended(self, sku: str, channel: str, reservation_id: str, lapsed_at: int | None = None) -> None:
        """A hold was released, fulfilled or expired (its batch is committed). `lapsed_at`: an expiry as of this
        time was applied (or found the hold extended past it): only a hold due by then is done with."""
        key = (sku, channel, reservation_id)
        expires = self._expires.get(key)
        if expires is not None and (lapsed_at is None or expires <= lapsed_at):
            del self._expires[key]

    def rebuild(self, holds: Iterable[tuple[str, Reservation]]) -> None:
        """After a rebalance: index the open holds of the SKUs this worker now owns."""
        self._expires = {(sku, hold.channel, hold.reservation_id): hold.expires_at for sku, hold in holds}
        self._due = [(expires, key, expires) for key, expires in self._expires.items()]
        heapq.heapify(self._due)

    def request_due(self, outbox: Outbox, now: int | None = None) -> int:
        """Send an expiry movement for every lapsed hold (asked again every EXPIRY_RESEND_MS until it is
        applied); returns how many were sent."""
        now = now if now is not None else now_ms()
        sent = 0
        while self._due and self._due[0][0] <= now and sent < MAX_EXPIRIES_PER_ROUND:
            _, key, expires_at = heapq.heappop(self._due)
            if self._expires.get(key) != expires_at:
                continue  # ended, or extended (its later expiry has an entry of its own)
            sku, channel, reservation_id = key
            heapq.heappush(self._due, (now + EXPIRY_RESEND_MS, key, expires_at))  # until it is applied
            if channel not in self.network.network.channels:
                continue
            movement = expiry_of(channel, sku, reservation_id, expires_at)
            outbox.send(self.registry.expiries.name, sku.encode(),
                        self.codec.encode(Schema.MOVEMENT, movement_to_record(movement)), None)
            sent += 1
        return sent

    def __len__(self) -> int:
        return len(self._expires)
