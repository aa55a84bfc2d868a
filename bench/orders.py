"""Orders on a real broker: carts of 1 to `--max-lines` lines with Zipf(`--zipf`) SKU popularity offered at
`--rate` orders/s for `--seconds` through the channel client to `--workers` workers (RocksDB, exactly-once). Prints
JSON: orders decided per second, decision latency (request sent -> decision read by the client) p50/p99, parcels
per accepted order, refusals by reason, the workers' CPU and peak memory; and the checks made once every order is
decided: no tentative hold left (every position's `reserved` equals the units of the accepted orders' lines) and
every order decided once.

Uses STOCKSYNC_/KAFKA_BOOTSTRAP_SERVERS, else starts a local broker. Broker, workers and load share the machine.

    python -m bench.orders [--rate 500] [--seconds 60] [--skus 5000] [--zipf 1.0] [--workers 1] [--processes 1]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import Future
from functools import partial
from pathlib import Path
from typing import Any

from bench.compare import Deployment, WorkerRun, cpu_seconds, own_time, peak_rss_mb
from streams.channel import ChannelClient, OrderDecision
from streams.control.admin import await_inputs_read
from streams.dev.cluster import start_cluster
from streams.kafka.clients import new_consumer
from streams.security import KafkaConnection
from streams.settings import load_settings
from streams.wire.codec import default_codec

NETWORK: dict[str, Any] = {
    "locations": [
        {"id": "store-berlin", "kind": "store", "latitude": 52.52, "longitude": 13.40, "ship_from": True,
         "pickup": True, "handling_cost": 4.0},
        {"id": "store-hamburg", "kind": "store", "latitude": 53.55, "longitude": 9.99, "ship_from": True,
         "pickup": True, "handling_cost": 4.0},
        {"id": "store-munich", "kind": "store", "latitude": 48.14, "longitude": 11.58, "ship_from": True,
         "pickup": True, "handling_cost": 4.0},
        {"id": "wh-kassel", "kind": "warehouse", "latitude": 51.31, "longitude": 9.48, "ship_from": True,
         "handling_cost": 1.0},
        {"id": "wh-leipzig", "kind": "warehouse", "latitude": 51.34, "longitude": 12.38, "ship_from": True,
         "handling_cost": 1.0},
    ],
    "channels": [
        {"id": "web", "locations": ["store-berlin", "store-hamburg", "store-munich", "wh-kassel", "wh-leipzig"]},
        {"id": "wms", "locations": ["store-berlin", "store-hamburg", "store-munich", "wh-kassel", "wh-leipzig"]},
    ],
}


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))] if ordered else 0.0


def zipf_weights(n: int, s: float) -> list[float]:
    return [1.0 / (rank ** s) for rank in range(1, n + 1)]


def stock(deployment: Deployment, skus: list[str], units: int) -> None:
    """Every SKU at every location: warehouses `units`, stores a tenth of it."""
    with ChannelClient("wms", deployment.servers, settings=deployment.settings, linger_ms=20) as wms:
        for sku in skus:
            for location in NETWORK["locations"]:
                n = units if location["kind"] == "warehouse" else max(1, units // 10)
                wms.receipt(sku, location["id"], n, event_id=f"stock-{sku}-{location['id']}")


def positions(deployment: Deployment) -> dict[bytes, dict[str, Any]]:
    """The latest record of every position (the compacted positions topic read to its end)."""
    topic = deployment.registry.positions.name
    consumer = new_consumer(deployment.servers, f"bench-{uuid.uuid4()}", **{"auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    found: dict[bytes, dict[str, Any]] = {}
    idle_since = time.monotonic()
    codec = default_codec()
    while time.monotonic() - idle_since < 3:
        message = consumer.poll(0.2)
        if message is None or message.error() is not None:
            continue
        key, value = message.key(), message.value()
        if key is None or value is None:
            continue
        idle_since = time.monotonic()
        found[key] = codec.decode(value)[1]
    consumer.close()
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=500.0, help="orders offered per second")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--skus", type=int, default=5_000)
    parser.add_argument("--zipf", type=float, default=1.0)
    parser.add_argument("--max-lines", type=int, default=10)
    parser.add_argument("--units", type=int, default=100_000, help="units of every SKU per warehouse")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--processes", type=int, default=1, help="worker processes each worker runs (--processes)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--profile", type=Path, help="py-spy samples the first worker while orders are offered "
                        "(collapsed stacks in this file; the top functions by own time in the result)")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="stocksync-bench-orders-"))
    name = f"orders-{uuid.uuid4().hex[:8]}"
    settings = load_settings(topic_prefix=name)
    cluster = start_cluster(settings, tmp / "kafka")
    deployment = Deployment(cluster.bootstrap_servers, name, NETWORK, tmp)
    workers = [WorkerRun(deployment, tmp / f"data-{n}", args.processes) for n in range(args.workers)]
    try:
        for worker in workers:
            worker.start()
        rnd = random.Random(args.seed)
        skus = [f"SKU-{i:05d}" for i in range(args.skus)]
        weights = zipf_weights(args.skus, args.zipf)
        stock(deployment, skus, args.units)
        # Orders are offered to workers that have applied the stock (not to a backlog of receipts).
        await_inputs_read(KafkaConnection(deployment.servers), deployment.settings.input_group,
                          deployment.input_ends(), timeout_s=600)
        result = offer(deployment, args, rnd, skus, weights, workers)
        print(json.dumps(result, indent=2))
    finally:
        for worker in workers:
            worker.stop()
        cluster.stop()


def offer(deployment: Deployment, args: argparse.Namespace, rnd: random.Random, skus: list[str],
          weights: list[float], workers: list[WorkerRun]) -> dict[str, Any]:
    decided: dict[str, tuple[float, OrderDecision]] = {}
    sent: dict[str, float] = {}
    lines_of: dict[str, list[tuple[str, int]]] = {}
    lock = threading.Lock()
    cpu_before = [cpu_seconds(w.proc.pid) for w in workers if w.proc is not None]

    def on_decision(order_id: str, future: Future[OrderDecision]) -> None:
        if future.exception() is None:
            with lock:
                decided.setdefault(order_id, (time.monotonic(), future.result()))

    spy = None
    if args.profile is not None and workers[0].proc is not None:
        spy = subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record", "-p",
                                str(workers[0].proc.pid), "-r", "100", "-f", "raw", "-o", str(args.profile)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with ChannelClient("web", deployment.servers, settings=deployment.settings, linger_ms=0) as web:
        interval = 1.0 / args.rate
        began = time.monotonic()
        n = 0
        while time.monotonic() - began < args.seconds:
            count = rnd.randint(1, args.max_lines)
            chosen: list[str] = []
            while len(chosen) < count:
                sku = rnd.choices(skus, weights)[0]
                if sku not in chosen:
                    chosen.append(sku)
            order_id = f"o-{n}"
            lines = [(sku, rnd.randint(1, 3)) for sku in chosen]
            lines_of[order_id] = lines
            to = (rnd.uniform(47.5, 54.5), rnd.uniform(6.5, 14.5))
            sent[order_id] = time.monotonic()
            future = web.request_order(order_id, lines, deliver_to=to, ttl_s=3600)
            future.add_done_callback(partial(on_decision, order_id))
            n += 1
            time.sleep(max(0.0, began + n * interval - time.monotonic()))
        offered_s = time.monotonic() - began
        wait_until = time.monotonic() + 120
        while len(decided) < len(sent) and time.monotonic() < wait_until:
            time.sleep(0.2)
    profile: dict[str, float] = {}
    if spy is not None:
        spy.send_signal(signal.SIGINT)
        spy.wait(60)
        profile = own_time(args.profile)
    cpu = [round(cpu_seconds(w.proc.pid) - before, 1) for w, before in zip(workers, cpu_before, strict=True)
           if w.proc is not None]
    latencies = [(at - sent[o]) * 1000 for o, (at, _) in decided.items()]
    accepted = {o: d for o, (_, d) in decided.items() if d.accepted}
    last = max((at for at, _ in decided.values()), default=began)
    expected: Counter[bytes] = Counter()
    for decision in accepted.values():
        for held in decision.lines:
            for location, units in held.parts:
                expected[f"{held.sku}|{location}".encode()] += units
    # Tentative holds of refused orders are released at once; any left over would lapse 10 s after the order's
    # deadline: look until then for reserved == the accepted orders' lines.
    leaked: dict[str, int] = {}
    deadline = time.monotonic() + 45
    while True:
        reserved = {k: v["figures"]["reserved"] for k, v in positions(deployment).items() if v["figures"]["reserved"]}
        leaked = {k.decode(): r - expected.get(k, 0) for k, r in reserved.items() if r != expected.get(k, 0)}
        leaked.update({k.decode(): -n for k, n in expected.items() if k not in reserved})
        if not leaked or time.monotonic() > deadline:
            break
        time.sleep(2)
    return {
        "benchmark": "orders", "workers": args.workers, "processes_per_worker": args.processes,
        "partitions": deployment.settings.partitions,
        "offered": {"orders": len(sent), "rate_per_s": args.rate, "seconds": round(offered_s, 1),
                    "lines_per_order": round(statistics.mean(len(v) for v in lines_of.values()), 2),
                    "skus": args.skus, "zipf": args.zipf},
        "decided": len(decided), "accepted": len(accepted),
        "orders_per_s": round(len(decided) / max(1e-9, last - began), 1),
        "decision_latency_ms": {"p50": round(percentile(latencies, 0.5), 1),
                                "p99": round(percentile(latencies, 0.99), 1),
                                "max": round(max(latencies, default=0.0), 1)},
        "parcels_per_accepted_order": round(statistics.mean(len(d.parcels) for d in accepted.values()), 3)
        if accepted else 0.0,
        "refused": dict(Counter(d.reason for _, d in decided.values() if not d.accepted)),
        "undecided": len(sent) - len(decided),
        "holds_not_matching_accepted_orders": leaked,
        **({"profile_own_time": profile} if profile else {}),
        "worker_cpu_s": cpu, "worker_peak_rss_mb": [peak_rss_mb(w.proc.pid) for w in workers if w.proc],
        "cpus": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2),
        "note": "broker, workers and load generator share this machine's cores",
    }


if __name__ == "__main__":
    main()
