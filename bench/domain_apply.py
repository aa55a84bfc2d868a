"""Micro-benchmark of the pure domain: movements applied per second in one process. Prints JSON.

    python -m bench.domain_apply [--movements N] [--skus N] [--batch N] [--seed N]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import time
import tracemalloc

from streams.domain import Kind, Movement, Network, SkuStock

LOCATIONS = [f"store-{i}" for i in range(20)] + ["wh-1", "wh-2"]
NETWORK = Network.from_dict({
    "locations": [{"id": loc, "kind": "warehouse" if loc.startswith("wh") else "store", "latitude": 50 + i / 10,
                   "longitude": 8 + i / 10, "ship_from": True, "pickup": loc.startswith("store")}
                  for i, loc in enumerate(LOCATIONS)],
    "channels": [{"id": "pos", "locations": LOCATIONS[:20]}, {"id": "web", "locations": LOCATIONS, "buffer": 2},
                 {"id": "wms", "locations": LOCATIONS}],
})


def workload(n: int, skus: int, seed: int) -> list[Movement]:
    """A retail mix: mostly sales, receipts, some late POS uploads, counts, reservations and their closing."""
    rnd = random.Random(seed)
    clock = 1_700_000_000_000
    out: list[Movement] = []
    open_res: list[tuple[str, str]] = []
    for i in range(n):
        clock += rnd.randint(0, 20)
        sku = f"SKU-{rnd.randrange(skus):05d}"
        loc = rnd.choice(LOCATIONS)
        roll = rnd.random()
        at = clock - (rnd.randint(60_000, 3_600_000) if rnd.random() < 0.05 else 0)  # 5% late by up to an hour
        if roll < 0.45:
            out.append(Movement(Kind.SALE, f"s{i}", "pos", sku, rnd.choice(LOCATIONS[:20]), rnd.randint(1, 3), at))
        elif roll < 0.65:
            out.append(Movement(Kind.RECEIPT, f"r{i}", "wms", sku, loc, rnd.randint(5, 50), at))
        elif roll < 0.70:
            out.append(Movement(Kind.COUNT, f"c{i}", "wms", sku, loc, rnd.randint(0, 100), at))
        elif roll < 0.72:
            out.append(Movement(Kind.ADJUSTMENT, f"a{i}", "wms", sku, loc, -rnd.randint(1, 3), at, reason="damage"))
        elif roll < 0.88:
            out.append(Movement(Kind.RESERVATION_PLACED, f"p{i}", "web", sku, None, rnd.randint(1, 2), clock,
                                reservation_id=f"res{i}", expires_at=clock + 900_000))
            open_res.append((sku, f"res{i}"))
        elif open_res:
            sku, rid = open_res.pop(rnd.randrange(len(open_res)))
            kind = Kind.RESERVATION_FULFILLED if rnd.random() < 0.7 else Kind.RESERVATION_RELEASED
            out.append(Movement(kind, f"x{i}", "web", sku, None, 0, clock, reservation_id=rid))
    # 2% re-deliveries, as at-least-once delivery produces.
    for m in rnd.sample(out, len(out) // 50):
        out.insert(rnd.randrange(len(out)), m)
    return out


def run(movements: list[Movement], batch: int) -> tuple[float, list[float], dict[str, SkuStock]]:
    stocks: dict[str, SkuStock] = {}
    now = movements[-1].occurred_at + 1
    latencies: list[float] = []
    start = time.perf_counter()
    for offset in range(0, len(movements), batch):
        chunk = movements[offset:offset + batch]
        by_sku: dict[str, list[Movement]] = {}
        for m in chunk:
            by_sku.setdefault(m.sku, []).append(m)
        t0 = time.perf_counter()
        for sku, ms in by_sku.items():
            stock = stocks.get(sku)
            if stock is None:
                stock = stocks[sku] = SkuStock(sku)
            stock.apply_all(ms, NETWORK, now)
        latencies.append((time.perf_counter() - t0) / len(chunk))
    return time.perf_counter() - start, latencies, stocks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--movements", type=int, default=200_000)
    parser.add_argument("--skus", type=int, default=2_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    movements = workload(args.movements, args.skus, args.seed)
    results = {}
    for batch in (1, 100):
        elapsed, latencies, stocks = run(movements, batch)
        per_event_us = sorted(x * 1e6 for x in latencies)
        results[f"batch_{batch}"] = {
            "movements_per_s": round(len(movements) / elapsed),
            "per_movement_us": {"p50": round(statistics.median(per_event_us), 2),
                                "p99": round(per_event_us[int(len(per_event_us) * 0.99) - 1], 2)},
        }
    tracemalloc.start()
    _, _, stocks = run(movements[: len(movements) // 4], 100)
    traced = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    print(json.dumps({
        "benchmark": "domain_apply", "movements": len(movements), "skus": len(stocks), "locations": len(LOCATIONS),
        **results,
        "state_bytes_per_sku": round(traced / max(1, len(stocks))),
        "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "cpus": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2),
    }, indent=2))


if __name__ == "__main__":
    main()
