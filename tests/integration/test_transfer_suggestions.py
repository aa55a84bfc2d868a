"""Transfer suggestions on the broker: a store that drops below its minimum gets a suggestion (on the compacted
topic, and from any worker's API) to be refilled from the nearest location with units to spare; a receipt that
refills it withdraws the suggestion."""

from __future__ import annotations

import json
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
    published = deployment.latest(deployment.registry.transfer_suggestions.name)
    assert list(published) == [b"SKU-T|s1"]

    deployment.send_applied([Movement(Kind.RECEIPT, "r-s1-2", "wms", "SKU-T", "s1", 10, at + 2_000)])
    wait_for(lambda: suggested() == [], 30, "the suggestion withdrawn")
    assert deployment.latest(deployment.registry.transfer_suggestions.name) == {}  # a tombstone follows it
