"""`stocksync worker --processes 2` on the real broker: one parent, two worker processes sharing the partitions,
their API, readiness and metrics on the parent's port; a killed process is started again and nothing is lost or
doubled; SIGTERM stops them all, and a parent killed outright takes its processes with it."""

from __future__ import annotations

import json
import os
import signal
import urllib.error
import urllib.request
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from streams.domain import Kind, Movement
from streams.wire.partitioner import sku_partition
from tests.integration.conftest import free_ports, wait_for
from tests.integration.harness import Deployment
from tests.integration.workload import NETWORK


def get(port: int, path: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=20) as response:
            body = response.read()
            return response.status, json.loads(body) if path != "/metrics" else body.decode()
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A child that exited but was not yet reaped by its parent is a zombie: gone for this test's purpose.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


def receipts(skus: list[str], first: int, count: int) -> list[Movement]:
    return [Movement(Kind.RECEIPT, f"p-{n}", "wms", skus[n % len(skus)], "w1", 1 + n % 5, 1_000 + n)
            for n in range(first, first + count)]


def movements_by_process(port: int) -> dict[str, float]:
    _, text = get(port, "/metrics")
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name == "stocksync_movements":
            for sample in family.samples:
                if sample.name == "stocksync_movements_total":
                    process = sample.labels["process"]
                    totals[process] = totals.get(process, 0) + sample.value
    return totals


def test_two_processes_share_the_work_under_one_parent_that_restarts_one_killed(deployment: Deployment) -> None:
    deployment.apply_network(NETWORK)
    port = free_ports(3)
    # RocksDB: each process's own state directory, and warm copies of the other's partitions in it.
    parent = deployment.start_worker("parent", args=["--processes", "2"], port=port,
                                     env={"STOCKSYNC_STORE": "rocksdb://"})

    def owned() -> list[set[int]]:
        return [set(p.get("assigned_partitions", [])) for p in parent.status().get("processes", [])]

    # The group may take a second rebalance to give the process that joined last its share.
    wait_for(lambda: len(owned()) == 2 and all(owned()), 60, "both processes owning partitions")
    ones, twos = owned()
    assert not ones & twos and ones | twos == set(range(deployment.partitions))
    assert set(parent.status()["assigned_partitions"]) == ones | twos

    skus = [f"SKU-{n:04d}" for n in range(40)]
    first = receipts(skus, 0, 200)
    deployment.send(first)
    deployment.settle()
    stocks, _ = deployment.replay_ledger()
    deployment.assert_outputs_match(stocks)

    # The query API on the parent's port answers for a SKU of every partition, whichever process owns it.
    for partition in range(deployment.partitions):
        sku = next(s for s in skus if sku_partition(s, deployment.partitions) == partition)
        code, body = get(port, f"/skus/{sku}/positions")
        assert code == 200, body
        on_hand = {p["location"]: p["on_hand"] for p in body["positions"] if p["on_hand"]}
        assert on_hand == {"w1": stocks[sku].position("w1").on_hand}
    # Both processes' metrics on the parent's /metrics, each labelled: together every movement, once.
    counted = movements_by_process(port)
    assert set(counted) == {"1", "2"} and all(counted.values()) and sum(counted.values()) == len(first)

    # Each process keeps warm copies of the other's partitions: the table metrics tell them apart by role.
    def roles() -> set[tuple[str, str]]:
        found = set()
        for family in text_string_to_metric_families(get(port, "/metrics")[1]):
            if family.name == "stocksync_table_keys":
                found |= {(s.labels["process"], s.labels["role"]) for s in family.samples if s.value}
        return found

    wait_for(lambda: roles() == {("1", "active"), ("1", "standby"), ("2", "active"), ("2", "standby")}, 60,
             "each process's own partitions and standby copies in the table metrics")

    # One process killed outright: the parent starts it again, and the partitions end up owned once more.
    code, live = get(port, "/live")
    victim = live["processes"][0]["pid"]
    os.kill(victim, signal.SIGKILL)

    def restarted() -> bool:
        process: dict[str, Any] = get(port, "/live")[1]["processes"][0]
        return bool(process["restarts"] == 1 and process["running"] and process["pid"] != victim)

    wait_for(restarted, 30, "the killed process started again")
    wait_for(parent.ready, 120, "both processes ready again")
    second = receipts(skus, 200, 100)
    deployment.send(second)
    deployment.settle()
    stocks, _ = deployment.replay_ledger()  # nothing doubled (it raises) ...
    deployment.assert_outputs_match(stocks)  # ... nor lost
    assert sum(stocks[s].position("w1").on_hand for s in skus) == sum(m.quantity for m in first + second)
    assert 'stocksync_worker_process_restarts_total{process="1"} 1.0' in get(port, "/metrics")[1]

    # SIGTERM: both processes stop cleanly, then the parent, with one line saying so.
    pids = [p["pid"] for p in get(port, "/live")[1]["processes"]]
    assert parent.stop() == 0
    assert not any(alive(pid) for pid in pids)
    log = parent.log.read_text()
    assert "stocksync worker stopped after" in log and "2 processes, 1 restarts" in log
    assert "Traceback" not in log


def test_a_parent_killed_outright_takes_its_worker_processes_with_it(deployment: Deployment) -> None:
    deployment.apply_network(NETWORK)
    port = free_ports(3)
    parent = deployment.start_worker("parent", args=["--processes", "2"], port=port, wait=False)

    def both_running() -> bool:
        try:
            return all(p["running"] for p in get(port, "/live")[1]["processes"])
        except OSError:
            return False

    wait_for(both_running, 60, "both processes started")
    pids = [p["pid"] for p in get(port, "/live")[1]["processes"]]
    parent.stop(signal.SIGKILL)
    wait_for(lambda: not any(alive(pid) for pid in pids), 60, "the worker processes gone with their parent")
