"""The channel client for asyncio code: ChannelClient's methods, awaitable, never blocking the event loop.

    from streams.channel import AsyncChannelClient

    async with AsyncChannelClient("web") as web:
        await web.receipt("SKU-1", "wh-kassel", 20, event_id="rcpt-881")
        decision = await web.reserve("SKU-1", 2, reservation_id="order-77", timeout_s=5)
        feed = await web.subscribe_ats(lambda update: print(update.sku, update.ats))

It drives a ChannelClient (confluent-kafka works in its own threads): reporting queues at once; what waits
(connecting, flushing, a decision, closing) is awaited on the event loop; feed callbacks run on the event loop
(a coroutine function's are scheduled as tasks)."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Iterable, Mapping
from concurrent.futures import Future
from functools import partial
from typing import Any, TypeVar

from streams.channel.client import ChannelClient
from streams.channel.errors import BackgroundErrors, ClientClosed, DecisionTimeout
from streams.channel.feed import AtsSubscription, AtsUpdate
from streams.channel.orders import HeldLine, LineLike, OrderDecision
from streams.channel.replies import Decision
from streams.domain import Kind, Movement
from streams.domain.movements import SELLABLE
from streams.security import Kafka
from streams.settings import Settings

T = TypeVar("T")


class AsyncAtsFeed:
    """A running ATS feed subscription, for asyncio code (see AtsSubscription)."""

    def __init__(self, subscription: AtsSubscription) -> None:
        self.subscription = subscription

    @property
    def latest(self) -> dict[str, AtsUpdate]:
        return self.subscription.latest

    @property
    def errors(self) -> BackgroundErrors:
        return self.subscription.errors

    def ats(self, sku: str) -> int | None:
        return self.subscription.ats(sku)

    async def wait_caught_up(self, timeout_s: float = 30.0) -> bool:
        """True once the feed as it was at subscription time has been delivered."""
        return await asyncio.to_thread(self.subscription.wait_caught_up, timeout_s)

    async def stop(self) -> None:
        await asyncio.to_thread(self.subscription.stop)


class AsyncChannelClient:
    """One channel's connection to stocksync, for asyncio code. Use `async with`, or `await start()` and
    `await close()`; the arguments are ChannelClient's."""

    def __init__(self, channel: str, bootstrap_servers: Kafka | None = None, *, settings: Settings | None = None,
                 linger_ms: float = 5.0, max_batch: int = 200,
                 kafka_config: Mapping[str, str | int | float | bool] | None = None) -> None:
        self.channel = channel
        self._open = partial(ChannelClient, channel, bootstrap_servers, settings=settings, linger_ms=linger_ms,
                             max_batch=max_batch, kafka_config=kafka_config)
        self._client: ChannelClient | None = None

    async def start(self) -> AsyncChannelClient:
        """Connect (finding the channel's topics takes a round trip to Kafka)."""
        if self._client is None:
            self._client = await asyncio.to_thread(self._open)
        return self

    @property
    def client(self) -> ChannelClient:
        """The ChannelClient underneath (its blocking methods block the event loop: prefer the ones here)."""
        if self._client is None:
            raise ClientClosed(f"channel {self.channel!r}: the client is not started (async with, or await start())")
        return self._client

    # --- reporting movements (queued at once, sent within linger_ms) -------------------------------------------
    async def report(self, kind: Kind | str, sku: str | None, location: str | None, quantity: int, *,
                     event_id: str, **fields: Any) -> Movement:
        return self.client.report(kind, sku, location, quantity, event_id=event_id, **fields)

    async def send(self, movement: Movement) -> None:
        self.client.send(movement)

    async def sale(self, sku: str, location: str, quantity: int, *, event_id: str, occurred_at: int | None = None
                   ) -> Movement:
        return self.client.sale(sku, location, quantity, event_id=event_id, occurred_at=occurred_at)

    async def return_(self, sku: str, location: str, quantity: int, *, event_id: str, resellable: bool = True,
                      reason: str = "", occurred_at: int | None = None, disposition: str | None = None,
                      returned_via: str | None = None) -> Movement:
        return self.client.return_(sku, location, quantity, event_id=event_id, resellable=resellable, reason=reason,
                                   occurred_at=occurred_at, disposition=disposition, returned_via=returned_via)

    async def receipt(self, sku: str, location: str, quantity: int, *, event_id: str,
                      occurred_at: int | None = None) -> Movement:
        return self.client.receipt(sku, location, quantity, event_id=event_id, occurred_at=occurred_at)

    async def adjustment(self, sku: str, location: str, quantity: int, *, reason: str, event_id: str,
                         occurred_at: int | None = None, state: str = SELLABLE) -> Movement:
        return self.client.adjustment(sku, location, quantity, reason=reason, event_id=event_id,
                                      occurred_at=occurred_at, state=state)

    async def change_state(self, sku: str, location: str, quantity: int, *, to_state: str, event_id: str,
                           from_state: str = SELLABLE, reason: str = "", occurred_at: int | None = None
                           ) -> Movement:
        return self.client.change_state(sku, location, quantity, to_state=to_state, event_id=event_id,
                                        from_state=from_state, reason=reason, occurred_at=occurred_at)

    async def write_off(self, sku: str, location: str, quantity: int, *, from_state: str, reason: str,
                        event_id: str, occurred_at: int | None = None) -> Movement:
        return self.client.write_off(sku, location, quantity, from_state=from_state, reason=reason,
                                     event_id=event_id, occurred_at=occurred_at)

    async def count(self, sku: str, location: str, quantity: int, *, event_id: str, as_of: int | None = None
                    ) -> Movement:
        return self.client.count(sku, location, quantity, event_id=event_id, as_of=as_of)

    async def safety_stock(self, sku: str, location: str, quantity: int, *, event_id: str,
                           occurred_at: int | None = None) -> Movement:
        return self.client.safety_stock(sku, location, quantity, event_id=event_id, occurred_at=occurred_at)

    async def transfer_out(self, sku: str, location: str, quantity: int, *, to: str, transfer_id: str,
                           event_id: str, occurred_at: int | None = None) -> Movement:
        return self.client.transfer_out(sku, location, quantity, to=to, transfer_id=transfer_id, event_id=event_id,
                                        occurred_at=occurred_at)

    async def transfer_in(self, sku: str, location: str, quantity: int, *, source: str, transfer_id: str,
                          event_id: str, occurred_at: int | None = None) -> Movement:
        return self.client.transfer_in(sku, location, quantity, source=source, transfer_id=transfer_id,
                                       event_id=event_id, occurred_at=occurred_at)

    async def release(self, sku: str, reservation_id: str, *, event_id: str, occurred_at: int | None = None
                      ) -> Movement:
        return self.client.release(sku, reservation_id, event_id=event_id, occurred_at=occurred_at)

    async def fulfil(self, sku: str, reservation_id: str, *, event_id: str, occurred_at: int | None = None
                     ) -> Movement:
        return self.client.fulfil(sku, reservation_id, event_id=event_id, occurred_at=occurred_at)

    async def flush(self, timeout_s: float = 30.0) -> None:
        """Send everything queued and wait until the broker has it; DeliveryError if it refused any."""
        await asyncio.to_thread(self.client.flush, timeout_s)

    # --- reservations and orders -------------------------------------------------------------------------------
    async def reserve(self, sku: str | None, quantity: int, *, reservation_id: str, location: str | None = None,
                      ttl_s: float = 900.0, timeout_s: float = 10.0, deliver_to: tuple[float, float] | None = None,
                      mode: str = "ship", alias: str | None = None) -> Decision:
        """ChannelClient.reserve, awaited (DecisionTimeout after `timeout_s`)."""
        future = self.client.request_reservation(sku, quantity, reservation_id=reservation_id, location=location,
                                                 ttl_s=ttl_s, deliver_to=deliver_to, mode=mode, alias=alias)
        return await _decided(future, timeout_s, f"reservation {reservation_id!r} on {sku}")

    async def scan_to_buy(self, code: str, *, deliver_to: tuple[float, float], mode: str = "ship",
                          quantity: int = 1, reservation_id: str, ttl_s: float = 900.0, timeout_s: float = 10.0
                          ) -> Decision:
        """ChannelClient.scan_to_buy, awaited."""
        return await self.reserve(None, quantity, alias=code, reservation_id=reservation_id, ttl_s=ttl_s,
                                  timeout_s=timeout_s, deliver_to=deliver_to, mode=mode)

    async def move_hold(self, hold: Decision | HeldLine, to_location: str, *, expires_at: int | None = None,
                        timeout_s: float = 10.0) -> Decision:
        """ChannelClient.move_hold, awaited."""
        future = self.client.request_move(hold, to_location, expires_at=expires_at)
        return await _decided(future, timeout_s, f"moving {hold.reservation_id!r} to {to_location}")

    async def reserve_order(self, order_id: str, lines: Iterable[LineLike], *,
                            deliver_to: tuple[float, float] | None = None, mode: str = "ship",
                            max_split: int | None = None, partial: bool = False, ttl_s: float = 900.0,
                            expires_at: int | None = None, pickup_at: str | None = None,
                            timeout_s: float = 10.0) -> OrderDecision:
        """ChannelClient.reserve_order, awaited (DecisionTimeout after `timeout_s`)."""
        future = self.client.request_order(order_id, lines, deliver_to=deliver_to, mode=mode, max_split=max_split,
                                           partial=partial, ttl_s=ttl_s, expires_at=expires_at,
                                           pickup_at=pickup_at)
        return await _decided(future, timeout_s, f"order {order_id!r}")

    async def fulfil_order(self, decision: OrderDecision, lines: Iterable[str] | None = None) -> list[Movement]:
        return self.client.fulfil_order(decision, lines)

    async def release_order(self, decision: OrderDecision, lines: Iterable[str] | None = None) -> list[Movement]:
        return self.client.release_order(decision, lines)

    # --- the ATS feed ------------------------------------------------------------------------------------------
    async def subscribe_ats(self, callback: Callable[[AtsUpdate], Awaitable[None] | None], *,
                            from_beginning: bool = True) -> AsyncAtsFeed:
        """Follow the channel's ATS feed (the whole feed first, then live updates); `callback` runs on this event
        loop, a coroutine function's as a task."""
        loop = asyncio.get_running_loop()
        errors = BackgroundErrors(f"ATS feed of {self.channel!r}: callback")

        def on_loop(update: AtsUpdate) -> None:
            try:
                result = callback(update)
            except Exception as exc:  # noqa: BLE001 - the caller's bug must not stop the feed: said and kept
                errors.add(f"callback failed on {update.sku}: {exc!r}")
                return
            if inspect.isawaitable(result):
                task = loop.create_task(_awaited(result))
                task.add_done_callback(lambda done: None if done.cancelled() or done.exception() is None else
                                       errors.add(f"callback failed on {update.sku}: {done.exception()!r}"))

        def from_feed(update: AtsUpdate) -> None:  # in the feed's thread
            loop.call_soon_threadsafe(on_loop, update)

        subscription = await asyncio.to_thread(self.client.subscribe_ats, from_feed, from_beginning=from_beginning)
        subscription.errors = errors  # the callback's failures, here on the loop, where the feed's own go too
        return AsyncAtsFeed(subscription)

    # --- closing -----------------------------------------------------------------------------------------------
    async def close(self, timeout_s: float = 30.0) -> None:
        """Send what is pending, then stop the feeds and the reply listener."""
        if self._client is not None:
            await asyncio.to_thread(self._client.close, timeout_s)

    async def __aenter__(self) -> AsyncChannelClient:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def _decided(future: Future[T], timeout_s: float, what: str) -> T:
    try:
        return await asyncio.wait_for(asyncio.wrap_future(future), timeout_s)
    except TimeoutError:
        raise DecisionTimeout(f"{what}: no decision within {timeout_s} s") from None


async def _awaited(result: Awaitable[None]) -> None:
    await result
