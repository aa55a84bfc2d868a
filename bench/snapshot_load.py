"""How long a full stock snapshot takes to load: `--rows` rows (SKU x location, gzip CSV) through `stocksync load`
into one worker (RocksDB) on the local broker, with its report read back from the ledger. Then the worker, now
holding that many positions, is killed (SIGKILL) and timed to /ready on its own disk, then on an empty disk (its
state from the changelog alone), with its peak RSS (`--skip-recovery` leaves that out). Prints JSON.

    python -m bench.snapshot_load [--rows 1000000] [--locations 20] [--skip-recovery]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from bench.compare import Deployment, WorkerRun, network
from streams.dev.cluster import start_cluster
from streams.settings import load_settings


def write_snapshot(path: Path, rows: int, locations: list[str], seed: int) -> None:
    rng = random.Random(seed)
    skus = max(1, rows // len(locations))
    with gzip.open(path, "wt", encoding="utf-8", newline="") as out:
        out.write("sku,location,on_hand\n")
        written = 0
        for i in range(skus):
            for location in locations:
                if written == rows:
                    return
                out.write(f"SKU-{i:07d},{location},{rng.randint(0, 60)}\n")
                written += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--locations", type=int, default=20)
    parser.add_argument("--skip-recovery", action="store_true")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="stocksync-snapshot-"))
    cluster = start_cluster(load_settings(), tmp / "kafka")
    worker = None
    try:
        net = network(args.locations)
        deployment = Deployment(cluster.bootstrap_servers, f"snap-{uuid.uuid4().hex[:6]}", net, tmp)
        snapshot = tmp / "snapshot.csv.gz"
        began = time.monotonic()
        write_snapshot(snapshot, args.rows, [loc["id"] for loc in net["locations"]], 1)
        written_s = time.monotonic() - began
        worker = WorkerRun(deployment, tmp / "data")
        worker.start()
        s = deployment.settings
        env = {**os.environ, "STOCKSYNC_BOOTSTRAP_SERVERS": s.bootstrap_servers,
               "STOCKSYNC_TOPIC_PREFIX": s.topic_prefix, "STOCKSYNC_APP_ID": s.app_id,
               "STOCKSYNC_PARTITIONS": str(s.partitions)}
        began = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "streams.cli", "load", str(snapshot), "--channel", "wms",
                               "--as-of", str(int(time.time() * 1000) - 60_000)],
                              capture_output=True, text=True, env=env, timeout=7200)
        seconds = time.monotonic() - began
        if done.returncode != 0:
            raise SystemExit(f"stocksync load failed: {done.stderr.strip()[-500:]}")
        report = done.stdout.splitlines()
        result: dict[str, object] = {
            "benchmark": "snapshot_load", "rows": args.rows, "locations": args.locations,
            "file_mb": round(snapshot.stat().st_size / 2**20, 1), "file_written_s": round(written_s, 1),
            "load_and_report_s": round(seconds, 1), "rows_per_s": round(args.rows / seconds),
            "report_head": report[:3], "worker_peak_rss_mb": worker.peak_rss_mb(),
        }
        if not args.skip_recovery:
            worker.stop(signal.SIGKILL)
            own_disk_s = worker.start()
            own_disk_rss = worker.peak_rss_mb()
            worker.stop(signal.SIGKILL)
            shutil.rmtree(worker.data)
            result["recovery"] = {"positions": args.rows, "from_local_rocksdb_s": round(own_disk_s, 1),
                                  "from_local_rocksdb_peak_rss_mb": own_disk_rss,
                                  "from_changelog_s": round(worker.start(), 1),
                                  "from_changelog_peak_rss_mb": worker.peak_rss_mb()}
        result["machine"] = {"cpus": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2)}
        print(json.dumps(result, indent=2))
    finally:
        if worker is not None:
            worker.stop(signal.SIGKILL)
        cluster.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
