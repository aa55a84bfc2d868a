"""Runs one stocksync worker: ensures its topics, waits for a network, then runs the faust app in this process."""

from __future__ import annotations

import sys
import time

from streams.control.admin import ensure_topics
from streams.control.network import read_network
from streams.domain import Network
from streams.kafka.clients import new_admin
from streams.kafka.topics import TopicRegistry
from streams.security import Kafka, KafkaConnection
from streams.settings import Settings


def wait_for_network(servers: Kafka, registry: TopicRegistry) -> tuple[Network, int]:
    announced = False
    while True:
        found = read_network(servers, registry)
        if found is not None:
            return found
        if not announced:
            print("stocksync worker: waiting for a network (run 'stocksync network apply FILE')", file=sys.stderr,
                  flush=True)
            announced = True
        time.sleep(2)


def run_worker(settings: Settings, servers: KafkaConnection, loglevel: str = "warn") -> None:
    """Run a worker of the cluster `servers` until it is stopped."""
    from streams.worker.runtime.bootstrap import build_worker
    from streams.worker.runtime.process import WorkerProcess

    settings.data_dir.mkdir(parents=True, exist_ok=True)  # faust creates only the last level
    registry = TopicRegistry(settings)
    ensure_topics(new_admin(servers), registry.core(), settings.replication_factor)
    network, version = wait_for_network(servers, registry)
    ensure_topics(new_admin(servers), registry.all(network.channels), settings.replication_factor)
    app = build_worker(settings, servers, network, version)
    WorkerProcess(app, settings.log_format, loglevel=loglevel).execute_from_commandline()
