"""`stocksync broker`: the local Kafka from Apache Kafka's jars (one node, a cluster of N, or secured), for
development and tests."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from streams.security import KafkaSecurity
from streams.settings import Settings


def add_parser(commands: Any) -> None:
    broker = commands.add_parser("broker", help="run a local Kafka (one node, or --nodes N; --secure) from its jars",
                                 description="Start, stop or inspect the local Kafka 4.x (KRaft) broker. Its jars "
                                             "are fetched once with Maven into STOCKSYNC_CACHE_DIR; needs Java 17+.")
    broker.add_argument("action", choices=["start", "stop", "status"])
    broker.add_argument("--nodes", type=int, choices=range(1, 10), default=1, metavar="N",
                        help="a local KRaft cluster of N nodes (replication factor N, min.insync.replicas N-1); "
                             "export the servers it prints as STOCKSYNC_BOOTSTRAP_SERVERS")
    broker.add_argument("--secure", action="store_true",
                        help="a broker (or, with --nodes, a cluster) of its own: SASL_SSL (SCRAM-SHA-512/256, "
                             "PLAIN) and mutual-TLS listeners, ACLs enforced; it prints the settings to export")
    broker.set_defaults(handler=run)



def _workdir(settings: Settings, name: str = "default") -> Path:
    from streams.dev.cluster import local_broker_dir  # a development tool: loaded by this command only

    return local_broker_dir(settings, name)


def _cluster(args: argparse.Namespace, settings: Settings) -> int:
    """`broker ... --nodes N` (N > 1): a local KRaft cluster of N nodes, for fault tests."""
    from streams.dev.local_kafka import LocalCluster

    workdir = _workdir(settings, f"cluster-{args.nodes}{'-secure' if args.secure else ''}")
    current = LocalCluster.from_state(settings.broker_home, workdir)
    running = [node.node_id for node in current.nodes if node.running()] if current else []
    if args.action == "status":
        if not current or not running:
            print(f"the local {args.nodes}-node cluster is not running")
            return 1
        print(f"local {args.nodes}-node cluster at {current.bootstrap_servers}, nodes running: {running}")
        return 0
    if args.action == "stop":
        if current:
            current.stop()
        print(f"local {args.nodes}-node cluster stopped")
        return 0
    print(f"starting a local {args.nodes}-node Kafka {settings.kafka_version} cluster...", file=sys.stderr)
    cluster = current or LocalCluster(home=settings.broker_home, workdir=workdir, size=args.nodes,
                                      kafka_version=settings.kafka_version, heap=settings.kafka_heap,
                                      secure=args.secure)
    cluster.start()
    if cluster.secure:
        secrets = cluster.node(1).secrets
        print(_exports(cluster.bootstrap_servers, cluster.client_security("admin"), secrets))
        print(f"# workers: {_exports(cluster.bootstrap_servers, cluster.client_security('stocksync'), secrets)}")
    else:
        print(cluster.bootstrap_servers)
    return 0


def _secure_broker(args: argparse.Namespace, settings: Settings) -> int:
    """`broker ... --secure`: a local broker with a SASL_SSL listener, its certificate and users made here."""
    from streams.dev.local_kafka import LocalKafka

    workdir = _workdir(settings, "secure")
    current = LocalKafka.from_state(settings.broker_home, workdir)
    running = current is not None and current.running()
    if args.action == "stop":
        if running and current is not None:
            current.stop()
        print("secured local Kafka stopped" if running else "secured local Kafka was not running")
        return 0
    if args.action == "status" and not running:
        print("secured local Kafka is not running")
        return 1
    broker = current if running and current is not None else LocalKafka(
        home=settings.broker_home, workdir=workdir, kafka_version=settings.kafka_version, heap=settings.kafka_heap,
        start_timeout_s=settings.broker_start_timeout_s, port=current.port if current else 0,
        controller_port=current.controller_port if current else 0, secure=True).start()
    # The operator's shell gets the admin (a super user: topics, the network, 'stocksync acl apply'); workers
    # connect as stocksync, which may do nothing until 'stocksync acl apply' has given it its ACLs.
    print(_exports(broker.bootstrap_servers, broker.client_security("admin"), broker.secrets))
    print(f"# workers: {_exports(broker.bootstrap_servers, broker.client_security('stocksync'), broker.secrets)}")
    return 0


def _exports(servers: str, security: KafkaSecurity, secrets: Path) -> str:
    return (f"export STOCKSYNC_BOOTSTRAP_SERVERS={servers} STOCKSYNC_SECURITY_PROTOCOL={security.protocol} "
            f"STOCKSYNC_SASL_MECHANISM={security.mechanism} STOCKSYNC_SASL_USERNAME={security.username} "
            f"STOCKSYNC_SASL_PASSWORD_FILE={secrets / f'{security.username}.password'} "
            f"STOCKSYNC_SSL_CA_FILE={security.ca_file}")


def run(args: argparse.Namespace, settings: Settings) -> int:
    from streams.dev.local_kafka import LocalKafka

    if args.nodes > 1:  # asked for by name: whatever cluster STOCKSYNC_BOOTSTRAP_SERVERS selects
        return _cluster(args, settings)
    if args.secure:
        return _secure_broker(args, settings)
    workdir = _workdir(settings)
    current = LocalKafka.from_state(settings.broker_home, workdir)
    running = current is not None and current.running()
    if args.action == "status":
        from streams.dev.cluster import running_local_broker

        found = running_local_broker(settings)
        if settings.bootstrap_servers:
            print(f"using the cluster at {settings.bootstrap_servers} (STOCKSYNC_/KAFKA_BOOTSTRAP_SERVERS)")
        elif found is not None:
            name, broker = found
            print(f"local Kafka {broker.kafka_version} running at {broker.bootstrap_servers} (pid {broker.pid})"
                  + (", started by 'stocksync demo'" if name == "demo" else ""))
        else:
            print("local Kafka is not running")
            return 1
        return 0
    if args.action == "stop":
        if running and current is not None:
            current.stop()
            print("local Kafka stopped")
        else:
            print("local Kafka was not running")
        return 0
    if settings.bootstrap_servers:
        print(f"not starting a local broker: STOCKSYNC_/KAFKA_BOOTSTRAP_SERVERS selects {settings.bootstrap_servers}")
        return 0
    if running and current is not None:
        print(current.bootstrap_servers)
        return 0
    print(f"starting local Kafka {settings.kafka_version} (first run fetches its jars with Maven)...",
          file=sys.stderr)
    # Started again, it keeps its ports and its data: running workers and clients reconnect.
    broker = LocalKafka(home=settings.broker_home, workdir=workdir, kafka_version=settings.kafka_version,
                        heap=settings.kafka_heap, start_timeout_s=settings.broker_start_timeout_s,
                        port=current.port if current else 0,
                        controller_port=current.controller_port if current else 0).start()
    print(broker.bootstrap_servers)
    return 0
