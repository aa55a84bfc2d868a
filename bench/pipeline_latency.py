"""End-to-end benchmark of the stream pipeline on a real broker. Prints JSON.

Light load: movements sent one by one (channel client without lingering) at --rate per second; latency = from
reporting a receipt to its update arriving on a channel's ATS feed (the time a channel waits to see stock move).
Throughput: --burst movements reported through the channel client as fast as it takes them (it packs movements
sharing a partition, up to --pack per message); events/s = movements applied per second until the last one is
on the ledger. Uses KAFKA_BOOTSTRAP_SERVERS / STOCKSYNC_BOOTSTRAP_SERVERS, else starts a local broker.

    python -m bench.pipeline_latency [--rate 50] [--seconds 20] [--burst 50000]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path

from streams.channel import ChannelClient
from streams.control.admin import ensure_topics
from streams.control.network import load_network_file, publish_network
from streams.dev.cluster import start_cluster
from streams.kafka.clients import new_admin, new_consumer
from streams.kafka.topics import TopicRegistry
from streams.settings import load_settings
from streams.wire.codec import default_codec

ROOT = Path(__file__).resolve().parent.parent


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=50.0, help="movements per second in the light-load phase")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--burst", type=int, default=50_000, help="movements in the throughput phase")
    parser.add_argument("--pack", type=int, default=50, help="movements per message in the throughput phase")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="stocksync-bench-"))
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    settings = load_settings(topic_prefix=prefix, app_id=f"{prefix}-app", partitions=6)
    cluster = start_cluster(settings, tmp / "kafka")
    servers = cluster.bootstrap_servers
    registry = TopicRegistry(settings)
    codec = default_codec()
    network = load_network_file(ROOT / "deploy" / "network.yaml")
    ensure_topics(new_admin(servers), registry.all(network.channels))
    publish_network(servers, registry, network)
    port = 16000 + os.getpid() % 1000
    env = {**os.environ, "STOCKSYNC_BOOTSTRAP_SERVERS": servers, "STOCKSYNC_TOPIC_PREFIX": settings.topic_prefix,
           "STOCKSYNC_APP_ID": settings.app_id, "STOCKSYNC_PARTITIONS": "6", "STOCKSYNC_STORE": "memory://",
           "STOCKSYNC_BROKER_SESSION_TIMEOUT_S": "6", "STOCKSYNC_WEB_PORT": str(port),
           "STOCKSYNC_DATA_DIR": str(tmp / "data")}
    worker = subprocess.Popen([sys.executable, "-m", "streams.cli", "worker"], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=1) as response:
                    if json.loads(response.read())["ready"]:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline or worker.poll() is not None:
                raise SystemExit("worker did not become ready")
            time.sleep(0.2)

        feed = registry.ats("web").name
        arrived: dict[str, float] = {}
        stop = threading.Event()

        def follow() -> None:
            consumer = new_consumer(servers, f"bench-{uuid.uuid4()}", **{"auto.offset.reset": "earliest"})
            consumer.subscribe([feed])
            while not stop.is_set():
                msg = consumer.poll(0.1)
                key = None if msg is None or msg.error() else msg.key()
                if key is not None:
                    arrived.setdefault(key.decode(), time.time())
            consumer.close()

        follower = threading.Thread(target=follow, daemon=True)
        follower.start()
        # Light load: one receipt at a time (no lingering), each for a new SKU, so each makes one feed update.
        unpacked = ChannelClient("wms", servers, settings=settings, linger_ms=0)
        sent: dict[str, float] = {}
        interval = 1.0 / args.rate
        start = time.time()
        i = 0
        while time.time() - start < args.seconds:
            sku = f"LAT-{i:06d}"
            sent[sku] = time.time()
            unpacked.receipt(sku, "wh-kassel", 5, event_id=f"lat-{i}")
            i += 1
            time.sleep(max(0.0, start + i * interval - time.time()))
        unpacked.close()
        wait_until = time.time() + 30
        while len([s for s in sent if s in arrived]) < len(sent) and time.time() < wait_until:
            time.sleep(0.1)
        latencies = [(arrived[s] - t) * 1000 for s, t in sent.items() if s in arrived]
        # The same after the first 5 s: the worker's first seconds (fetch sessions, metadata) set apart.
        steady = [(arrived[s] - t) * 1000 for s, t in sent.items() if s in arrived and t - start >= 5]

        # Throughput: a burst through the channel client, which packs movements sharing a partition.
        burst_skus = [f"TPUT-{j:05d}" for j in range(2_000)]
        packing = ChannelClient("wms", servers, settings=settings, linger_ms=5, max_batch=args.pack)
        burst_start = time.time()
        for j in range(args.burst):
            packing.receipt(burst_skus[j % len(burst_skus)], "wh-leipzig", 1, event_id=f"tp-{j}")
        packing.close()
        client_s = time.time() - burst_start
        # Done when the ledger has every burst movement: count them on the ledger topic.
        ledger = new_consumer(servers, f"bench-ledger-{uuid.uuid4()}", **{"auto.offset.reset": "earliest"})
        ledger.subscribe([registry.ledger.name])
        seen: set[str] = set()
        last = time.time()
        deadline = time.time() + 600
        while len(seen) < args.burst and time.time() < deadline:
            msg = ledger.poll(0.2)
            value = None if msg is None or msg.error() else msg.value()
            if value is None:
                continue
            event_id = codec.decode(value)[1]["event_id"]
            if event_id.startswith("tp-"):
                seen.add(event_id)
                last = time.time()
        ledger.close()
        stop.set()
        rss_kb = int(Path(f"/proc/{worker.pid}/status").read_text().split("VmRSS:")[1].split()[0])
        print(json.dumps({
            "benchmark": "pipeline_latency", "partitions": 6, "workers": 1, "broker": cluster.origin,
            "light_load": {"rate_per_s": args.rate, "sent": len(sent), "received": len(latencies),
                           "latency_ms": {"p50": round(statistics.median(latencies), 1),
                                          "p90": round(percentile(latencies, 0.90), 1),
                                          "p99": round(percentile(latencies, 0.99), 1),
                                          "max": round(max(latencies), 1)},
                           "after_first_5s_ms": {"p50": round(statistics.median(steady), 1),
                                                 "p99": round(percentile(steady, 0.99), 1),
                                                 "max": round(max(steady), 1)}},
            "throughput": {"movements": args.burst, "max_pack": args.pack, "applied": len(seen),
                           "client_movements_per_s": round(args.burst / max(1e-9, client_s)),
                           "events_per_s": round(len(seen) / max(1e-9, last - burst_start))},
            "worker_rss_mb": round(rss_kb / 1024, 1),
            "cpus": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2),
            "note": "broker, worker and load generator share this machine's cores",
        }, indent=2))
    finally:
        worker.terminate()
        worker.wait(60)
        cluster.stop()


if __name__ == "__main__":
    main()
