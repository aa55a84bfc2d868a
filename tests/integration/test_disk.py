"""A worker whose state directory runs short of room, on the real broker: it takes no input while the disk is short
(saying so in one line, not ready, nothing read past), and once room comes back it applies what waited, once."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.domain import Kind, Movement
from streams.worker.flow.batch import EXIT_LOCAL_STORE
from tests.integration.conftest import wait_for
from tests.integration.harness import Deployment, WorkerProcess
from tests.integration.workload import NETWORK

DISK_MB = 48  # the worker's own small filesystem
MINIMUM_MB = 16  # the worker takes no input below this much free space


@pytest.fixture
def small_disk(deployment: Deployment) -> Iterator[Path]:
    """A filesystem of DISK_MB for the worker "one" (tmpfs, made for the test: it needs root)."""
    path = deployment.data_dir("one")
    path.mkdir(parents=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a small filesystem for the worker's state needs root")
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK_MB}m", "tmpfs", str(path)],
                          capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"no small filesystem can be mounted here: {made.stderr.strip()}")
    try:
        yield path
    finally:
        for worker in deployment.workers:  # off the filesystem before it goes
            worker.stop()
        subprocess.run(["umount", "-l", str(path)], check=False)


def ready_page(worker: WorkerProcess) -> dict[str, object]:
    try:
        with urllib.request.urlopen(f"{worker.url}/ready", timeout=2) as response:
            return dict(json.loads(response.read()))
    except urllib.error.HTTPError as exc:  # 503: not ready, with the reasons
        return dict(json.loads(exc.read()))


def receipt(n: int, skus: int = 5) -> Movement:
    return Movement(Kind.RECEIPT, f"disk-r{n}", "wms", f"DISK-{n % skus}", "w1", 1, 1_700_000_000_000 + n)


def ledgered(deployment: Deployment) -> list[str]:
    return [v["event_id"] for _, v, _, _ in deployment.read(deployment.registry.ledger.name)]


def test_a_worker_short_of_disk_takes_no_input_until_there_is_room_and_loses_nothing(
        deployment: Deployment, small_disk: Path) -> None:
    deployment.apply_network(NETWORK)
    worker = deployment.start_worker("one", env={"STOCKSYNC_STORE": "rocksdb://",
                                                 "STOCKSYNC_MIN_FREE_DISK_MB": str(MINIMUM_MB)})
    deployment.send_applied([receipt(n) for n in range(10)])

    # Something else fills the disk until less than the minimum is free: the worker says it is not ready.
    filler = small_disk / "filler"
    stat = os.statvfs(small_disk)
    with open(filler, "wb") as out:
        out.write(b"\0" * (stat.f_bavail * stat.f_frsize - (MINIMUM_MB // 2) * 2**20))
    wait_for(lambda: not ready_page(worker)["ready"], 30, "the worker not ready")
    reasons = ready_page(worker)["reasons"]
    assert any("no input taken" in r and "MiB free" in r for r in reasons), reasons  # type: ignore[attr-defined]
    # Input arriving now waits: the worker reads it, says once that it takes none, and applies none of it.
    deployment.send([receipt(n) for n in range(10, 30)])
    wait_for(lambda: "taking no input until there is room" in worker.log.read_text(), 30, "the worker to say so")
    assert not {f"disk-r{n}" for n in range(10, 30)} & set(ledgered(deployment))
    assert worker.log.read_text().count("taking no input until there is room") == 1

    filler.unlink()  # room again
    wait_for(lambda: bool(ready_page(worker)["ready"]), 60, "the worker ready again")
    wait_for(lambda: {f"disk-r{n}" for n in range(30)} <= set(ledgered(deployment)), 60, "every receipt applied")
    events = ledgered(deployment)
    assert len(events) == len(set(events)) == 30  # each once
    assert "has room again: taking input" in worker.log.read_text()
    deployment.settle()
    stocks, _ = deployment.replay_ledger()
    assert {sku: stock.position("w1").on_hand for sku, stock in stocks.items()} == {
        f"DISK-{i}": 6 for i in range(5)}


def test_a_disk_that_fills_during_a_batch_stops_the_worker_before_it_applies_anything_twice(
        deployment: Deployment, small_disk: Path) -> None:
    """No room kept (minimum 0) and the disk filled to the last byte: the batch's transaction commits, its local
    write fails, and the worker exits at once (going on, it would apply that input again on a store that lacks
    it). Started again once there is room, it restores the partition from its changelog: every receipt applied
    once."""
    deployment.apply_network(NETWORK)
    settings = {"STOCKSYNC_STORE": "rocksdb://", "STOCKSYNC_MIN_FREE_DISK_MB": "0"}
    worker = deployment.start_worker("one", env=settings)
    deployment.send_applied([receipt(n, 100) for n in range(100)])

    filler = small_disk / "filler"
    with open(filler, "wb") as out:
        try:
            while True:
                out.write(b"\0" * 2**20)
                out.flush()
        except OSError:
            pass  # the disk is full
    deployment.send([receipt(n, 100) for n in range(100, 1_000)])  # more than RocksDB's log has room for
    assert worker.proc.wait(60) == EXIT_LOCAL_STORE, worker.log.read_text()[-3000:]
    assert "its local store cannot be written" in worker.log.read_text()

    filler.unlink()
    deployment.start_worker("one", env=settings)
    wait_for(lambda: {f"disk-r{n}" for n in range(1_000)} <= set(ledgered(deployment)), 60,
             "every receipt applied")
    deployment.settle()
    events = ledgered(deployment)
    assert len(events) == len(set(events)) == 1_000  # each once
    stocks, _ = deployment.replay_ledger()
    assert {sku: stock.position("w1").on_hand for sku, stock in stocks.items()} == {
        f"DISK-{i}": 10 for i in range(100)}
