"""The channel client: what a store, web shop, app, marketplace or WMS uses to talk to stocksync.

    from streams.channel import ChannelClient

    with ChannelClient("web", "localhost:9092") as web:
        web.receipt("SKU-1", "wh-kassel", 20, event_id="rcpt-881")
        decision = web.reserve("SKU-1", 2, reservation_id="order-77", timeout_s=5)
        feed = web.subscribe_ats(lambda update: print(update.sku, update.ats))

Reported movements go to the channel's sales or restock topic (by kind), Avro single-object encoded, keyed by
SKU, on an idempotent acks=all producer with the murmur2 partitioner, packed per partition (streams.channel.sender).
Every movement is validated by the domain before anything is sent: misuse raises InvalidMovement at the call.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future
from dataclasses import replace

from streams.channel.errors import DecisionTimeout
from streams.channel.feed import AtsSubscription, AtsUpdate
from streams.channel.orders import HeldLine, InvalidOrder, LineLike, OrderDecision, checked, order_lines
from streams.channel.replies import Decision, ReplyListener
from streams.channel.sender import MovementSender
from streams.domain import InvalidMovement, Kind, Movement
from streams.domain.movements import SELLABLE, WORKER_EVENT_PREFIX, WORKER_MADE, WRITTEN_OFF
from streams.domain.orders import OrderRequest
from streams.kafka.cluster import configured_servers
from streams.kafka.schema_registry import codec_for
from streams.kafka.topics import TopicRegistry
from streams.security import Kafka, passed_through
from streams.settings import Settings, load_settings
from streams.wire.codec import SingleObjectCodec
from streams.wire.order_records import order_request_record


def _now_ms() -> int:
    return int(time.time() * 1000)


def _held_lines(decision: OrderDecision, lines: Iterable[str] | None) -> list[HeldLine]:
    if lines is None:
        return list(decision.lines)
    wanted = set(lines)
    found = [held for held in decision.lines if held.line_id in wanted]
    missing = wanted - {held.line_id for held in found}
    if missing:
        raise InvalidOrder(f"order {decision.order_id!r}: no held line {sorted(missing)}")
    return found


class ChannelClient:
    """One channel's connection to stocksync (thread-safe). Close it (or use `with`) to send what is pending."""

    def __init__(self, channel: str, bootstrap_servers: Kafka | None = None, *, settings: Settings | None = None,
                 linger_ms: float = 5.0, max_batch: int = 200,
                 kafka_config: Mapping[str, str | int | float | bool] | None = None) -> None:
        """`bootstrap_servers`: the cluster (default: STOCKSYNC_BOOTSTRAP_SERVERS); given as "host:port,..." it is
        reached with the settings' security (STOCKSYNC_SECURITY_PROTOCOL, ...), as a KafkaConnection as it says.
        `kafka_config`: other librdkafka settings for this client's producer and consumers, over
        STOCKSYNC_LIBRDKAFKA's (e.g. an OAUTHBEARER sign-in); those stocksync sets itself are refused."""
        self.settings = settings or load_settings()
        if bootstrap_servers is None:
            bootstrap_servers = configured_servers(self.settings)
        if isinstance(bootstrap_servers, str):
            bootstrap_servers = self.settings.kafka_connection(bootstrap_servers)
        if kafka_config:
            bootstrap_servers = replace(bootstrap_servers, librdkafka=passed_through(
                {**dict(bootstrap_servers.librdkafka), **kafka_config}))
        if linger_ms < 0 or max_batch < 1:
            raise ValueError("linger_ms must be >= 0 and max_batch >= 1")
        self.channel = channel
        self.servers = bootstrap_servers
        self.registry = TopicRegistry(self.settings)
        self.codec: SingleObjectCodec = codec_for(self.settings)
        self._sender = MovementSender(channel, bootstrap_servers, self.registry.sales(channel).name,
                                      self.registry.restock(channel).name, self.codec, linger_ms / 1000, max_batch)
        self._lock = threading.Lock()
        self._replies: ReplyListener | None = None
        self._subscriptions: list[AtsSubscription] = []

    # --- reporting movements ---------------------------------------------------------------------------------
    def report(self, kind: Kind | str, sku: str | None, location: str | None, quantity: int, *, event_id: str,
               occurred_at: int | None = None, reason: str = "", resellable: bool = True,
               other_location: str | None = None, transfer_id: str | None = None,
               reservation_id: str | None = None, expires_at: int | None = None, alias: str | None = None,
               returned_via: str | None = None, disposition: str | None = None, state: str | None = None,
               to_state: str | None = None) -> Movement:
        """Validate and queue one movement; it is sent within linger_ms (or at flush/close). `alias` instead of
        `sku` (None) names the product by this channel's own identifier (a barcode, a listing id): the catalog
        ('stocksync catalog apply') says which SKU it is."""
        movement = Movement(kind, event_id, self.channel, sku or "", location, quantity,  # type: ignore[arg-type]
                            _now_ms() if occurred_at is None else occurred_at, reason, resellable, other_location,
                            transfer_id, reservation_id, expires_at, alias=alias, returned_via=returned_via,
                            disposition=disposition, state=state, to_state=to_state)
        self.send(movement)
        return movement

    def send(self, movement: Movement) -> None:
        """Queue a movement built by the caller; it must be this channel's (the topic names the channel)."""
        if movement.channel != self.channel:
            raise InvalidMovement(f"channel: the movement is {movement.channel!r}'s, this client is "
                                  f"{self.channel!r}'s")
        if movement.kind in WORKER_MADE:
            raise InvalidMovement(f"kind: a {movement.kind} is made by stocksync only, when a hold lapses")
        if movement.event_id.startswith(WORKER_EVENT_PREFIX):
            raise InvalidMovement(f"event_id: {WORKER_EVENT_PREFIX!r} starts stocksync's own event ids only")
        self._sender.send(movement)

    def sale(self, sku: str, location: str, quantity: int, *, event_id: str, occurred_at: int | None = None
             ) -> Movement:
        return self.report(Kind.SALE, sku, location, quantity, event_id=event_id, occurred_at=occurred_at)

    def return_(self, sku: str, location: str, quantity: int, *, event_id: str, resellable: bool = True,
                reason: str = "", occurred_at: int | None = None, disposition: str | None = None,
                returned_via: str | None = None) -> Movement:
        """Units a customer brought back to `location`. `disposition`: `sellable` (back on the shelf), `inspect`
        (into quality_control until change_state releases or writes them off) or `damaged`; without it,
        `resellable` says sellable or damaged. `returned_via`: post, store or pickup_point."""
        if disposition is not None:
            resellable = disposition == "sellable"  # what a reader that predates dispositions goes by
        return self.report(Kind.RETURN, sku, location, quantity, event_id=event_id, resellable=resellable,
                           reason=reason, occurred_at=occurred_at, disposition=disposition,
                           returned_via=returned_via)

    def receipt(self, sku: str, location: str, quantity: int, *, event_id: str, occurred_at: int | None = None
                ) -> Movement:
        return self.report(Kind.RECEIPT, sku, location, quantity, event_id=event_id, occurred_at=occurred_at)

    def adjustment(self, sku: str, location: str, quantity: int, *, reason: str, event_id: str,
                   occurred_at: int | None = None, state: str = SELLABLE) -> Movement:
        """Signed units added to or taken from `state` (sellable, quality_control, damaged, quarantine)."""
        return self.report(Kind.ADJUSTMENT, sku, location, quantity, event_id=event_id, reason=reason,
                           occurred_at=occurred_at, state=None if state == SELLABLE else state)

    def change_state(self, sku: str, location: str, quantity: int, *, to_state: str, event_id: str,
                     from_state: str = SELLABLE, reason: str = "", occurred_at: int | None = None) -> Movement:
        """Move units from one stock state to another in one step (an inspection's result, a recall's
        quarantine and its end). Units leave a state other than sellable only if it holds them: otherwise the
        movement is dead-lettered as `insufficient_in_state`."""
        return self.report(Kind.ADJUSTMENT, sku, location, quantity, event_id=event_id, reason=reason,
                           occurred_at=occurred_at, state=None if from_state == SELLABLE else from_state,
                           to_state=to_state)

    def write_off(self, sku: str, location: str, quantity: int, *, from_state: str, reason: str, event_id: str,
                  occurred_at: int | None = None) -> Movement:
        """Units that leave the stock for good (damaged beyond repair, destroyed after a recall), with an
        adjustment reason."""
        return self.change_state(sku, location, quantity, to_state=WRITTEN_OFF, from_state=from_state,
                                 reason=reason, event_id=event_id, occurred_at=occurred_at)

    def count(self, sku: str, location: str, quantity: int, *, event_id: str, as_of: int | None = None
              ) -> Movement:
        """A stock count: `quantity` units were on the shelf at `as_of` (movements after it still apply)."""
        return self.report(Kind.COUNT, sku, location, quantity, event_id=event_id, occurred_at=as_of)

    def safety_stock(self, sku: str, location: str, quantity: int, *, event_id: str,
                     occurred_at: int | None = None) -> Movement:
        return self.report(Kind.SAFETY_STOCK, sku, location, quantity, event_id=event_id, occurred_at=occurred_at)

    def transfer_out(self, sku: str, location: str, quantity: int, *, to: str, transfer_id: str, event_id: str,
                     occurred_at: int | None = None) -> Movement:
        return self.report(Kind.TRANSFER_OUT, sku, location, quantity, event_id=event_id, other_location=to,
                           transfer_id=transfer_id, occurred_at=occurred_at)

    def transfer_in(self, sku: str, location: str, quantity: int, *, source: str, transfer_id: str,
                    event_id: str, occurred_at: int | None = None) -> Movement:
        return self.report(Kind.TRANSFER_IN, sku, location, quantity, event_id=event_id, other_location=source,
                           transfer_id=transfer_id, occurred_at=occurred_at)

    def release(self, sku: str, reservation_id: str, *, event_id: str, occurred_at: int | None = None) -> Movement:
        """The order was cancelled: its units become available again."""
        return self.report(Kind.RESERVATION_RELEASED, sku, None, 0, event_id=event_id,
                           reservation_id=reservation_id, occurred_at=occurred_at)

    def fulfil(self, sku: str, reservation_id: str, *, event_id: str, occurred_at: int | None = None) -> Movement:
        """The order was paid and shipped: the reserved units leave on_hand."""
        return self.report(Kind.RESERVATION_FULFILLED, sku, None, 0, event_id=event_id,
                           reservation_id=reservation_id, occurred_at=occurred_at)

    def flush(self, timeout_s: float = 30.0) -> None:
        """Send everything queued and wait until the broker has it; DeliveryError if it refused any."""
        self._sender.flush(timeout_s)

    # --- reservations ----------------------------------------------------------------------------------------
    def request_reservation(self, sku: str | None, quantity: int, *, reservation_id: str,
                            location: str | None = None, ttl_s: float = 900.0, event_id: str | None = None,
                            occurred_at: int | None = None, deliver_to: tuple[float, float] | None = None,
                            mode: str = "ship", alias: str | None = None) -> Future[Decision]:
        """Ask for `quantity` units (at `location`, or anywhere the channel sells from); the Future resolves with
        the owner's decision. The event id defaults to `reserve:<reservation_id>` so a retry is a duplicate.

        `deliver_to=(latitude, longitude)` (without `location`) sources the order: the SKU's owner plans it as the
        sourcing API does (cheapest single location that can fill it, else, shipping and if the channel allows
        splitting, the fewest and cheapest) and holds the units where the plan says; `mode="pickup"` plans a
        collection (one location, that offers pickup). The decision names each location, its units, distance and
        cost."""
        at = _now_ms() if occurred_at is None else occurred_at
        listener = self._reply_listener()
        future = listener.expect(reservation_id)
        try:
            movement = Movement(Kind.RESERVATION_PLACED, event_id or f"reserve:{reservation_id}", self.channel,
                                sku or "", location, quantity, at, reservation_id=reservation_id, alias=alias,
                                expires_at=at + int(ttl_s * 1000),
                                latitude=deliver_to[0] if deliver_to else None,
                                longitude=deliver_to[1] if deliver_to else None,
                                mode=mode if deliver_to else None)
            self.send(movement)
        except Exception:
            listener.forget(reservation_id)
            raise
        return future

    def reserve(self, sku: str | None, quantity: int, *, reservation_id: str, location: str | None = None,
                ttl_s: float = 900.0, timeout_s: float = 10.0, deliver_to: tuple[float, float] | None = None,
                mode: str = "ship", alias: str | None = None) -> Decision:
        """Request a reservation and wait for its decision (DecisionTimeout after `timeout_s`); see
        request_reservation for `deliver_to` and `mode` (a sourced reservation)."""
        future = self.request_reservation(sku, quantity, reservation_id=reservation_id, location=location,
                                          ttl_s=ttl_s, deliver_to=deliver_to, mode=mode, alias=alias)
        try:
            return future.result(timeout_s)
        except TimeoutError:
            raise DecisionTimeout(f"reservation {reservation_id!r} on {sku}: no decision within {timeout_s} s") \
                from None

    # --- orders ----------------------------------------------------------------------------------------------
    def request_order(self, order_id: str, lines: Iterable[LineLike], *,
                      deliver_to: tuple[float, float] | None = None, mode: str = "ship",
                      max_split: int | None = None, partial: bool = False, ttl_s: float = 900.0,
                      expires_at: int | None = None, occurred_at: int | None = None,
                      pickup_at: str | None = None) -> Future[OrderDecision]:
        """Ask for every line of an order to be held, all or none; the Future resolves with the decision.

        `lines`: Line objects, (sku, quantity) pairs or mappings with sku (or alias), quantity and line_id (by
        default "1", "2", ...). The order is sourced as one: the fewest parcels (at most `max_split`), then the
        lowest cost to `deliver_to=(latitude, longitude)` (without it, each location's handling cost);
        `mode="pickup"`: one store that offers pickup and has every line (`pickup_at`: that store, the one the
        customer chose; it implies the mode). `partial=True` holds the lines that
        can be filled and lists the others in `left_out` instead of refusing the order. The holds last `ttl_s`
        (or until `expires_at`, epoch ms). Re-sending the same order (same id and lines) is safe: it gets the
        same decision. InvalidOrder, and nothing sent, for a cart that cannot be an order."""
        at = _now_ms() if occurred_at is None else occurred_at
        request = checked(OrderRequest(order_id, self.channel, order_lines(lines),
                                       deliver_to[0] if deliver_to else None, deliver_to[1] if deliver_to else None,
                                       "pickup" if pickup_at else mode,  # type: ignore[arg-type]
                                       max_split, partial, expires_at or at + int(ttl_s * 1000), pickup_at))
        listener = self._reply_listener()
        future = listener.expect_order(order_id)
        try:
            self._sender.send_order(order_id, order_request_record(request, at))
        except Exception:
            listener.forget_order(order_id)
            raise
        return future

    def reserve_order(self, order_id: str, lines: Iterable[LineLike], *,
                      deliver_to: tuple[float, float] | None = None, mode: str = "ship",
                      max_split: int | None = None, partial: bool = False, ttl_s: float = 900.0,
                      expires_at: int | None = None, pickup_at: str | None = None,
                      timeout_s: float = 10.0) -> OrderDecision:
        """request_order, waiting for the decision (DecisionTimeout after `timeout_s`: the order may still be
        decided; send it again with the same id and lines to learn how)."""
        future = self.request_order(order_id, lines, deliver_to=deliver_to, mode=mode, max_split=max_split,
                                    partial=partial, ttl_s=ttl_s, expires_at=expires_at, pickup_at=pickup_at)
        try:
            return future.result(timeout_s)
        except TimeoutError:
            raise DecisionTimeout(f"order {order_id!r}: no decision within {timeout_s} s") from None

    def fulfil_order(self, decision: OrderDecision, lines: Iterable[str] | None = None) -> list[Movement]:
        """The order (or its `lines`, by line id) was paid and shipped: each line's held units leave on_hand. A
        line held at one location names it, so that if its hold has lapsed the units still count as sold there."""
        sent = []
        for held in _held_lines(decision, lines):
            location, quantity = held.parts[0] if len(held.parts) == 1 else (None, 0)
            sent.append(self.report(Kind.RESERVATION_FULFILLED, held.sku, location, quantity,
                                    event_id=f"fulfil:{held.reservation_id}", reservation_id=held.reservation_id))
        return sent

    def release_order(self, decision: OrderDecision, lines: Iterable[str] | None = None) -> list[Movement]:
        """The order (or its `lines`, by line id) was cancelled: each line's held units are available again."""
        return [self.release(held.sku, held.reservation_id, event_id=f"release:{held.reservation_id}")
                for held in _held_lines(decision, lines)]

    def request_move(self, hold: Decision | HeldLine, to_location: str, *, expires_at: int | None = None
                     ) -> Future[Decision]:
        """move_hold without waiting: the Future resolves with the decision."""
        expiry = expires_at if expires_at is not None else hold.expires_at
        if expiry is None:
            raise InvalidMovement("expires_at: the hold's expiry is not known; give it")
        listener = self._reply_listener()
        future = listener.expect(hold.reservation_id)
        try:
            # A fresh event id per call: moving there again is a no-op for the owner (the hold is there already).
            self.report(Kind.RESERVATION_PLACED, hold.sku, to_location, hold.quantity,
                        reservation_id=hold.reservation_id, event_id=f"move-{uuid.uuid4().hex}", expires_at=expiry)
        except Exception:
            listener.forget(hold.reservation_id)
            raise
        return future

    def move_hold(self, hold: Decision | HeldLine, to_location: str, *, expires_at: int | None = None,
                  timeout_s: float = 10.0) -> Decision:
        """Move a held reservation (or an order's line) whole to `to_location` in one step: released where it was
        and held there, with no moment in between for another request to take the units. Refused (the hold stays
        where it was) when the location cannot take it. The hold keeps its expiry unless `expires_at` is given."""
        future = self.request_move(hold, to_location, expires_at=expires_at)
        try:
            return future.result(timeout_s)
        except TimeoutError:
            raise DecisionTimeout(f"moving {hold.reservation_id!r} to {to_location}: no decision within "
                                  f"{timeout_s} s") from None

    def scan_to_buy(self, code: str, *, deliver_to: tuple[float, float], mode: str = "ship", quantity: int = 1,
                    reservation_id: str | None = None, ttl_s: float = 900.0, timeout_s: float = 10.0) -> Decision:
        """A scanned code (the channel's alias of a product: a barcode, a GTIN, the id a QR code carries) held
        at the nearest location that can fill it in one call: shipped to `deliver_to`, or `mode="pickup"` at
        the store nearest to it that offers pickup. The decision names the location, its distance and cost."""
        return self.reserve(None, quantity, alias=code, reservation_id=reservation_id or f"scan-{uuid.uuid4().hex}",
                            ttl_s=ttl_s, timeout_s=timeout_s, deliver_to=deliver_to, mode=mode)

    def _reply_listener(self) -> ReplyListener:
        with self._lock:
            if self._replies is None:
                self._replies = ReplyListener(self.servers, self.registry.replies(self.channel).name, self.codec)
            return self._replies

    # --- the ATS feed ----------------------------------------------------------------------------------------
    def subscribe_ats(self, callback: Callable[[AtsUpdate], None], *, from_beginning: bool = True
                      ) -> AtsSubscription:
        """Call `callback` for every SKU's ATS: first the whole compacted feed (the full state), then live updates.
        Stale or repeated updates (an older or equal (version, network_version) for the SKU) are skipped."""
        subscription = AtsSubscription(self.servers, self.registry.ats(self.channel).name, self.codec, callback,
                                       from_beginning)
        self._subscriptions.append(subscription)
        return subscription

    def close(self, timeout_s: float = 30.0) -> None:
        """Send what is pending, then stop the feeds and the reply listener."""
        if self._sender.closed:
            return
        try:
            self._sender.close(timeout_s)
        finally:
            for subscription in self._subscriptions:
                subscription.stop()
            if self._replies is not None:
                self._replies.stop()

    def __enter__(self) -> ChannelClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
