"""Transfer suggestions on the broker: a store that drops below its minimum gets a suggestion (on the compacted
topic, and from any worker's API) to be refilled from the nearest location with units to spare; a receipt that
refills it withdraws the suggestion."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from typing import Any

from streams.domain import Kind, Movement
from tests.integration.conftest import wait_for
from tests.integration.harness import Deployment, WorkerProcess
from tests.integration.workload import NETWORK


def get(worker: WorkerProcess, path: str) -> Any:
    with urllib.request.urlopen(f"{worker.url}{path}", timeout=10) as response:
        return json.loads(response.read())


def test_a_store_below_its_minimum_gets_a_suggestion_that_is_withdrawn_once_refilled(
        deployment: Deployment) -> None:
    deployment.apply_network({**NETWORK, "stock_levels": [{"kind": "store", "minimum": 3, "target": 8}]})
    worker = deployment.start_worker("w1")
    at = int(time.time() * 1000) - 60_000
    deployment.send_applied([
        Movement(Kind.RECEIPT, "r-w1", "wms", "SKU-T", "w1", 20, at),  # Kassel
        Movement(Kind.RECEIPT, "r-w2", "wms", "SKU-T", "w2", 20, at),  # Leipzig: nearer Berlin (s1)
        Movement(Kind.RECEIPT, "r-s1", "wms", "SKU-T", "s1", 5, at),
    ])
    assert get(worker, "/skus/SKU-T/transfer-suggestions")["suggestions"] == []
    deployment.send_applied([Movement(Kind.SALE, "sale-s1", "pos-1", "SKU-T", "s1", 4, at + 1_000)])

    def suggested() -> list[dict[str, Any]]:
        return list(get(worker, "/skus/SKU-T/transfer-suggestions")["suggestions"])

    wait_for(lambda: len(suggested()) == 1, 30, "a suggestion for s1")
    (suggestion,) = suggested()
    assert (suggestion["source"], suggestion["destination"], suggestion["units"]) == ("w2", "s1", 7)
    assert "s1 has 1 (minimum 3, target 8)" in suggestion["reason"]
    assert get(worker, "/locations/w2/transfer-suggestions")["suggestions"][0]["role"] == "source"
    assert get(worker, "/locations/s1/transfer-suggestions")["suggestions"][0]["role"] == "destination"
    for asked in (["SKU-T"], ["--location", "s1"]):  # the same answers through the CLI
        done = subprocess.run([sys.executable, "-m", "streams.cli", "query", "--url", worker.url,
                               "transfer-suggestions", *asked], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert [s["units"] for s in json.loads(done.stdout)["suggestions"]] == [7]
    published = deployment.latest(deployment.registry.transfer_suggestions.name)
    assert list(published) == [b"SKU-T|s1"]

    deployment.send_applied([Movement(Kind.RECEIPT, "r-s1-2", "wms", "SKU-T", "s1", 10, at + 2_000)])
    wait_for(lambda: suggested() == [], 30, "the suggestion withdrawn")
    assert deployment.latest(deployment.registry.transfer_suggestions.name) == {}  # a tombstone follows it


DAY_MS = 24 * 3600 * 1000


def test_a_level_in_days_of_cover_follows_the_sales_rate_and_the_rate_survives_a_new_worker(
        deployment: Deployment) -> None:
    """Stores keep 2 to 6 days of their last week's sales. s1 sells 4 a day for six days: 24 in 7 days is 3.43 a
    day, so its minimum is 7 units and its target 21; it has 6 left. A worker that rebuilds the SKU from the
    changelog alone knows the rate: one more sale makes it 25 in 7 days (min 8, target 22; 5 left)."""
    deployment.apply_network({**NETWORK, "sales_window_days": 7,
                              "stock_levels": [{"kind": "store", "minimum_days": 2, "target_days": 6}]})
    first = deployment.start_worker("w1")
    start = int(time.time() * 1000) - 6 * DAY_MS - 3_600_000
    deployment.send_applied([Movement(Kind.RECEIPT, "r-w1", "wms", "SKU-D", "w1", 40, start),
                             Movement(Kind.RECEIPT, "r-w2", "wms", "SKU-D", "w2", 40, start),
                             Movement(Kind.RECEIPT, "r-s1", "wms", "SKU-D", "s1", 30, start)]
                            + [Movement(Kind.SALE, f"sale-{day}", "pos-1", "SKU-D", "s1", 4, start + day * DAY_MS)
                               for day in range(6)])

    def suggested(worker: WorkerProcess) -> list[dict[str, Any]]:
        return list(get(worker, "/skus/SKU-D/transfer-suggestions")["suggestions"])

    wait_for(lambda: len(suggested(first)) == 1, 30, "a suggestion for s1")
    (suggestion,) = suggested(first)
    assert (suggestion["source"], suggestion["destination"], suggestion["units"]) == ("w2", "s1", 15)
    assert "s1 has 6 (minimum 7, target 21; sells 3.43/day over 7 days)" in suggestion["reason"]

    first.stop()
    second = deployment.start_worker("w2")  # an empty disk: the SKU comes back from the changelog
    deployment.send_applied([Movement(Kind.SALE, "sale-6", "pos-1", "SKU-D", "s1", 1, start + 6 * DAY_MS)])
    wait_for(lambda: [s["units"] for s in suggested(second)] == [17], 30, "the suggestion grown by the sale")
    assert "s1 has 5 (minimum 8, target 22; sells 3.57/day over 7 days)" in suggested(second)[0]["reason"]
    assert get(second, "/skus/SKU-D/positions/s1")["sales_per_day"] == round(25 / 7, 3)
    rates = {p["location"]: p["sales_per_day"] for p in get(second, "/skus/SKU-D/positions")["positions"]}
    assert rates == {"s1": round(25 / 7, 3), "s2": 0, "w1": 0, "w2": 0}
