"""The asyncio channel client on the real broker: the same calls awaited, decisions and orders, feed callbacks on
the event loop, concurrent requests deciding exactly the stock there is, and the loop never blocked meanwhile."""

from __future__ import annotations

import asyncio
import threading

import pytest

from streams.channel import AsyncChannelClient, AtsUpdate, DecisionTimeout
from tests.integration.harness import Deployment
from tests.integration.workload import NETWORK


def test_the_async_client_reserves_orders_and_follows_the_feed_on_the_event_loop(deployment: Deployment) -> None:
    deployment.apply_network(NETWORK)
    deployment.start_worker("one")

    async def scenario() -> None:
        loop_thread = threading.get_ident()
        ticks = 0

        async def ticker() -> None:  # runs only while the loop is free
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        beat = asyncio.create_task(ticker())
        seen: list[tuple[str, int, int]] = []
        awaited: list[str] = []

        def on_update(update: AtsUpdate) -> None:
            seen.append((update.sku, update.ats, threading.get_ident()))

        async def on_update_awaited(update: AtsUpdate) -> None:
            await asyncio.sleep(0)
            awaited.append(update.sku)

        settings = deployment.settings
        async with AsyncChannelClient("wms", deployment.bootstrap, settings=settings) as wms, \
                AsyncChannelClient("web", deployment.bootstrap, settings=settings) as web:
            feed = await web.subscribe_ats(on_update)
            feed_awaited = await web.subscribe_ats(on_update_awaited)  # a coroutine function: run as tasks
            assert await feed.wait_caught_up(10) and await feed_awaited.wait_caught_up(10)
            await wms.receipt("AIO-1", "w1", 10, event_id="aio-r1")
            await wms.receipt("AIO-2", "w1", 5, event_id="aio-r2")
            await wms.flush()

            # Twenty requests at once for what web may sell of ten units (its buffer held back): exactly that many
            # are held, whatever the interleaving.
            sellable = 10 - next(c["buffer"] for c in NETWORK["channels"] if c["id"] == "web")
            before = ticks
            decisions = await asyncio.gather(*(web.reserve("AIO-1", 1, reservation_id=f"aio-{n}", timeout_s=30)
                                               for n in range(20)))
            assert sum(d.accepted for d in decisions) == sellable
            assert {d.reason for d in decisions if not d.accepted} == {"insufficient_stock"}
            assert ticks > before  # the loop went on while the decisions were awaited

            order = await web.reserve_order("aio-order", [("AIO-2", 2)], timeout_s=30)
            assert order.accepted and [line.sku for line in order.lines] == ["AIO-2"]
            await web.fulfil_order(order)
            with pytest.raises(DecisionTimeout):
                await web.reserve("AIO-2", 1, reservation_id="aio-late", timeout_s=0.001)
            await web.flush()

            def settled() -> bool:
                return feed.ats("AIO-1") == 0 and feed.ats("AIO-2") is not None
            for _ in range(300):
                if settled():
                    break
                await asyncio.sleep(0.1)
            assert settled(), (feed.latest.get("AIO-1"), feed.latest.get("AIO-2"), list(feed.errors))
            await asyncio.sleep(0)  # let the last callbacks' tasks run
            assert {sku for sku, _, _ in seen} >= {"AIO-1", "AIO-2"}
            assert {thread for _, _, thread in seen} == {loop_thread}  # callbacks ran on the event loop
            assert set(awaited) >= {"AIO-1", "AIO-2"}
            assert not feed.errors and not feed_awaited.errors
            await feed.stop()
            await feed_awaited.stop()
        beat.cancel()

    asyncio.run(scenario())
