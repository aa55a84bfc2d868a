"""The README's main job: a local Kafka, the registry's topics, stream workers; Ctrl-C stops everything it started."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import ExitStack

from pathlib import Path

from streams.admin import admin_client, ensure_topics
from streams.broker.select import Cluster, bootstrap_servers, local_broker_dir, start_cluster
from streams.errors import ConfigError
from streams.network_config import load_network_file, publish_network
from streams.settings import Settings
from streams.topics import TopicRegistry

DEMO_NETWORK = Path(__file__).resolve().parent.parent / "deploy" / "network.yaml"


def _cluster(settings: Settings) -> Cluster:
    try:
        return Cluster(bootstrap_servers(settings), "already running")
    except ConfigError:
        print("starting a local Kafka (first run fetches its jars with Maven)...", flush=True)
        return start_cluster(settings, local_broker_dir(settings, "demo"))


def _spawn_worker(settings: Settings, servers: str, index: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "STOCKSYNC_BOOTSTRAP_SERVERS": servers,
           "STOCKSYNC_WEB_PORT": str(settings.web_port + index),
           "STOCKSYNC_DATA_DIR": str(settings.data_dir / f"worker-{index}")}
    return subprocess.Popen([sys.executable, "-m", "streams.cli", "worker"], env=env)


def _stop(proc: subprocess.Popen[bytes], timeout_s: float = 30.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_demo(settings: Settings, workers: int = 2, network_file: Path = DEMO_NETWORK) -> int:
    network = load_network_file(network_file)
    with ExitStack() as cleanup:
        cluster = _cluster(settings)
        cleanup.callback(cluster.stop)
        print(f"Kafka at {cluster.bootstrap_servers} ({cluster.origin})", flush=True)
        registry = TopicRegistry(settings)
        report = ensure_topics(admin_client(cluster.bootstrap_servers), registry.all(network.channels),
                               settings.replication_factor)
        print(f"topics: {len(report.created)} created, {len(report.existing)} already there", flush=True)
        version = publish_network(cluster.bootstrap_servers, registry, network)
        print(f"network {network_file.name} applied as version {version}: {len(network.locations)} locations, "
              f"{len(network.channels)} channels", flush=True)
        procs = [_spawn_worker(settings, cluster.bootstrap_servers, i) for i in range(workers)]
        for proc in procs:
            cleanup.callback(_stop, proc)
        print(f"{workers} workers running; Ctrl-C stops the demo and everything it started", flush=True)
        try:
            while all(proc.poll() is None for proc in procs):
                time.sleep(0.5)
        except KeyboardInterrupt:
            print("\nstopping...", flush=True)
            return 0
        failed = next(proc for proc in procs if proc.poll() is not None)
        print(f"a worker exited with code {failed.returncode}; stopping the demo", file=sys.stderr)
        return 1
    return 0
