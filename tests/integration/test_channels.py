"""The channel client and the query API on the real broker, against running workers."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from streams.channel import AtsUpdate, ChannelClient, ChannelTopicMissing, ClientClosed
from streams.domain import InvalidMovement, Kind, Movement, Network, SkuStock, channel_ats, plan_fulfilment
from streams.errors import StocksyncError
from streams.wire.partitioner import sku_partition
from streams.wire.records import movement_to_record
from streams.wire.schemas import Schema
from tests.integration.conftest import wait_for
from tests.integration.harness import Deployment
from tests.integration.workload import NETWORK


def client(deployment: Deployment, channel: str, **options: Any) -> ChannelClient:
    return ChannelClient(channel, deployment.bootstrap, settings=deployment.settings, **options)


class Recorder:
    def __init__(self) -> None:
        self.updates: list[AtsUpdate] = []
        self.lock = threading.Lock()

    def __call__(self, update: AtsUpdate) -> None:
        with self.lock:
            self.updates.append(update)

    def latest(self, sku: str) -> int | None:
        with self.lock:
            found = [u.ats for u in self.updates if u.sku == sku]
        return found[-1] if found else None


def test_report_reaches_the_feed_and_a_new_subscriber_replays_it(deployment: Deployment) -> None:
    deployment.apply_network(NETWORK)
    deployment.start_worker("one")
    network = Network.from_dict(NETWORK)
    live = Recorder()
    with client(deployment, "wms") as wms, client(deployment, "pos-1") as pos, client(deployment, "web") as web:
        subscription = web.subscribe_ats(live)
        assert subscription.wait_caught_up(10)
        expected = {}
        now = int(time.time() * 1000)
        for i in range(12):
            sku = f"SDK-{i:02d}"
            stock = SkuStock(sku)
            for m in (wms.receipt(sku, "w1", 10 + i, event_id=f"r-{sku}"),
                      wms.receipt(sku, "s1", 5, event_id=f"r2-{sku}"),
                      pos.sale(sku, "s1", 2, event_id=f"s-{sku}")):
                stock.apply(m, network, now)
            expected[sku] = channel_ats(stock, network.channels["web"])
        wms.flush()
        pos.flush()
        wait_for(lambda: all(live.latest(sku) == ats for sku, ats in expected.items()), 30,
                 "every SKU's final ATS on the web feed")
        # Versions only grow on the live feed.
        by_sku: dict[str, list[int]] = {}
        for update in live.updates:
            by_sku.setdefault(update.sku, []).append(update.version)
        assert all(versions == sorted(set(versions)) for versions in by_sku.values())

        late = Recorder()
        replay = web.subscribe_ats(late)
        assert replay.wait_caught_up(30)
        assert {sku: replay.ats(sku) for sku in expected} == expected
        assert all(late.latest(sku) == ats for sku, ats in expected.items())
        replay.stop()
        subscription.stop()


def test_a_failing_feed_callback_is_logged_and_the_feed_goes_on(deployment: Deployment,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    deployment.apply_network(NETWORK)
    deployment.start_worker("one")
    seen: list[str] = []

    def fragile(update: AtsUpdate) -> None:
        seen.append(update.sku)
        raise ValueError(f"no shelf for {update.sku}")

    # librdkafka settings pass through to the client's producer and consumers (here: a rack and a timeout).
    with client(deployment, "wms", kafka_config={"client.rack": "rack-a", "socket.timeout.ms": 20_000}) as wms, \
            client(deployment, "web") as web, caplog.at_level(logging.WARNING, logger="stocksync.channel"):
        assert dict(wms.servers.librdkafka)["client.rack"] == "rack-a"
        feed = web.subscribe_ats(fragile)
        for i in range(3):
            wms.receipt(f"CB-{i}", "w1", 4, event_id=f"cb-{i}")
        wms.flush()
        wait_for(lambda: {f"CB-{i}" for i in range(3)} <= set(feed.latest), 30, "every SKU on the feed")
        assert set(seen) >= {f"CB-{i}" for i in range(3)}  # called for each, although it raised each time
        assert feed.errors.count >= 3 and "callback failed on CB-" in next(iter(feed.errors))
        warnings = [r.getMessage() for r in caplog.records if r.name == "stocksync.channel"]
        assert warnings and "ValueError('no shelf for CB-" in warnings[0]
        assert len(warnings) < feed.errors.count  # a flood is one line per 10 s, with its count
        feed.stop()


def test_batching_client_packs_movements_sharing_a_partition(deployment: Deployment) -> None:
    deployment.apply_network(NETWORK)
    deployment.start_worker("one")
    skus = [f"PACK-{i:03d}" for i in range(200)]
    with client(deployment, "wms", linger_ms=200, max_batch=1000) as wms:
        for sku in skus:
            wms.receipt(sku, "w2", 3, event_id=f"pack-{sku}")
    topic = deployment.registry.restock("wms").name
    messages = deployment.read(topic)
    movements = sum(len(value.get("movements", [value])) for _, value, _, _ in messages)
    assert movements == len(skus)
    assert len(messages) <= 2 * deployment.partitions  # packed: a message per partition per linger, not per SKU
    for _, value, partition, _ in messages:
        for m in value.get("movements", [value]):
            assert sku_partition(m["sku"], deployment.partitions) == partition
    wait_for(lambda: len(deployment.latest(deployment.registry.positions.name)) == len(skus), 30,
             "every packed movement applied")


def test_reservation_decisions_come_back_to_the_requesting_channel(deployment: Deployment) -> None:
    deployment.apply_network(NETWORK)
    deployment.start_worker("one")
    with client(deployment, "wms") as wms, client(deployment, "web", linger_ms=0) as web:
        wms.receipt("RES-1", "w1", 6, event_id="rcpt-res-1")  # web holds back 2: ATS 4
        wms.flush()
        first = web.reserve("RES-1", 4, reservation_id="order-1", timeout_s=20)
        second = web.reserve("RES-1", 4, reservation_id="order-2", timeout_s=20)
        again = web.reserve("RES-1", 4, reservation_id="order-1", timeout_s=20)  # a retry: same decision
        assert (first.accepted, first.parts) == (True, (("w1", 4),))
        assert (second.accepted, second.reason) == (False, "insufficient_stock")
        assert again.accepted and again.version == first.version
        web.release("RES-1", "order-1", event_id="cancel-order-1")
        web.flush()
        third = web.reserve("RES-1", 4, reservation_id="order-3", timeout_s=20)
        assert third.accepted


def test_a_sourced_reservation_is_held_where_the_sourcing_api_plans_it(deployment: Deployment) -> None:
    deployment.apply_network(NETWORK)
    worker = deployment.start_worker("one")
    near_w2 = (51.30, 12.40)
    with client(deployment, "wms") as wms, client(deployment, "web", linger_ms=0) as web:
        for location, units in (("w1", 5), ("w2", 5), ("s1", 1)):
            wms.receipt("SRC-1", location, units, event_id=f"rcpt-src-{location}")
        wms.flush()
        wait_for(lambda: len(deployment.latest(deployment.registry.positions.name)) == 3, 30, "the receipts")
        url = f"{worker.url}/skus/SRC-1/sourcing?channel=web&quantity=2&lat={near_w2[0]}&lon={near_w2[1]}"
        with urllib.request.urlopen(url, timeout=10) as response:
            planned = [(a["location"], a["quantity"]) for a in json.loads(response.read())["allocations"]]
        first = web.reserve("SRC-1", 2, reservation_id="src-1", deliver_to=near_w2, timeout_s=20)
        assert first.accepted and list(first.parts) == planned == [("w2", 2)]
        assert [loc for loc, _, _ in first.sourcing] == ["w2"] and first.sourcing[0][1] < 5  # km
        # 6 more (web's ATS is 7: 9 available, a buffer of 2): no one location has them (w2 has 3 left), so the
        # fewest that do and the cheapest of those: w2 and w1 (w1 and s1 would do too, but s1 is farther).
        second = web.reserve("SRC-1", 6, reservation_id="src-2", deliver_to=near_w2, timeout_s=20)
        assert second.accepted and dict(second.parts) == {"w1": 3, "w2": 3}
        collect = web.reserve("SRC-1", 1, reservation_id="src-3", deliver_to=(52.5, 13.4), mode="pickup",
                              timeout_s=20)
        assert (collect.accepted, collect.parts) == (True, (("s1", 1),))  # the one store with a unit left
    wait_for(lambda: {key: value["figures"]["reserved"] for key, value in
                      deployment.latest(deployment.registry.positions.name).items()}
             == {b"SRC-1|w1": 3, b"SRC-1|w2": 5, b"SRC-1|s1": 1}, 30, "the holds in the positions")


def test_a_lapsed_hold_expires_and_its_re_sent_request_is_refused(deployment: Deployment) -> None:
    deployment.apply_network(NETWORK)
    deployment.start_worker("one")
    codec, registry = deployment.codec, deployment.registry
    positions = registry.positions.name
    with client(deployment, "web", linger_ms=0) as web:
        deployment.send_applied([Movement(Kind.RECEIPT, "rcpt-exp-1", "wms", "EXP-1", "w1", 6,
                                          int(time.time() * 1000))])
        # The request's own event id is what expiries used to be called: it must not stop the expiry.
        request = {"reservation_id": "order-9", "event_id": "expired:order-9", "ttl_s": 1.0}
        held = web.request_reservation("EXP-1", 3, **request).result(20)  # type: ignore[arg-type]
        assert held.accepted and held.parts == (("w1", 3),)
        # A channel cannot end its own hold: only the workers make expiries.
        forged = Movement(Kind.RESERVATION_EXPIRED, "x-order-9", "web", "EXP-1", None, 0, int(time.time() * 1000),
                          reservation_id="order-9")
        deployment.send_raw(registry.sales("web").name, b"EXP-1",
                            codec.encode(Schema.MOVEMENT, movement_to_record(forged)))
        wait_for(lambda: deployment.latest(positions)[b"EXP-1|w1"]["figures"]["reserved"] == 0, 30,
                 "the hold to expire")
        again = web.request_reservation("EXP-1", 3, **request).result(20)  # type: ignore[arg-type]
        assert (again.accepted, again.reason, again.parts) == (False, "expired", ())
    letters = [value for _, value, _, _ in deployment.read(registry.deadletter.name)]
    assert [(d["reason"], d["source_topic"]) for d in letters] == [("wrong_topic", registry.sales("web").name)]
    ledger = [value for _, value, _, _ in deployment.read(registry.ledger.name) if value["sku"] == "EXP-1"]
    assert [e["kind"] for e in ledger] == ["receipt", "reservation_placed", "reservation_expired"]


def test_misuse_raises_before_anything_is_sent(deployment: Deployment) -> None:
    deployment.apply_network(NETWORK)
    with client(deployment, "wms", linger_ms=0) as wms:
        with pytest.raises(InvalidMovement, match="quantity"):
            wms.receipt("BAD-1", "w1", -3, event_id="neg")
        with pytest.raises(InvalidMovement, match="kind"):
            wms.report("teleport", "BAD-1", "w1", 1, event_id="tp")
        with pytest.raises(InvalidMovement, match="event_id"):
            wms.receipt("BAD-1", "w1", 1, event_id="")
        with pytest.raises(TypeError):
            wms.receipt("BAD-1", "w1", 1)  # type: ignore[call-arg]
    assert deployment.read(deployment.registry.restock("wms").name) == []


def test_send_takes_a_built_movement_and_every_error_is_typed(deployment: Deployment) -> None:
    deployment.apply_network(NETWORK)
    with pytest.raises(ChannelTopicMissing, match="'ghost'"):
        client(deployment, "ghost")
    wms = client(deployment, "wms", linger_ms=0)
    built = Movement(Kind.RECEIPT, "built-1", "wms", "SEND-1", "w1", 4, int(time.time() * 1000))
    wms.send(built)
    with pytest.raises(InvalidMovement, match="channel"):
        wms.send(Movement(Kind.RECEIPT, "built-2", "web", "SEND-1", "w1", 4, int(time.time() * 1000)))
    wms.close()
    with pytest.raises(ClientClosed):
        wms.receipt("SEND-1", "w1", 1, event_id="late")
    [(key, value, _, _)] = deployment.read(deployment.registry.restock("wms").name)
    assert key == b"SEND-1" and value["event_id"] == "built-1" and value["quantity"] == 4
    assert issubclass(ChannelTopicMissing, StocksyncError) and issubclass(ClientClosed, StocksyncError)


def _get(port: int, path: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def listening_addresses(port: int) -> set[str]:
    """The local addresses a TCP socket listens on at `port` (from /proc: no traffic is sent anywhere)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as lines:
            for line in list(lines)[1:]:
                local, state = line.split()[1], line.split()[3]
                address, hex_port = local.split(":")
                if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                    found.add(socket.inet_ntop(socket.AF_INET if len(address) == 8 else socket.AF_INET6,
                                               bytes.fromhex(address)[::-1] if len(address) == 8 else
                                               b"".join(bytes.fromhex(address[i:i + 8])[::-1]
                                                        for i in range(0, 32, 8))))
    return found


