"""Reservation expiry: an index of the open holds of the SKUs this worker owns, and the expiry movements for the
lapsed ones, sent through the expiries topic (written by workers only) so that the SKU's owner applies them like
any movement."""

from __future__ import annotations

import bisect
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
# At most this many SKUs' lapsed holds per round, earliest first, so one round stays short.
MAX_SKUS_PER_ROUND = 10_000


class ExpiryScheduler:
    """Knows when each open hold of this worker's SKUs lapses, and asks for its expiry once it has."""

    def __init__(self, registry: TopicRegistry, codec: SingleObjectCodec, network: NetworkInForce) -> None:
        self.registry, self.codec, self.network = registry, codec, network
        self._expiries: dict[str, list[tuple[int, str, str]]] = {}  # sku -> [(expires_at, channel, reservation)]
        self._requested: dict[tuple[str, str, str], int] = {}  # (sku, channel, reservation) -> sent at

    def held(self, sku: str, hold: Reservation) -> None:
        """A hold was placed or extended (its batch is committed)."""
        self.ended(sku, hold.channel, hold.reservation_id)
        self._index(sku, hold)

    def _index(self, sku: str, hold: Reservation) -> None:
        bisect.insort(self._expiries.setdefault(sku, []), (hold.expires_at, hold.channel, hold.reservation_id))

    def ended(self, sku: str, channel: str, reservation_id: str, lapsed_at: int | None = None) -> None:
        """A hold was released, fulfilled or expired (its batch is committed). `lapsed_at`: an expiry as of this
        time was applied (or found the hold extended past it): only an entry due by then is done with."""
        entries = [e for e in self._expiries.get(sku, ())
                   if (e[1], e[2]) != (channel, reservation_id) or (lapsed_at is not None and e[0] > lapsed_at)]
        if entries:
            self._expiries[sku] = entries
        else:
            self._expiries.pop(sku, None)
        self._requested.pop((sku, channel, reservation_id), None)

    def rebuild(self, holds: Iterable[tuple[str, Reservation]]) -> None:
        """After a rebalance: index the open holds of the SKUs this worker now owns."""
        self._expiries.clear()
        self._requested.clear()
        for sku, hold in holds:
            self._index(sku, hold)

    def request_due(self, outbox: Outbox, now: int | None = None) -> int:
        """Send an expiry movement for every lapsed hold; returns how many were sent."""
        now = now if now is not None else now_ms()
        due = heapq.nsmallest(MAX_SKUS_PER_ROUND, ((entries[0][0], sku) for sku, entries in self._expiries.items()
                                                  if entries[0][0] <= now))
        sent = 0
        for _, sku in due:
            for expires_at, channel, reservation_id in self._expiries[sku]:
                if expires_at > now:
                    break
                requested = self._requested.get((sku, channel, reservation_id))
                if requested is not None and now - requested < EXPIRY_RESEND_MS:
                    continue
                if channel not in self.network.network.channels:
                    continue
                movement = expiry_of(channel, sku, reservation_id, expires_at)
                outbox.send(self.registry.expiries.name, sku.encode(),
                            self.codec.encode(Schema.MOVEMENT, movement_to_record(movement)), None)
                self._requested[(sku, channel, reservation_id)] = now
                sent += 1
        return sent
