"""The chaos harness: a seeded retail workload through a local three-node cluster and several workers while
faults are injected, then, once everything has settled, every position, every channel feed and the ledger
checked against the domain's replay of every movement the producers had acknowledged. Prints JSON.

    python -m tests.chaos.run [--runs 20] [--faults all|kill_worker,pause_worker,...] [--movements 6000]

Workers keep their state in RocksDB, as in production. Faults: kill_worker (SIGKILL, restarted on its own disk),
wipe_worker (SIGKILL, restarted on an emptied disk: the state comes back from the changelog alone), term_worker
(SIGTERM, restarted on its own disk), pause_worker
(SIGSTOP past the session timeout while another worker takes over, then SIGCONT: the zombie), scale (1 -> 3 -> 1
workers), kill_broker (SIGKILL of the ledger's partition leader, restarted later), pause_broker (SIGSTOP of a
node, then SIGCONT), wrong_partitioner (movements packed on a partition their SKU does not live in),
poison (undecodable messages); and faults of one worker's links to every broker, through Toxiproxy: cut_worker
(a blackhole past the session timeout while another worker takes over, then healed: fenced, it must rejoin and
never write as a zombie), slow_links (300 ms +- 200 ms each way), reset_links (every connection reset 2 s after it
opens), slow_restore (an emptied disk restored from the changelog through a 256 KB/s link). Duplicate sends and
late, reordered movements are in every workload, and orders
(carts of SKUs on different partitions, some sent twice): every order must be decided once and exactly the
accepted orders' lines held.
A mismatch is a bug to fix, never a tolerance: the summary counts them and `failed` is then true.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException

from streams.dev.local_kafka import LocalCluster
from streams.domain import Movement, SkuStock
from streams.settings import load_settings
from streams.wire.partitioner import partition_for, sku_partition
from streams.wire.records import movement_to_record
from streams.wire.schemas import Schema
from tests.chaos.toxiproxy import Toxiproxy, fetch_toxiproxy
from tests.integration.conftest import wait_for
from tests.integration.harness import Deployment, WorkerProcess
from tests.integration.workload import NETWORK, ORDER_PREFIX, order_workload, retail_workload

FAULTS = ("kill_worker", "wipe_worker", "term_worker", "pause_worker", "scale", "kill_broker", "pause_broker",
          "wrong_partitioner", "poison", "cut_worker", "slow_links", "reset_links", "slow_restore")
# Faults of a worker's links to the brokers, injected by Toxiproxy (the cluster's proxied listeners).
NETWORK_FAULTS = ("cut_worker", "slow_links", "reset_links", "slow_restore")
PROXY_SLOTS = 4  # workers share a slot's proxies only when more than four have been started
SESSION_TIMEOUT_S = 6.0  # the harness's workers (Deployment.env)


class WorkersCrashed(Exception):
    """No worker is left running: stocksync's failure (a worker must survive any fault), not the harness's."""


class Run:
    """One chaos run on `cluster`: its deployment, the faults injected and what they cost."""

    def __init__(self, cluster: LocalCluster, tmp: Path, seed: int, faults: list[str], movements: int,
                 proxy: Toxiproxy | None = None) -> None:
        self.cluster, self.rnd, self.faults, self.proxy = cluster, random.Random(seed), faults, proxy
        if proxy is None and set(faults) & set(NETWORK_FAULTS):
            raise ValueError(f"{sorted(set(faults) & set(NETWORK_FAULTS))} need a Toxiproxy and proxy slots")
        self.slots: dict[str, int] = {}  # worker name -> its proxy slot
        tmp.mkdir(parents=True, exist_ok=True)
        self.deployment = Deployment(cluster.bootstrap_servers, f"chaos-{seed}-{uuid.uuid4().hex[:6]}", tmp,
                                     replication_factor=3, store="rocksdb://")
        self.movements = retail_workload(movements, skus=60, seed=seed, expiring_after_ms=60_000)
        self.orders = order_workload(max(8, movements // 150), skus=60, seed=seed)
        self.orders_sent: set[tuple[str, str]] = set()
        self.injected: list[str] = []
        self.recoveries_s: list[float] = []
        self.caught_up_s: list[float] = []
        self.rss_mb: list[float] = []
        self.poison = 0
        self.next_worker = 0

    # --- workers ---------------------------------------------------------------------------------------------
    def start_worker(self, name: str | None = None) -> WorkerProcess:
        """A new worker on a new disk, or the worker `name` again on whatever its disk holds."""
        if name is None:
            self.next_worker += 1
            name = f"w{self.next_worker}"
        if self.proxy is None:
            return self.deployment.start_worker(name)
        slot = self.slots.setdefault(name, (int(name[1:]) - 1) % self.cluster.proxy_slots)
        return self.deployment.start_worker(
            name, env={"STOCKSYNC_BOOTSTRAP_SERVERS": self.cluster.slot_bootstrap_servers(slot)})

    def restart(self, victim: WorkerProcess, sig: int, wipe: bool = False) -> None:
        """Stop `victim` with `sig`, empty its disk if `wipe`, start it again; time kill -> ready and kill -> the
        inputs consumed again (the harness sends nothing meanwhile, so the lag left is what the kill cost)."""
        started = time.monotonic()
        victim.stop(sig)
        if wipe:
            shutil.rmtree(self.deployment.data_dir(victim.name), ignore_errors=True)
        self.start_worker(victim.name)
        self.recoveries_s.append(round(time.monotonic() - started, 1))
        wait_for(lambda: not self.deployment.input_lag(), 180, "the inputs consumed after a restart", 0.5)
        self.caught_up_s.append(round(time.monotonic() - started, 1))

    def running(self) -> list[WorkerProcess]:
        return [w for w in self.deployment.workers if w.proc.poll() is None]

    def sample_rss(self) -> None:
        for worker in self.running():
            try:
                status = Path(f"/proc/{worker.proc.pid}/status").read_text()
                kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS"))
                self.rss_mb.append(round(kb / 1024, 1))
            except (OSError, StopIteration):
                pass

    # --- faults ----------------------------------------------------------------------------------------------
    def inject(self, fault: str) -> None:
        d = self.deployment
        if not self.running():
            raise WorkersCrashed("every worker has exited: " + "; ".join(
                f"{w.name} exited with {w.proc.returncode}" for w in d.workers))
        victim = self.rnd.choice(self.running())
        if fault in ("kill_worker", "wipe_worker", "term_worker"):
            self.restart(victim, signal.SIGTERM if fault == "term_worker" else signal.SIGKILL,
                         wipe=fault == "wipe_worker")
        elif fault == "pause_worker":
            victim.proc.send_signal(signal.SIGSTOP)
            try:
                if len(self.running()) == 1:
                    self.start_worker()  # takes the partitions over once the paused one's session expires
                time.sleep(SESSION_TIMEOUT_S + 4)  # the fault is time itself: a pause longer than the session
            finally:
                victim.proc.send_signal(signal.SIGCONT)
        elif fault == "scale":
            extra = [self.start_worker() for _ in range(2)]
            self.send_some()
            for worker in extra:
                worker.stop(signal.SIGTERM)
        elif fault == "kill_broker":
            metadata = d.admin.list_topics(d.registry.ledger.name, timeout=10).topics[d.registry.ledger.name]
            node = self.cluster.node(metadata.partitions[0].leader)
            node.kill()
            try:
                self.send_some()  # the producers go on with the two replicas left
            finally:
                self.cluster.start_node(node.node_id)
        elif fault == "pause_broker":
            metadata = d.admin.list_topics(d.registry.ledger.name, timeout=10).topics[d.registry.ledger.name]
            node = self.cluster.node(metadata.partitions[0].leader)
            assert node.pid is not None
            os.kill(node.pid, signal.SIGSTOP)
            try:
                # The fault is time itself: hung past the controller's broker session (9 s), while the workers
                # commit. (The harness's own producer would wait out its request timeout: it sends afterwards.)
                time.sleep(12)
            finally:
                os.kill(node.pid, signal.SIGCONT)
        elif fault == "wrong_partitioner":
            chunk = self.take(40)
            for m in chunk:  # one movement each, on the partition after its SKU's (a client hashing otherwise)
                wrong = (sku_partition(m.sku, d.partitions) + 1) % d.partitions
                d.producer.produce(d.topic_for(m), d.codec.encode(Schema.MOVEMENT, movement_to_record(m)),
                                   m.sku.encode(), partition=wrong)
                d.sent[m.key] = m
            assert d.producer.flush(30) == 0
        elif fault in NETWORK_FAULTS:
            self.network_fault(fault, victim)
        elif fault == "poison":
            for _ in range(5):
                d.send_raw(d.registry.sales("pos-1").name, b"SKU-0001", os.urandom(self.rnd.randint(1, 300)))
                self.poison += 1
        self.injected.append(fault)
        self.sample_rss()

    def network_fault(self, fault: str, victim: WorkerProcess) -> None:
        """A fault of `victim`'s links to every broker (its slot's proxies), the others' links untouched."""
        assert self.proxy is not None
        slot = self.slots[victim.name]
        if fault == "cut_worker":
            # A blackhole longer than the session: nothing arrives, nothing is refused. Another worker takes the
            # partitions over and fences the victim's transactions; healed, the victim must rejoin, never write
            # as a zombie.
            if len(self.running()) == 1:
                self.start_worker()
            toxic = self.proxy.toxic(slot, "timeout", timeout=0)
            try:
                self.send_some()
                time.sleep(max(0.0, SESSION_TIMEOUT_S + 6))
            finally:
                self.proxy.heal(slot, toxic)
            wait_for(victim.ready, 180, f"{victim.name} ready again after its links came back", 0.5)
        elif fault == "slow_links":
            toxic = self.proxy.toxic(slot, "latency", latency=300, jitter=200)
            try:
                self.send_some()
                wait_for(lambda: not self.deployment.input_lag(), 180, "the inputs consumed over slow links", 0.5)
            finally:
                self.proxy.heal(slot, toxic)
        elif fault == "reset_links":
            # Every connection reset two seconds after it opens: mid-fetch, mid-transaction, mid-commit.
            toxic = self.proxy.toxic(slot, "reset_peer", timeout=2_000)
            try:
                self.send_some()
                time.sleep(8)
            finally:
                self.proxy.heal(slot, toxic)
        elif fault == "slow_restore":
            # The victim's disk emptied: its state comes back from the changelog through a 256 KB/s link.
            toxic = self.proxy.toxic(slot, "bandwidth", rate=256)
            try:
                self.restart(victim, signal.SIGKILL, wipe=True)
            finally:
                self.proxy.heal(slot, toxic)

    # --- the workload ----------------------------------------------------------------------------------------
    def take(self, n: int) -> list[Movement]:
        taken, self.movements = self.movements[:n], self.movements[n:]
        return taken

    def send_some(self) -> None:
        self.deployment.send(self.take(max(1, len(self.movements) // 4)), pack=10)
        self.send_orders(max(1, len(self.orders) // 4))

    def send_orders(self, n: int) -> None:
        """Orders (carts of SKUs on different partitions) as any channel sends them; one in four twice."""
        d = self.deployment
        sending, self.orders = self.orders[:n], self.orders[n:]
        for channel, request in sending:
            key = request["order_id"].encode()
            value = d.codec.encode(Schema.ORDER_REQUEST, request)
            for _ in range(2 if self.rnd.random() < 0.25 else 1):
                d.producer.produce(d.registry.sales(channel).name, value, key,
                                   partition=partition_for(key, d.partitions))
            self.orders_sent.add((channel, request["order_id"]))
        assert d.producer.flush(30) == 0

    def order_problems(self, stocks: dict[str, SkuStock]) -> list[str]:
        """Every order sent decided, the same decision each time it was told, and exactly the accepted orders'
        lines held: no order half held, no hold left over."""
        d = self.deployment
        decisions: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for channel in sorted({c for c, _ in self.orders_sent}):
            for _, record, _, _ in d.read(d.registry.replies(channel).name):
                if "order_id" in record:
                    decisions.setdefault((channel, record["order_id"]), []).append(record)
        problems = []
        undecided = sorted(self.orders_sent - set(decisions))
        if undecided:
            problems.append(f"{len(undecided)} orders never decided, e.g. {undecided[:3]}")
        told_twice = [o for o, told in decisions.items() if any(r != told[0] for r in told)]
        if told_twice:
            problems.append(f"{len(told_twice)} orders decided differently when told again, e.g. {told_twice[:3]}")
        held = {(r.channel, r.reservation_id) for stock in stocks.values() for r in stock.open_reservations()
                if r.reservation_id.startswith(ORDER_PREFIX)}
        accepted = {(channel, line["reservation_id"]) for (channel, _), told in decisions.items() if told[0]["accepted"]
                    for line in told[0]["lines"]}
        if held != accepted:
            problems.append(f"holds not those of the accepted orders: held only {sorted(held - accepted)[:3]}, "
                            f"accepted but not held {sorted(accepted - held)[:3]}")
        return problems

    def go(self) -> dict[str, Any]:
        d = self.deployment
        started = time.monotonic()
        result: dict[str, Any] = {"faults": self.injected, "lost": 0, "double_counted": 0, "mismatched": 0,
                                  "went_back": 0, "problems": []}
        try:
            try:
                d.apply_network(NETWORK)
                self.start_worker()
                schedule = list(self.faults)
                self.rnd.shuffle(schedule)
                for fault in schedule:
                    self.send_some()
                    self.inject(fault)
                d.send(self.movements, pack=10)
                self.movements = []
                self.send_orders(len(self.orders))
                d.settle(300)
                result["sent_again"] = send_again_what_came_too_early(d)
            except WorkersCrashed as exc:
                result["problems"].append(str(exc)[:2000])
                result["crashed"] = 1
                return result
            except (AssertionError, KafkaException) as exc:  # the harness could not drive or settle the run (its
                # own Kafka calls failed past their retries): no verdict on stocksync, unless settling found an
                # event applied twice
                if "written twice" in str(exc):
                    result["double_counted"] = 1
                    result["problems"].append(str(exc)[:4000])
                    return result
                result["problems"].append(f"harness: {exc!r}"[:2000])
                result["harness_error"] = 1
                return result
            self.sample_rss()
            stocks = verdict(d, result, allowed_dead=("not_avro", "unknown_schema", "schema_violation",
                                                      "insufficient_in_state"))
            if stocks is None:
                return result
            order_problems = self.order_problems(stocks)
            result["problems"] += order_problems
            result["orders_half_held_or_undecided"] = int(bool(order_problems))
            result.update({"orders": len(self.orders_sent), "poison_sent": self.poison,
                           "recovery_s": self.recoveries_s, "caught_up_s": self.caught_up_s,
                           "worker_rss_mb": self.rss_mb})
            return result
        finally:
            result["seconds"] = round(time.monotonic() - started, 1)
            d.stop_all()


def send_again_what_came_too_early(d: Deployment, rounds: int = 5) -> int:
    """What an operator does with state changes dead-lettered as `insufficient_in_state` (a movement packed on the
    wrong partition is re-routed, and one that follows it can overtake it): send each again, as it was, to where
    it came from, until none is left. Each must then apply: the verdict finds it in the ledger or counts it lost.
    Returns how many were sent again."""
    done: set[tuple[str, int, int]] = set()
    for _ in range(rounds):
        letters = [v for _, v, _, _ in d.read(d.registry.deadletter.name) if v["reason"] == "insufficient_in_state"
                   and (v["source_topic"], v["source_partition"], v["source_offset"]) not in done]
        if not letters:
            break
        for letter in letters:
            done.add((letter["source_topic"], letter["source_partition"], letter["source_offset"]))
            d.send_raw(letter["source_topic"], letter["key"], letter["value"])
        d.settle(120)
    return len(done)


def verdict(d: Deployment, result: dict[str, Any], allowed_dead: tuple[str, ...] = ()) -> dict[str, SkuStock] | None:
    """Once a run has settled: the ledger replayed by the domain (nothing applied twice), every acknowledged
    movement in it, every position and channel feed equal to the replay, no output going back, no dead letter but
    those `allowed_dead`. Counts and problems go into `result`; the replayed stocks are returned (None when the
    ledger itself is wrong)."""
    try:
        stocks, history = d.replay_ledger()
    except AssertionError as exc:  # an entry written twice, or a ledger the domain does not replay
        result["double_counted" if "written twice" in str(exc) else "mismatched"] = 1
        result["problems"].append(str(exc)[:2000])
        return None
    ledgered = {f"{e['channel']}:{e['event_id']}" for e in history}
    lost = [key for key in d.sent if key not in ledgered]
    try:
        d.assert_outputs_match(stocks)  # every position and every channel's feed
    except AssertionError as exc:
        result["mismatched"] = 1
        result["problems"].append(str(exc)[:2000])
    back = [b for topic in [d.registry.positions.name] + [d.registry.ats(c).name for c in d.network.channels]
            for b in d.versions_going_back(topic)]
    dead = [v["reason"] for _, v, _, _ in d.read(d.registry.deadletter.name)]
    unexpected = [r for r in dead if r not in allowed_dead]
    if lost:
        result["problems"].append(f"{len(lost)} acknowledged movements lost, e.g. {lost[:3]}")
    if back:
        result["problems"].append(f"{len(back)} outputs went back, e.g. {back[:3]}")
    if unexpected:
        result["problems"].append(f"unexpected dead letters: {sorted(set(unexpected))}")
    result.update({"movements": len(d.sent), "ledgered": len(history), "lost": len(lost), "went_back": len(back),
                   "dead_letters": len(dead)})
    return stocks


def spread(seconds: list[float]) -> dict[str, float]:
    return {"median": sorted(seconds)[len(seconds) // 2], "max": max(seconds)} if seconds else {}


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    totals = {key: sum(int(r.get(key, 0)) for r in runs) for key in
              ("movements", "orders", "lost", "double_counted", "mismatched", "went_back", "dead_letters", "sent_again",
               "crashed", "harness_error", "orders_half_held_or_undecided")}
    faults: dict[str, int] = {}
    for r in runs:
        for fault in r.get("faults", []):
            faults[fault] = faults.get(fault, 0) + 1
    rss = [m for r in runs for m in r.get("worker_rss_mb", [])]
    return {"benchmark": "chaos", "runs": len(runs), **totals, "faults_injected": faults,
            "kill_to_ready_s": spread([s for r in runs for s in r.get("recovery_s", [])]),
            "kill_to_caught_up_s": spread([s for r in runs for s in r.get("caught_up_s", [])]),
            "worker_rss_mb_max": max(rss) if rss else None,
            "failed": any(r.get("problems") for r in runs), "runs_detail": runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--faults", default="all", help="'all' or a comma-separated list of " + ", ".join(FAULTS))
    parser.add_argument("--movements", type=int, default=6_000, help="movements per run (plus re-sends)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep-logs", type=Path, metavar="DIR",
                        help="copy the worker logs of every run with a problem into DIR/run-SEED/")
    args = parser.parse_args()
    faults = list(FAULTS) if args.faults == "all" else args.faults.split(",")
    unknown = sorted(set(faults) - set(FAULTS))
    if unknown:
        raise SystemExit(f"--faults: unknown {unknown}; choose from {', '.join(FAULTS)}")
    settings = load_settings()
    with tempfile.TemporaryDirectory(prefix="stocksync-chaos-") as tmp:
        proxied = bool(set(faults) & set(NETWORK_FAULTS))
        cluster = LocalCluster(home=settings.broker_home, workdir=Path(tmp) / "cluster", size=3,
                               kafka_version=settings.kafka_version, heap="384m",
                               proxy_slots=PROXY_SLOTS if proxied else 0)
        proxy = Toxiproxy(fetch_toxiproxy(settings.cache_dir), Path(tmp) / "toxiproxy.log") if proxied else None
        cluster.start()
        if proxy is not None:
            proxy.route(cluster)
        try:
            runs = []
            for i in range(args.runs):
                if proxy is not None:
                    proxy.reset()
                runs.append(Run(cluster, Path(tmp) / f"run-{i}", args.seed + i, faults, args.movements,
                                proxy).go())
                if args.keep_logs and runs[-1].get("problems"):
                    kept = args.keep_logs / f"run-{args.seed + i}"
                    kept.mkdir(parents=True, exist_ok=True)
                    for log in (Path(tmp) / f"run-{i}").glob("*.log"):
                        shutil.copy(log, kept / log.name)
                    (kept / "run.json").write_text(json.dumps(runs[-1], indent=2, default=str))
                print(f"run {args.seed + i}: {'PROBLEMS ' if runs[-1].get('problems') else ''}"
                      f"{json.dumps(runs[-1].get('problems') or runs[-1].get('faults'), default=str)[:300]}",
                      file=sys.stderr, flush=True)
        finally:
            cluster.stop()
            if proxy is not None:
                proxy.stop()
    result = summary(runs)
    print(json.dumps(result, indent=2))
    raise SystemExit(1 if result["failed"] else 0)


if __name__ == "__main__":
    main()
