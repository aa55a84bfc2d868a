"""The `stocksync` command line: broker, topics, worker; every error is one line naming what is wrong."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from streams.errors import StocksyncError
from streams.settings import Settings, load_settings


def _broker(args: argparse.Namespace, settings: Settings) -> int:
    from streams.broker.local import LocalKafka
    from streams.broker.select import local_broker_dir

    workdir = local_broker_dir(settings)
    current = LocalKafka.from_state(settings.broker_home, workdir)
    running = current is not None and current.running()
    if args.action == "status":
        if settings.bootstrap_servers:
            print(f"using the cluster at {settings.bootstrap_servers} (STOCKSYNC_/KAFKA_BOOTSTRAP_SERVERS)")
        elif running and current is not None:
            print(f"local Kafka {current.kafka_version} running at {current.bootstrap_servers} (pid {current.pid})")
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
    broker = LocalKafka(home=settings.broker_home, workdir=workdir, kafka_version=settings.kafka_version,
                        heap=settings.kafka_heap, start_timeout_s=settings.broker_start_timeout_s).start()
    print(broker.bootstrap_servers)
    return 0


def _topics(args: argparse.Namespace, settings: Settings) -> int:
    from streams.admin import admin_client, ensure_topics
    from streams.broker.select import bootstrap_servers
    from streams.topics import TopicRegistry

    registry = TopicRegistry(settings)
    specs = registry.all(args.channel or [])
    if args.action == "list":
        for spec in specs:
            print(f"{spec.name}\tkey={spec.key}\tvalue={spec.value_schema}\tpartitions={spec.partitions}\t"
                  + ",".join(f"{k}={v}" for k, v in spec.config.items()))
        return 0
    report = ensure_topics(admin_client(bootstrap_servers(settings)), specs, settings.replication_factor)
    print(f"{len(report.created)} created, {len(report.existing)} already there and as registered")
    return 0


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    from streams.worker import run_worker

    run_worker(settings, loglevel=args.loglevel or settings.log_level)
    return 0


def _network(args: argparse.Namespace, settings: Settings) -> int:
    from pathlib import Path

    import yaml

    from streams.admin import admin_client, ensure_topics
    from streams.broker.select import bootstrap_servers
    from streams.network_config import load_network_file, publish_network, read_network
    from streams.topics import TopicRegistry

    registry = TopicRegistry(settings)
    if args.action == "check":
        network = load_network_file(Path(args.file))
        print(f"{args.file}: valid ({len(network.locations)} locations, {len(network.channels)} channels)")
        return 0
    servers = bootstrap_servers(settings)
    if args.action == "show":
        found = read_network(servers, registry)
        if found is None:
            print("no network applied yet", file=sys.stderr)
            return 1
        print(f"# network version {found[1]}")
        print(yaml.safe_dump(found[0].to_dict(), sort_keys=False), end="")
        return 0
    network = load_network_file(Path(args.file))
    ensure_topics(admin_client(servers), registry.all(network.channels), settings.replication_factor)
    version = publish_network(servers, registry, network)
    print(f"network version {version} applied: {len(network.locations)} locations, "
          f"{len(network.channels)} channels")
    return 0


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    from streams.demo import run_demo

    from pathlib import Path

    return run_demo(settings, workers=args.workers, network_file=Path(args.network)) if args.network else \
        run_demo(settings, workers=args.workers)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stocksync",
        description="One live stock truth per SKU and location, streamed to every sales channel over Kafka. "
                    "Settings come from STOCKSYNC_* environment variables.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    broker = commands.add_parser("broker", help="run a local single-node Kafka from Apache Kafka's jars",
                                 description="Start, stop or inspect the local Kafka 4.x (KRaft) broker. Its jars "
                                             "are fetched once with Maven into STOCKSYNC_CACHE_DIR; needs Java 17+.")
    broker.add_argument("action", choices=["start", "stop", "status"])
    broker.set_defaults(handler=_broker)

    topics = commands.add_parser("topics", help="create or list the registry's topics",
                                 description="Create every registered topic idempotently (reports a topic whose "
                                             "partitions or cleanup policy differ), or list them.")
    topics.add_argument("action", choices=["create", "list"])
    topics.add_argument("--channel", action="append", metavar="ID", help="also the topics of this channel "
                                                                           "(repeatable)")
    topics.set_defaults(handler=_topics)

    worker = commands.add_parser("worker", help="run a stream worker (faust)",
                                 description="Run one faust worker of the stocksync app; start several to share "
                                             "the partitions.")
    worker.add_argument("--loglevel", choices=["crit", "error", "warn", "info", "debug"],
                        help="default: STOCKSYNC_LOG_LEVEL (warn)")
    worker.set_defaults(handler=_worker)

    network = commands.add_parser("network", help="apply, check or show the retail network (YAML)",
                                  description="The network (locations with coordinates and flags; channels with "
                                              "their locations, buffer and exclusions) is data: 'apply' validates "
                                              "a YAML file, creates the topics of its channels and publishes it; "
                                              "every worker follows it live.")
    network.add_argument("action", choices=["apply", "check", "show"])
    network.add_argument("file", nargs="?", help="the network YAML file (apply, check)")
    network.set_defaults(handler=_network)

    demo = commands.add_parser("demo", help="run the main job end to end on a local Kafka",
                               description="Start (or reuse) a Kafka, create the demo channels' topics and run "
                                           "stream workers until Ctrl-C, which stops everything it started.")
    demo.add_argument("--workers", type=int, default=2, choices=range(1, 9), metavar="N",
                      help="how many workers share the partitions (1-8, default 2)")
    demo.add_argument("--network", metavar="FILE", help="network YAML to apply (default deploy/network.yaml)")
    demo.set_defaults(handler=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "network" and args.action in ("apply", "check") and not args.file:
        parser.error(f"network {args.action} needs a FILE")
    try:
        return int(args.handler(args, load_settings()))
    except StocksyncError as exc:
        print(f"stocksync: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
