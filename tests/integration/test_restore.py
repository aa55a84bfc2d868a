"""Restoring table partitions on the real broker: a worker taking partitions over reads their changelogs into its
store itself, from the offset its store holds everything up to; its own commits move that offset, so a worker
restarted on its own disk reads only what it lacks, and one on an empty disk reads everything and answers the
same."""

from __future__ import annotations

import json
import signal
import time
import urllib.request

from streams.domain import Kind, Movement
from tests.integration.conftest import wait_for
from tests.integration.harness import Deployment, WorkerProcess
from tests.integration.test_metrics import scrape
from tests.integration.workload import NETWORK, retail_workload


def restored(worker: WorkerProcess) -> float:
    """Changelog records the worker has read into its store since it started."""
    return sum(value for _, value in scrape(worker).get("stocksync_restored_records_total", []))


def test_a_worker_reads_only_the_changelog_its_store_lacks(deployment: Deployment) -> None:
    deployment.store = "rocksdb://"
    deployment.apply_network(NETWORK)
    first = deployment.start_worker("w1")
    deployment.send(retail_workload(3_000, skus=60, seed=11, expiring_after_ms=3_600_000), pack=10)
    deployment.settle()
    assert restored(first) == 0  # it wrote the whole changelog itself
    first.stop()

    again = deployment.start_worker("w1")  # its own disk: everything it committed is there
    assert restored(again) == 0
    at = int(time.time() * 1000)
    deployment.send_applied([Movement(Kind.RECEIPT, f"late-{i}", "wms", f"SKU-R{i}", "w1", 5, at) for i in range(20)])
    assert again.stop(signal.SIGKILL) == -signal.SIGKILL
    killed = deployment.start_worker("w1")
    # At most the last transaction, if the kill came between its commit and the store taking it.
    assert restored(killed) <= 25
    killed.stop()

    fresh = deployment.start_worker("w2")  # an empty disk: every partition's changelog is read whole
    assert restored(fresh) > 3 * 60  # every SKU's head and history records, and the partitions' offsets
    stocks, _ = deployment.replay_ledger()
    for sku, stock in stocks.items():  # what it restored is what the ledger says
        with urllib.request.urlopen(f"{fresh.url}/skus/{sku}/positions", timeout=10) as response:
            answered = json.loads(response.read())
        assert answered["version"] == stock.version, sku
        assert {p["location"]: p["on_hand"] for p in answered["positions"] if p["version"]} == \
            {location: p.on_hand for location, p in stock.positions.items()}, sku


def standby(worker: WorkerProcess) -> tuple[float, float]:
    """Changelog records the worker has written into its standby replicas, and those it has still to read."""
    samples = scrape(worker)
    written = sum(value for _, value in samples.get("stocksync_standby_records_total", []))
    remaining = sum(value for labels, value in samples.get("stocksync_recovery_remaining_records", [])
                    if labels.get("kind") == "standby")
    return written, remaining


def test_a_standby_replica_takes_a_killed_workers_partitions_over_without_reading_their_changelogs(
        deployment: Deployment) -> None:
    deployment.store = "rocksdb://"
    deployment.apply_network(NETWORK)
    first = deployment.start_worker("w1")
    second = deployment.start_worker("w2")
    deployment.send(retail_workload(3_000, skus=60, seed=12, expiring_after_ms=3_600_000), pack=10)
    deployment.settle()

    def caught_up(worker: WorkerProcess) -> bool:
        written, remaining = standby(worker)
        return written > 0 and remaining == 0

    # Each keeps a copy of the other's partitions (faust's assignor: one standby per partition, two workers).
    wait_for(lambda: caught_up(first) and caught_up(second), 60, "both workers' standby replicas caught up")
    assert first.stop(signal.SIGKILL) == -signal.SIGKILL
    at = int(time.time() * 1000)
    # One SKU of every partition moves: the survivor serves them all once they are in the ledger.
    deployment.send_applied([Movement(Kind.RECEIPT, f"after-{i}", "wms", f"SKU-S{i}", "w1", 5, at) for i in range(20)])
    assert restored(second) <= 25  # the standby had the rest: at most a transaction committed since its last read
    stocks, _ = deployment.replay_ledger()
    for sku, stock in stocks.items():
        with urllib.request.urlopen(f"{second.url}/skus/{sku}/positions", timeout=10) as response:
            answered = json.loads(response.read())
        assert answered["version"] == stock.version, sku
        assert {p["location"]: p["on_hand"] for p in answered["positions"] if p["version"]} == \
            {location: p.on_hand for location, p in stock.positions.items()}, sku
