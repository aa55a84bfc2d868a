"""The stock state on the real broker: a best-seller's burst stops nothing and every record stays small, and a
changelog written by an earlier version is recovered and converted."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from typing import Any

from streams.channel import ChannelClient
from streams.domain import Kind, Movement
from streams.wire.partitioner import sku_partition
from streams.wire.schemas import Schema
from streams.worker.state.keys import HISTORY_MARK
from tests.integration.conftest import wait_for
from tests.integration.harness import Deployment, WorkerProcess
from tests.integration.workload import NETWORK

LIMIT = 256 * 1024


class ProbeTimes:
    """How long each of the worker's /ready answers takes, asked one after another in a thread meanwhile."""

    def __init__(self, worker: WorkerProcess) -> None:
        self.worker, self.seconds = worker, list[float]()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._probe, daemon=True)

    def __enter__(self) -> ProbeTimes:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.thread.join(10)

    def _probe(self) -> None:
        while not self.stopping.is_set():
            began = time.monotonic()
            try:
                with urllib.request.urlopen(f"{self.worker.url}/ready", timeout=5) as response:
                    response.read()
            except OSError:
                pass  # not answered within 5 s: counted as 5 s
            self.seconds.append(time.monotonic() - began)
            self.stopping.wait(0.05)  # often enough that even a fast burst is probed more than ten times


def test_thirty_thousand_sales_of_one_sku_in_one_burst_stop_nothing(deployment: Deployment) -> None:
    deployment.apply_network(NETWORK)
    worker = deployment.start_worker("w1")
    at = int(time.time() * 1000) - 120_000
    deployment.send_applied([Movement(Kind.RECEIPT, "big-receipt", "wms", "HOT", "s1", 100_000, at)])
    sales = [Movement(Kind.SALE, f"hot-{i}", "pos-1", "HOT", "s1", 1, at + 1 + i) for i in range(30_000)]
    with ProbeTimes(worker) as probes:  # while the burst is applied, the worker answers its probes at once
        client = ChannelClient("pos-1", deployment.bootstrap, settings=deployment.settings)
        try:
            for sale in sales:
                client.send(sale)
                deployment.sent[sale.key] = sale
            client.flush()
        finally:
            client.close()
        others = [Movement(Kind.RECEIPT, f"other-{i}", "wms", f"SKU-{i % 40:04d}", "w1", 3, at + i)
                  for i in range(400)]
        deployment.send_applied(others, timeout_s=240)  # every other SKU of the worker goes on
    assert len(probes.seconds) > 10 and max(probes.seconds) < 1.0, sorted(probes.seconds)[-5:]
    deployment.settle()

    stocks, _ = deployment.replay_ledger()
    assert stocks["HOT"].position("s1").on_hand == 100_000 - 30_000
    deployment.assert_outputs_match(stocks)
    registry = deployment.registry
    sizes = {topic: max((len(value) for value in deployment.read_raw(topic)), default=0)
             for topic in (registry.stock_changelog.name, registry.ledger.name, registry.positions.name,
                           registry.ats("web").name)}
    assert max(sizes.values()) <= LIMIT, sizes
    hot_records = [key for key, _, _, _ in deployment.messages(registry.stock_changelog.name)
                   if key is not None and key.startswith(b"HOT" + HISTORY_MARK)]
    assert len(hot_records) > 30_000  # one record per event it remembers, and bucket records
    assert worker.ready()
    assert "reading the inputs failed" not in worker.log.read_text()


def old_state(at: int) -> dict[str, Any]:
    """The stock table value an earlier version wrote for SKU OLD-1 (a SkuStockState holding everything): 10 at
    s1 after a receipt of 12 and a count, a hold of 2 for the web channel, an event id it remembers."""
    position = {"location": "s1", "on_hand": 10, "reserved": 2, "safety_stock": 0, "in_transit": 0, "version": 3,
                "counted_at": at - 10, "count_key": "wms:count-1", "safety_at": None}
    return {"sku": "OLD-1", "version": 3, "watermark": at, "floor": -1, "positions": [position],
            "seen": "\n".join([f"wms:receipt-1\t{at - 20}\tapplied", f"wms:count-1\t{at - 10}\tapplied",
                               f"web:hold-1\t{at}\taccepted"]),
            "deltas": {"s1": ""}, "transfers": [],
            "reservations": [{"channel": "web", "reservation_id": "order-1",
                              "parts": [{"location": "s1", "quantity": 2}], "expires_at": at + 3_600_000,
                              "placed_at": at}],
            "unconfirmed_ledger": {}}


def test_a_changelog_written_by_the_previous_version_is_recovered_and_converted(deployment: Deployment) -> None:
    deployment.apply_network(NETWORK)
    registry = deployment.registry
    at = int(time.time() * 1000) - 60_000
    # What the previous version left in the stock table's changelog (it wrote without transactions).
    old = deployment.codec.encode(Schema.SKU_STOCK_STATE, old_state(at))
    deployment.producer.produce(registry.stock_changelog.name, old, b"OLD-1",
                                partition=sku_partition("OLD-1", deployment.partitions))
    assert deployment.producer.flush(30) == 0
    worker = deployment.start_worker("w1")
    # Before any movement touches it, the query API answers from the old record.
    with urllib.request.urlopen(f"http://127.0.0.1:{worker.port}/skus/OLD-1/positions/s1", timeout=10) as response:
        answer = json.loads(response.read())
    assert (answer["on_hand"], answer["reserved"]) == (10, 2), answer
    moves = [Movement(Kind.RECEIPT, "receipt-1", "wms", "OLD-1", "s1", 12, at - 20),  # remembered: a duplicate
             Movement(Kind.SALE, "sale-1", "pos-1", "OLD-1", "s1", 1, at + 1),
             Movement(Kind.RESERVATION_RELEASED, "release-1", "web", "OLD-1", None, 0, at + 2,
                      reservation_id="order-1")]
    deployment.send(moves, record=False)

    def position() -> dict[str, int]:
        found = deployment.latest(registry.positions.name).get(b"OLD-1|s1")
        return dict(found["figures"]) if found else {}

    wait_for(lambda: position().get("on_hand") == 9 and position().get("reserved") == 0, 60,
             "the sale and the release applied to the converted state")
    ledger = [(v["event_id"], v["status"]) for _, v, _, _ in deployment.read(registry.ledger.name)]
    assert sorted(ledger) == [("release-1", "applied"), ("sale-1", "applied")]  # the re-sent receipt: nothing
    heads = {key: value for key, value, _, _ in deployment.messages(registry.stock_changelog.name) if key == b"OLD-1"}
    assert deployment.codec.decode(heads[b"OLD-1"])[0] == Schema.SKU_HEAD  # written in the new form
