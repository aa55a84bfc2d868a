"""The soak: the retail workload at a steady rate through two workers for a long time (an hour by default), each
worker killed once along the way and restarted on its own disk, and every interval what could grow without
bound sampled: each worker's RSS (and how much of it is RocksDB's memtables and block cache, which fill up to
their configured bound), open files and state directory, the changelog's records, the input lag, and the
end-to-end latency p50/p99 of that interval (from the workers' own histograms). At the end the chaos suite's check:
nothing lost, applied twice, mismatched or gone back. Prints JSON.

    python -m tests.chaos.soak [--minutes 60] [--interval-s 600] [--rate 100] [--skus 2000] [--seed 1]

Uses STOCKSYNC_/KAFKA_BOOTSTRAP_SERVERS, else starts a local broker. The test suite runs a short form
(tests/chaos/test_soak.py)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from streams.dev.cluster import start_cluster
from streams.kafka.clients import end_offsets
from streams.settings import load_settings
from tests.chaos.run import verdict
from tests.integration.harness import Deployment, WorkerProcess
from tests.integration.workload import NETWORK, retail_workload

LATENCY = "stocksync_ingest_to_publish_seconds"
TABLE_MEMORY = "stocksync_table_memory_bytes"


class Soak:
    def __init__(self, servers: str, tmp: Path, *, seconds: float, interval_s: float, rate: float, skus: int,
                 seed: int) -> None:
        self.seconds, self.interval_s, self.rate = seconds, interval_s, rate
        self.deployment = Deployment(servers, f"soak-{seed}-{uuid.uuid4().hex[:6]}", tmp, store="rocksdb://")
        self.movements = retail_workload(int(rate * seconds), skus=skus, seed=seed, expiring_after_ms=60_000)
        self.sent = 0
        self.kills: list[dict[str, Any]] = []
        self.sender_failed: list[str] = []

    # --- the load ----------------------------------------------------------------------------------------------
    def _send_steadily(self, began: float, stop: threading.Event) -> None:
        """The workload spread evenly over the run (`rate` movements a second, and the workload's re-sends and late
        uploads on top), in 0.1 s slices, whatever the workers are going through."""
        pace = len(self.movements) / self.seconds
        try:
            while not stop.is_set() and self.sent < len(self.movements):
                due = min(len(self.movements), int((time.monotonic() - began) * pace))
                if due > self.sent:
                    self.deployment.send(self.movements[self.sent:due], pack=10)
                    self.sent = due
                stop.wait(0.1)
        except Exception as exc:  # noqa: BLE001 - said in the result, not lost in a thread
            self.sender_failed.append(repr(exc))

    # --- what is sampled ---------------------------------------------------------------------------------------
    def _latency_buckets(self, workers: list[WorkerProcess]) -> dict[float, float]:
        """The ingest-to-publish histogram's cumulative buckets, summed over the running workers."""
        buckets: dict[float, float] = {}
        for worker in workers:
            for sample in _scrape(worker):
                if sample.name == f"{LATENCY}_bucket":
                    bound = float(sample.labels["le"])
                    buckets[bound] = buckets.get(bound, 0.0) + sample.value
        return buckets

    def _sample(self, elapsed: float, before: dict[float, float]) -> tuple[dict[str, Any], dict[float, float]]:
        d = self.deployment
        running = [w for w in d.workers if w.proc.poll() is None]
        now = self._latency_buckets(running)
        # A restarted worker's histogram starts again from zero: its part of the difference is left out.
        delta = {bound: max(0.0, count - before.get(bound, 0.0)) for bound, count in now.items()}
        workers = {}
        for worker in running:
            rss = _rss_mb(worker.proc.pid)
            # RocksDB's memtables and block cache fill up to their configured bound as the worker runs: what
            # could grow without bound is the rest.
            rocksdb = round(sum(s.value for s in _scrape(worker) if s.name == TABLE_MEMORY) / 1e6, 1)
            workers[worker.name] = {"rss_mb": rss, "rocksdb_mb": rocksdb,
                                    "rss_beyond_rocksdb_mb": None if rss is None else round(rss - rocksdb, 1),
                                    "open_files": _open_files(worker.proc.pid),
                                    "state_mb": _size_mb(d.data_dir(worker.name))}
        changelog = d.registry.stock_changelog.name
        return {"at_s": round(elapsed), "sent": self.sent, "workers": workers,
                "changelog_records": sum(end_offsets(d.kafka, [changelog]).values()),
                "input_lag": sum(d.input_lag().values()),
                "latency_ms": {"p50": _quantile(delta, 0.5), "p99": _quantile(delta, 0.99)}}, now

    # --- the run -----------------------------------------------------------------------------------------------
    def go(self) -> dict[str, Any]:
        d = self.deployment
        result: dict[str, Any] = {"benchmark": "soak", "seconds": self.seconds, "rate": self.rate, "lost": 0,
                                  "double_counted": 0, "mismatched": 0, "went_back": 0, "problems": []}
        try:
            d.apply_network(NETWORK)
            workers = [d.start_worker("w1"), d.start_worker("w2")]
            began = time.monotonic()
            stop = threading.Event()
            sender = threading.Thread(target=self._send_steadily, args=(began, stop), daemon=True)
            sender.start()
            kill_at = {self.seconds / 3: workers[0], 2 * self.seconds / 3: workers[1]}
            intervals, before = [], self._latency_buckets(workers)
            next_sample = self.interval_s
            while (elapsed := time.monotonic() - began) < self.seconds:
                for at, victim in sorted(kill_at.items(), key=lambda kv: kv[0]):
                    if elapsed >= at:
                        del kill_at[at]
                        killed = time.monotonic()
                        victim.stop(signal.SIGKILL)
                        d.workers.remove(victim)
                        d.start_worker(victim.name)  # on its own disk; the load goes on meanwhile
                        self.kills.append({"worker": victim.name, "at_s": round(at),
                                           "ready_after_s": round(time.monotonic() - killed, 1)})
                if elapsed >= next_sample:
                    sample, before = self._sample(elapsed, before)
                    intervals.append(sample)
                    next_sample += self.interval_s
                time.sleep(0.2)
            stop.set()
            sender.join(60)
            d.send(self.movements[self.sent:], pack=10)  # what the pace had not reached (none at a steady rate)
            d.settle(300)
            sample, _ = self._sample(time.monotonic() - began, before)
            intervals.append(sample)
            result.update({"intervals": intervals, "kills": self.kills})
            if self.sender_failed:
                result["problems"].append(f"sending failed: {self.sender_failed[0]}")
            verdict(d, result)
            return result
        finally:
            d.stop_all()


