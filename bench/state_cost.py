"""What one more batch costs a SKU with a long history: the worker's pipeline (decode, apply, encode every record)
on one SKU that has already applied 1k, 10k, 100k and 1,000,000 events inside its horizon. Prints JSON.

    python -m bench.state_cost [--sizes 1000,10000,100000,1000000] [--batches 30] [--batch 100]

For each size: microseconds per movement (median over the batches), bytes of stock-table records and of output
records written per movement, and the largest record in the table. The history is built with the domain over a
dict, then stored as the worker stores it (every record encoded, keyed as in the stock table); the measured
batches then go through `Pipeline.handle` as in a worker, minus Kafka. Flat cost: the last size's figures stay
within 1.5x of the first's.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import time
from collections.abc import Iterator

from bench.domain_apply import LOCATIONS, NETWORK
from streams.domain import Kind, Movement, SkuStock, StockRules
from streams.kafka.topics import TopicRegistry
from streams.settings import load_settings
from streams.wire.codec import default_codec
from streams.wire.partitioner import sku_partition
from streams.wire.records import head_to_record, history_to_record, movement_to_record
from streams.wire.schemas import Schema
from streams.worker.processing.ats import AtsPublisher
from streams.worker.processing.expiry import ExpiryScheduler
from streams.worker.processing.messages import Inbound
from streams.worker.processing.outputs import ProducerOutbox
from streams.worker.processing.pipeline import Pipeline
from streams.worker.reference.network_in_force import NetworkInForce
from streams.worker.state.keys import HISTORY_MARK

SKU = "HOT-1"
HORIZON_MS = 7 * 24 * 3600 * 1000
NOW = 1_800_000_000_000
PARTITIONS = 6


class BytesStore:
    """The stock table of one partition as bytes, as the worker's StockStore sees it."""

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}
        self.written = 0

    def get_raw(self, key: bytes, partition: int) -> bytes | None:
        return self.data.get(key)

    def put_raw(self, key: bytes, value: bytes | None, partition: int) -> None:
        self.written += len(key) + len(value or b"")
        if value is None:
            self.data.pop(key, None)
        else:
            self.data[key] = value

    def scan_raw(self, prefix: bytes) -> Iterator[bytes]:
        return iter([key for key in self.data if key.startswith(prefix)])


def movement(rnd: random.Random, n: int, at: int) -> Movement:
    """A best-seller's traffic: sales at the stores, receipts, now and then a count."""
    roll = rnd.random()
    if roll < 0.7:
        return Movement(Kind.SALE, f"s{n}", "pos", SKU, rnd.choice(LOCATIONS[:20]), 1, at)
    if roll < 0.97:
        return Movement(Kind.RECEIPT, f"r{n}", "wms", SKU, rnd.choice(LOCATIONS), rnd.randint(5, 50), at)
    return Movement(Kind.COUNT, f"c{n}", "wms", SKU, rnd.choice(LOCATIONS), rnd.randint(50, 500), at - 60_000)


def stored(stock: SkuStock) -> BytesStore:
    """The SKU as the worker stores it: its head and every history record, encoded."""
    codec = default_codec()
    store = BytesStore()
    store.data[SKU.encode()] = codec.encode(Schema.SKU_HEAD, head_to_record(stock))
    for key, value in stock.records.scan(""):
        store.data[SKU.encode() + HISTORY_MARK + key.encode()] = codec.encode(*history_to_record(value))
    return store


def pipeline() -> Pipeline:
    registry = TopicRegistry(load_settings(partitions=PARTITIONS, topic_prefix="bench"))
    codec = default_codec()
    in_force = NetworkInForce(registry)
    in_force.adopt(NETWORK, 1)
    return Pipeline(registry, codec, in_force, AtsPublisher(registry, codec, in_force),
                    ExpiryScheduler(registry, codec, in_force), StockRules(horizon_ms=HORIZON_MS))


def measure(stock: SkuStock, rnd: random.Random, batches: int, batch: int, first_id: int) -> dict[str, float]:
    store = stored(stock)
    built = pipeline()
    codec = default_codec()
    topic = built.registry.sales("pos").name
    partition = sku_partition(SKU, PARTITIONS)
    times, state_bytes, output_bytes = [], [], []
    at = NOW - HORIZON_MS // 20
    for b in range(batches):
        movements = [movement(rnd, first_id + b * batch + i, at + b * batch + i) for i in range(batch)]
        # Channels' sales and restocks arrive on their own topics; for cost, one topic carries them all.
        value = codec.encode(Schema.MOVEMENT_BATCH, {"movements": [movement_to_record(m) for m in movements]})
        message = Inbound(topic, partition, b, SKU.encode(), value)
        outbox = ProducerOutbox()
        before = store.written
        started = time.perf_counter()
        built.network.route(topic)  # the route is looked up once per message in a worker too
        built.handle([message], store, outbox, NOW)
        times.append((time.perf_counter() - started) / batch * 1e6)
        state_bytes.append((store.written - before) / batch)
        output_bytes.append(sum(len(k) + len(v or b"") for _, k, v, _ in outbox.records) / batch)
    return {"apply_us_per_movement": round(statistics.median(times), 1),
            "state_bytes_per_movement": round(statistics.median(state_bytes), 1),
            "output_bytes_per_movement": round(statistics.median(output_bytes), 1),
            "largest_record_bytes": max(len(v) for v in store.data.values()),
            "table_records": len(store.data)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000,100000,1000000", help="events in the history, comma-separated")
    parser.add_argument("--batches", type=int, default=30, help="measured batches per size")
    parser.add_argument("--batch", type=int, default=100, help="movements per measured batch (one message)")
    args = parser.parse_args()
    sizes = sorted(int(size) for size in args.sizes.split(","))
    rnd = random.Random(7)
    rules = StockRules(horizon_ms=HORIZON_MS)
    results = []
    start, span = NOW - HORIZON_MS * 9 // 10, HORIZON_MS * 8 // 10  # every history lies well inside the horizon
    for size in sizes:
        # Each size over the same time span (the same buckets): histories differ in density only.
        stock = SkuStock(SKU)
        fill_started = time.perf_counter()
        for offset in range(0, size, 10_000):
            chunk = range(offset, min(size, offset + 10_000))
            stock.apply_all([movement(rnd, i, start + i * span // size) for i in chunk], NETWORK, NOW, rules)
        fill_s = time.perf_counter() - fill_started
        measured = measure(stock, random.Random(size), args.batches, args.batch, 10 * sizes[-1])
        results.append({"events_in_history": size, **measured, "history_built_s": round(fill_s, 1)})
    first, last = results[0], results[-1]
    print(json.dumps({
        "benchmark": "state_cost",
        "sku_locations": len(LOCATIONS),
        "batch_movements": args.batch,
        "results": results,
        "last_over_first": {key: round(last[key] / first[key], 2) for key in
                            ("apply_us_per_movement", "state_bytes_per_movement", "output_bytes_per_movement")},
        "cpus": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }, indent=2))


if __name__ == "__main__":
    main()