def test_query_api_answers_the_same_on_every_worker(deployment: Deployment) -> None:
    deployment.apply_network(NETWORK)
    one = deployment.start_worker("one")
    two = deployment.start_worker("two")
    # The API listens where STOCKSYNC_WEB_HOST says (127.0.0.1 by default), not on every interface.
    assert listening_addresses(one.port) == {"127.0.0.1"}
    network = Network.from_dict(NETWORK)
    skus = [f"API-{i:02d}" for i in range(16)]
    stocks = {}
    with client(deployment, "wms") as wms:
        now = int(time.time() * 1000)
        for i, sku in enumerate(skus):
            stocks[sku] = SkuStock(sku)
            for location, units in (("w1", 1 + i % 3), ("w2", 2), ("s2", i)):
                if units:
                    m = wms.receipt(sku, location, units, event_id=f"{sku}-{location}", occurred_at=now)
                    stocks[sku].apply(m, network, now)

    def settled() -> bool:
        if not (one.ready() and two.ready()):
            return False
        return all(_get(w.port, f"/skus/{sku}/positions")[0] == 200
                   and _get(w.port, f"/skus/{sku}/positions")[1]["version"] == stocks[sku].version
                   for w in (one, two) for sku in skus)

    wait_for(settled, 90, "both workers answering with every receipt applied", interval_s=0.5)
    owners = set()
    for sku in skus:
        for path in (f"/skus/{sku}/positions", f"/skus/{sku}/positions/w1", f"/channels/web/ats/{sku}",
                     f"/skus/{sku}/sourcing?channel=web&quantity=3&lat=52.5&lon=13.4",
                     f"/skus/{sku}/sourcing?channel=web&quantity=2&lat=51.3&lon=9.5&mode=pickup"):
            answers = [_get(w.port, path) for w in (one, two)]
            assert answers[0] == answers[1], path
            assert answers[0][0] == 200, (path, answers[0])
        positions = _get(one.port, f"/skus/{sku}/positions")[1]
        assert {p["location"]: p["on_hand"] for p in positions["positions"]} == {
            loc: stocks[sku].position(loc).on_hand for loc in network.locations}
        assert _get(two.port, f"/channels/web/ats/{sku}")[1]["ats"] == channel_ats(stocks[sku], network.channels["web"])
        plan = _get(two.port, f"/skus/{sku}/sourcing?channel=web&quantity=3&lat=52.5&lon=13.4")[1]
        expected = plan_fulfilment(stocks[sku], network, "web", 3, 52.5, 13.4)
        assert [(a["location"], a["quantity"]) for a in plan["allocations"]] == [
            (a.location, a.quantity) for a in expected.allocations]
        owners.add(sku_partition(sku, deployment.partitions))
    assert len(owners) > 1  # the SKUs span partitions, so both workers own some and route the rest

    for path, status in (("/skus/bad%20sku/positions", 400), ("/skus/API-01/positions/nowhere", 404),
                         ("/channels/nobody/ats/API-01", 404),
                         ("/skus/API-01/sourcing?channel=web&quantity=0&lat=1&lon=1", 400),
                         ("/skus/API-01/sourcing?channel=web&quantity=2&lat=91&lon=1", 400),
                         ("/skus/API-01/sourcing?channel=web&quantity=x&lat=1&lon=1", 400),
                         ("/skus/API-01/sourcing?quantity=1&lat=1&lon=1", 400),
                         ("/skus/API-01/sourcing?channel=web&quantity=1&lat=1&lon=1&mode=fly", 400)):
        for worker in (one, two):
            got, body = _get(worker.port, path)
            assert (got, "error" in body) == (status, True), (path, body)
    status, spec = _get(one.port, "/openapi.json")
    assert status == 200 and "/skus/{sku}/sourcing" in spec["paths"]


def test_simulated_network_flows_through_without_loss_or_dead_letters(deployment: Deployment) -> None:
    from streams.dev.simulator import Simulator

    deployment.apply_network(NETWORK)
    deployment.start_worker("one")
    network = Network.from_dict(NETWORK)
    simulator = Simulator(network, lambda channel: client(deployment, channel, linger_ms=20), seed=5, rate=60,
                          duration_s=25, skus=15)
    stats = simulator.run()
    assert stats.sent > 1_000 and stats.late_uploads > 0 and stats.accepted > 0 and stats.carts_accepted > 0
    deployment.sent.update({s.movement.key: s.movement for s in simulator.steps
                            if s.movement is not None and s.movement.key in simulator.sent_at})
    deployment.sent.update({m.key: m for m in simulator.settled})
    deployment.settle(180, all_reservations_closed=True)  # web and app holds expire 20 s after the last order
    assert [(v["reason"], v["detail"]) for _, v, _, _ in deployment.read(deployment.registry.deadletter.name)] == []
    stocks, history = deployment.replay_ledger()
    assert set(simulator.sent_at) <= {f"{e['channel']}:{e['event_id']}" for e in history}
    deployment.assert_outputs_match(stocks)
