"""The README's main job: a local Kafka, the topics, the network, two workers, the simulator and a live view;
Ctrl-C stops everything it started."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from streams.control.admin import ensure_topics
from streams.control.network import load_network_file, publish_network
from streams.dev.cluster import Cluster, bootstrap_servers, local_broker_dir, start_cluster
from streams.domain import Network
from streams.errors import ConfigError
from streams.kafka.clients import new_admin
from streams.kafka.topics import TopicRegistry
from streams.security import Kafka
from streams.settings import Settings

DEMO_NETWORK = Path(__file__).parent / "network.yaml"  # deploy/network.yaml, shipped in the package


def _cluster(settings: Settings) -> Cluster:
    """The configured or running Kafka, else a fresh local one: the demo's own broker and worker data from an
    earlier run are removed first, so every demo starts from empty stock."""
    try:
        return Cluster(bootstrap_servers(settings), "already running")
    except ConfigError:
        print("starting a local Kafka (first run fetches its jars with Maven)...", flush=True)
        shutil.rmtree(local_broker_dir(settings, "demo"), ignore_errors=True)
        for old in settings.data_dir.glob("worker-*"):
            shutil.rmtree(old, ignore_errors=True)
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


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=1) as response:
            return bool(json.loads(response.read())["ready"])
    except OSError:
        return False


def _watch(settings: Settings, servers: Kafka, network: Network, procs: list[subprocess.Popen[bytes]],
           options: DemoOptions) -> int:
    """Run the simulator in a thread and redraw the live view every second until Ctrl-C or the end."""
    from streams.channel import ChannelClient
    from streams.dev.live import LiveView, WebView
    from streams.dev.simulator import Simulator

    stop = threading.Event()
    simulator = Simulator(network, lambda channel: ChannelClient(channel, servers, settings=settings,
                                                                 linger_ms=20),
                          seed=options.seed, rate=options.rate, duration_s=options.duration_s, skus=options.skus)
    runner = threading.Thread(target=simulator.run, kwargs={"should_stop": stop.is_set}, daemon=True)
    view = LiveView(servers, TopicRegistry(settings), network, simulator.sent_at)
    tty = sys.stdout.isatty()
    web: WebView | None = None
    try:
        web = WebView(options.view_port)
        print(f"live view: http://127.0.0.1:{options.view_port}/ (and below)", flush=True)
    except OSError as exc:
        print(f"live web page not started: port {options.view_port} ({exc.strerror}); use --view-port",
              file=sys.stderr, flush=True)
    try:
        runner.start()
        last_line = 0.0
        while runner.is_alive() or time.time() - last_line < 5:
            view.poll(1.0)
            if web is not None:
                web.publish(view.snapshot())
            exited = [proc.returncode for proc in procs if proc.poll() is not None]
            if exited:  # 0: it was stopped (Ctrl-C reaches the workers too, sometimes before the demo sees it)
                if any(exited):
                    print(f"a worker exited with code {max(exited)}; stopping the demo", file=sys.stderr)
                    return 1
                print("\nstopping...", flush=True)
                return 0
            if tty:
                print("\x1b[2J\x1b[H" + view.render() + f"\n\nsimulator: {simulator.stats.sent} events sent "
                      f"(seed {options.seed}, {options.rate:g}/s); Ctrl-C stops everything\n"
                      f"other shells: export STOCKSYNC_BOOTSTRAP_SERVERS={servers}  (query API on "
                      f"http://127.0.0.1:{settings.web_port})", flush=True)
            elif time.time() - last_line >= 5:
                print("\n".join(view.render().split("\n")[:5]) + "\n", flush=True)  # the headline figures
            if time.time() - last_line >= 5:
                last_line = time.time()
            if not runner.is_alive():
                break
        print(view.render(), flush=True)
        print(f"simulation finished: {simulator.stats}", flush=True)
        return 0
    finally:
        stop.set()
        runner.join(10)
        view.close()
        if web is not None:
            web.close()


@dataclass(frozen=True)
class DemoOptions:
    workers: int = 2
    network_file: Path = DEMO_NETWORK
    seed: int = 7
    rate: float = 40.0
    duration_s: float = 3600.0
    skus: int = 40
    view_port: int = 6060


def run_demo(settings: Settings, options: DemoOptions = DemoOptions()) -> int:
    workers, network_file = options.workers, options.network_file
    network = load_network_file(network_file)
    with ExitStack() as cleanup:
        cluster = _cluster(settings)
        cleanup.callback(cluster.stop)
        print(f"Kafka at {cluster.bootstrap_servers} ({cluster.origin})", flush=True)
        kafka = settings.kafka_connection(cluster.bootstrap_servers)
        registry = TopicRegistry(settings)
        report = ensure_topics(new_admin(kafka), registry.all(network.channels),
                               settings.replication_factor)
        print(f"topics: {len(report.created)} created, {len(report.existing)} already there", flush=True)
        version = publish_network(kafka, registry, network)
        print(f"network {network_file.name} applied as version {version}: {len(network.locations)} locations, "
              f"{len(network.channels)} channels", flush=True)
        procs = [_spawn_worker(settings, cluster.bootstrap_servers, i) for i in range(workers)]
        for proc in procs:
            cleanup.callback(_stop, proc)
        print(f"{workers} workers starting; Ctrl-C stops the demo and everything it started", flush=True)
        try:
            while not all(_ready(settings.web_port + i) for i in range(workers)):
                if any(proc.poll() is not None for proc in procs):
                    print("a worker exited before it was ready; stopping the demo", file=sys.stderr)
                    return 1
                time.sleep(0.5)
            print(f"workers ready (query API on http://127.0.0.1:{settings.web_port}); simulating...", flush=True)
            return _watch(settings, kafka, network, procs, options)
        except KeyboardInterrupt:
            print("\nstopping...", flush=True)
            return 0