def _scrape(worker: WorkerProcess) -> list[Any]:
    """Every sample a worker's /metrics has now (none if it does not answer)."""
    try:
        with urllib.request.urlopen(f"{worker.url}/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return []
    return [sample for family in text_string_to_metric_families(text) for sample in family.samples]


def _rss_mb(pid: int) -> float | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        return round(int(next(line for line in status.splitlines() if line.startswith("VmRSS")).split()[1]) / 1024, 1)
    except (OSError, StopIteration):
        return None


def _open_files(pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def _size_mb(path: Path) -> float:
    return round(sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6, 1) if path.exists() else 0.0


def _quantile(buckets: dict[float, float], q: float) -> float | None:
    """The upper bound of the histogram bucket that holds the `q` quantile, in ms (None: nothing observed)."""
    total = buckets.get(float("inf"), 0.0)
    if total <= 0:
        return None
    for bound in sorted(buckets):
        if buckets[bound] >= q * total:
            return round(bound * 1000) if bound != float("inf") else None
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--interval-s", type=float, default=600.0)
    parser.add_argument("--rate", type=float, default=100.0, help="movements per second")
    parser.add_argument("--skus", type=int, default=2_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="stocksync-soak-") as tmp:
        cluster = start_cluster(load_settings(), Path(tmp) / "kafka")
        try:
            result = Soak(cluster.bootstrap_servers, Path(tmp), seconds=args.minutes * 60,
                          interval_s=args.interval_s, rate=args.rate, skus=args.skus, seed=args.seed).go()
        finally:
            cluster.stop()
    print(json.dumps(result, indent=2))
    sys.exit(1 if result["problems"] else 0)


if __name__ == "__main__":
    main()
