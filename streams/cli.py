"""The `stocksync` command line: broker, topics, worker; every error is one line naming what is wrong."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from streams.errors import ConfigError, StocksyncError
from streams.kafka import cluster as kafka_cluster
from streams.kafka.clients import KafkaException
from streams.security import KafkaConnection, KafkaSecurity
from streams.settings import Settings, load_settings


def _cluster(args: argparse.Namespace, settings: Settings) -> int:
    """`broker ... --nodes N` (N > 1): a local KRaft cluster of N nodes, for fault tests."""
    from streams.dev.cluster import local_broker_dir
    from streams.dev.local_kafka import LocalCluster

    workdir = local_broker_dir(settings, f"cluster-{args.nodes}{'-secure' if args.secure else ''}")
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
    from streams.dev.cluster import local_broker_dir
    from streams.dev.local_kafka import LocalKafka

    workdir = local_broker_dir(settings, "secure")
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


def _broker(args: argparse.Namespace, settings: Settings) -> int:
    from streams.dev.cluster import local_broker_dir
    from streams.dev.local_kafka import LocalKafka

    if args.nodes > 1:  # asked for by name: whatever cluster STOCKSYNC_BOOTSTRAP_SERVERS selects
        return _cluster(args, settings)
    if args.secure:
        return _secure_broker(args, settings)
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
    # Started again, it keeps its ports and its data: running workers and clients reconnect.
    broker = LocalKafka(home=settings.broker_home, workdir=workdir, kafka_version=settings.kafka_version,
                        heap=settings.kafka_heap, start_timeout_s=settings.broker_start_timeout_s,
                        port=current.port if current else 0,
                        controller_port=current.controller_port if current else 0).start()
    print(broker.bootstrap_servers)
    return 0


def _topics(args: argparse.Namespace, settings: Settings) -> int:
    from streams.control.admin import ensure_topics
    from streams.kafka.clients import new_admin
    from streams.kafka.topics import TopicRegistry

    registry = TopicRegistry(settings)
    specs = registry.all(args.channel or [])
    if args.action == "list":
        for spec in specs:
            print(f"{spec.name}\tkey={spec.key}\tvalue={spec.value_schema}\tpartitions={spec.partitions}\t"
                  + ",".join(f"{k}={v}" for k, v in spec.config.items()))
        return 0
    report = ensure_topics(new_admin(connect(settings)), specs, settings.replication_factor)
    print(f"{len(report.created)} created, {len(report.existing)} already there and as registered")
    return 0


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    from streams.worker.runtime.main import run_worker

    run_worker(settings, connect(settings), loglevel=args.loglevel or settings.log_level)
    return 0


def _network(args: argparse.Namespace, settings: Settings) -> int:
    import yaml

    from streams.control.admin import ensure_topics
    from streams.control.network import load_network_file, publish_network, read_network
    from streams.kafka.clients import new_admin
    from streams.kafka.topics import TopicRegistry

    registry = TopicRegistry(settings)
    if args.action == "check":
        network = load_network_file(Path(args.file))
        print(f"{args.file}: valid ({len(network.locations)} locations, {len(network.channels)} channels)")
        return 0
    servers = connect(settings)
    if args.action == "show":
        found = read_network(servers, registry)
        if found is None:
            print("no network applied yet", file=sys.stderr)
            return 1
        print(f"# network version {found[1]}")
        print(yaml.safe_dump(found[0].to_dict(), sort_keys=False), end="")
        return 0
    network = load_network_file(Path(args.file))
    ensure_topics(new_admin(servers), registry.all(network.channels), settings.replication_factor)
    version = publish_network(servers, registry, network)
    print(f"network version {version} applied: {len(network.locations)} locations, "
          f"{len(network.channels)} channels")
    return 0


def _acl(args: argparse.Namespace, settings: Settings) -> int:
    from streams.control import acls
    from streams.control.network import load_network_file, read_network
    from streams.kafka.clients import new_admin
    from streams.kafka.topics import TopicRegistry

    registry = TopicRegistry(settings)
    principals = acls.Principals(settings.workers_principal, settings.admin_principal, settings.channel_principal)
    servers = connect(settings)
    admin = new_admin(servers)
    if args.action == "show":
        found = acls.in_force(admin, registry, principals)
        for grant in found.grants:
            print(grant)
        for line in found.foreign:
            print(f"# not managed by stocksync: {line}")
        print(f"# {len(found.grants)} ACLs on {registry.prefix}.* and {settings.app_id}*", file=sys.stderr)
        return 0
    if args.file:
        channels = load_network_file(Path(args.file)).channels
    else:
        in_force = read_network(servers, registry)
        if in_force is None:
            raise ConfigError("no network applied yet: give the network FILE, or run 'stocksync network apply' first")
        channels = in_force[0].channels
    done = acls.changes(admin, registry, channels, principals) if args.dry_run else \
        acls.apply(admin, registry, channels, principals, Path(args.passwords) if args.passwords else None)
    for grant in done.added:
        print(f"+ {grant}")
    for grant in done.removed:
        print(f"- {grant}")
    for user in done.users_created:
        print(f"user {user} created (SCRAM-SHA-512 and -256), its password in {Path(args.passwords) / user}.password")
    for user in done.users_deleted:
        print(f"user {user} deleted")
    if args.dry_run:
        return 0
    print(f"{len(done.added)} ACLs added, {len(done.removed)} removed, for {len(channels)} channels",
          file=sys.stderr)
    return 0


def _catalog(args: argparse.Namespace, settings: Settings) -> int:
    from streams.control.admin import ensure_topics
    from streams.control.catalog import apply_catalog, load_catalog_file, read_catalog
    from streams.control.network import read_network
    from streams.kafka.clients import new_admin
    from streams.kafka.topics import TopicRegistry

    registry = TopicRegistry(settings)
    kafka = connect(settings)
    if args.action == "show":
        entries = sorted(read_catalog(kafka, registry).values(), key=lambda e: (e.channel, e.alias))
        for entry in entries:
            if args.channel in (None, entry.channel):
                print(f"{entry.channel}\t{entry.alias}\t{entry.sku}")
        print(f"# {len(entries)} aliases in force", file=sys.stderr)
        return 0
    in_force = read_network(kafka, registry)
    if in_force is None:
        raise ConfigError("no network applied yet: run 'stocksync network apply' first (aliases name its channels)")
    entries = load_catalog_file(Path(args.file), in_force[0])
    ensure_topics(new_admin(kafka), [registry.catalog], settings.replication_factor)
    changed, removed, unchanged = apply_catalog(kafka, registry, entries)
    print(f"catalog applied: {changed} aliases added or changed, {removed} removed, {unchanged} unchanged")
    return 0


def _load(args: argparse.Namespace, settings: Settings) -> int:
    from streams.channel import ChannelClient
    from streams.channel.snapshot import load_snapshot
    from streams.control.network import read_network
    from streams.kafka.topics import TopicRegistry

    path = Path(args.file)
    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    as_of = args.as_of if args.as_of is not None else int(path.stat().st_mtime * 1000)
    kafka = connect(settings)
    in_force = read_network(kafka, TopicRegistry(settings))
    if in_force is None:
        raise ConfigError("no network applied yet: run 'stocksync network apply' first")
    network = in_force[0]
    if args.channel not in network.channels:
        raise ConfigError(f"--channel {args.channel!r} is not in the network (channels: "
                          f"{', '.join(sorted(network.channels))})")
    print(f"loading {path} as counts of {args.channel} as of {_iso(as_of)} (event ids from the rows: loading it "
          "again changes nothing)", file=sys.stderr)
    with ChannelClient(args.channel, kafka, settings=settings, linger_ms=20, max_batch=500) as client:
        result = load_snapshot(path, client, as_of, network, kafka, settings.input_group, args.timeout,
                               report=not args.no_report)
    for line in result.lines() if not args.no_report else result.lines()[:1]:
        print(line)
    return 0


def _as_of(text: str) -> int:
    """An epoch in milliseconds, or an ISO 8601 time (with its offset, or UTC)."""
    import datetime

    if text.isdigit():
        return int(text)
    try:
        moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither epoch milliseconds nor an ISO 8601 time "
                                         "(e.g. 2026-11-26T06:00:00Z)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return int(moment.timestamp() * 1000)


def _iso(epoch_ms: int) -> str:
    import datetime

    return datetime.datetime.fromtimestamp(epoch_ms / 1000, datetime.UTC).isoformat().replace("+00:00", "Z")


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    from streams.dev.demo import DEMO_NETWORK, DemoOptions, run_demo

    return run_demo(settings, DemoOptions(workers=args.workers, network_file=Path(args.network or DEMO_NETWORK),
                                          seed=args.seed, rate=args.rate, duration_s=args.duration,
                                          skus=args.skus, view_port=args.view_port))


def _simulate(args: argparse.Namespace, settings: Settings) -> int:
    from streams.channel import ChannelClient
    from streams.control.network import load_network_file, read_network
    from streams.dev.simulator import Simulator, print_progress
    from streams.kafka.topics import TopicRegistry

    servers = connect(settings)
    if args.network:
        network = load_network_file(Path(args.network))
    else:
        found = read_network(servers, TopicRegistry(settings))
        if found is None:
            raise ConfigError("no network applied yet: run 'stocksync network apply FILE' or pass --network")
        network = found[0]
    simulator = Simulator(network, lambda channel: ChannelClient(channel, servers, settings=settings,
                                                                 linger_ms=args.linger_ms),
                          seed=args.seed, rate=args.rate, duration_s=args.duration, skus=args.skus)
    stats = simulator.run(progress=None if args.quiet else print_progress)
    print(f"sent {stats.sent} movements ({stats.late_uploads} late POS uploads); reservations accepted "
          f"{stats.accepted}, refused {stats.refused}; follow-ups skipped {stats.skipped_follow_ups}")
    return 0


def _query(args: argparse.Namespace, settings: Settings) -> int:
    import json
    import urllib.error
    import urllib.parse
    import urllib.request

    access = settings.api_access()
    scheme = "https" if access.cert_file else "http"
    base = (args.url or settings.advertised_url or f"{scheme}://127.0.0.1:{settings.web_port}").rstrip("/")
    quote = urllib.parse.quote
    if args.what == "positions":
        path = f"/skus/{quote(args.sku, safe='')}/positions"
        if args.location:
            path += f"/{quote(args.location, safe='')}"
    elif args.what == "ats":
        path = f"/channels/{quote(args.channel, safe='')}/ats/{quote(args.sku, safe='')}"
    else:
        params = {"channel": args.channel, "quantity": args.quantity, "lat": args.lat, "lon": args.lon,
                  "mode": args.mode}
        path = f"/skus/{quote(args.sku, safe='')}/sourcing?{urllib.parse.urlencode(params)}"
    try:
        request = urllib.request.Request(base + path, headers=access.headers())
        context = access.client_context() if base.startswith("https:") else None
        with urllib.request.urlopen(request, timeout=15, context=context) as response:
            print(json.dumps(json.loads(response.read()), indent=2))
            return 0
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read()).get("error", exc.reason)
        except ValueError:
            message = exc.reason
        raise ConfigError(f"query {args.what}: {message} (HTTP {exc.code})") from None
    except (urllib.error.URLError, OSError) as exc:
        raise ConfigError(f"query: no worker answers at {base} ({getattr(exc, 'reason', exc)}); is one "
                          "running? (--url or STOCKSYNC_WEB_PORT)") from None


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def _simulation_options(parser: argparse.ArgumentParser, duration: float) -> None:
    parser.add_argument("--seed", type=int, default=7, help="the same seed sends the same movements (default 7)")
    parser.add_argument("--rate", type=_positive, default=40.0, metavar="N",
                        help="customer events per second across all channels (default 40)")
    parser.add_argument("--duration", type=_positive, default=duration, metavar="S",
                        help=f"seconds to simulate (default {duration:g})")
    parser.add_argument("--skus", type=int, choices=range(1, 100_001), default=40, metavar="N",
                        help="how many SKUs (default 40; a few are busy, most are not)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stocksync",
        description="One live stock truth per SKU and location, streamed to every sales channel over Kafka. "
                    "Settings come from STOCKSYNC_* environment variables.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

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

    acl = commands.add_parser("acl", help="least-privilege ACLs (and channel users) derived from the network",
                              description="apply: make the cluster's ACLs on this deployment's topics, groups "
                              "and transactional ids exactly those the network needs (a channel writes only its "
                              "sales and restock topics and reads only its ATS feed and replies); ACLs of channels "
                              "no longer in the network are removed. show: the ACLs in force.")
    acl.add_argument("action", choices=["apply", "show"])
    acl.add_argument("file", nargs="?", help="the network YAML (default: the network in force)")
    acl.add_argument("--passwords", metavar="DIR", help="also create a SCRAM user for each channel that has none "
                     "(its password in DIR/<user>.password) and delete those of removed channels")
    acl.add_argument("--dry-run", action="store_true", help="print what would be added (+) and removed (-)")
    acl.set_defaults(handler=_acl)

    catalog = commands.add_parser("catalog", help="apply or show the aliases channels know products by",
                                  description="apply FILE: make the catalog exactly the aliases of FILE (CSV with a "
                                  "header channel,alias,sku, or YAML: a list of {channel, alias, sku}); channel * "
                                  "is every channel. Every worker follows it live. show: the aliases in force.")
    catalog.add_argument("action", choices=["apply", "show"])
    catalog.add_argument("file", nargs="?", help="the catalog (apply)")
    catalog.add_argument("--channel", help="show only this channel's aliases")
    catalog.set_defaults(handler=_catalog)

    load = commands.add_parser("load", help="load a full stock snapshot (CSV: sku,location,on_hand) as counts",
                               description="Send every row of an ERP/WMS snapshot as a count of CHANNEL at the "
                               "snapshot's time, then report what changed (read from the ledger once the workers "
                               "have applied it). Plain or gzip CSV with a header naming sku, location and "
                               "on_hand. Idempotent: the event ids come from the rows.")
    load.add_argument("file", help="the snapshot (CSV, or CSV gzip)")
    load.add_argument("--channel", required=True, help="the channel whose counts these are (e.g. wms)")
    load.add_argument("--as-of", type=_as_of, metavar="TIME",
                      help="when the snapshot was taken: ISO 8601 or epoch ms (default: the file's modification "
                           "time)")
    load.add_argument("--no-report", action="store_true", help="send, and do not wait for the workers")
    load.add_argument("--timeout", type=_positive, default=3600.0, metavar="S",
                      help="how long to wait for the workers to apply everything (default 3600)")
    load.set_defaults(handler=_load)

    demo = commands.add_parser("demo", help="run the main job end to end on a local Kafka",
                               description="Start (or reuse) a Kafka, create the topics, apply the network, run "
                                           "stream workers and the simulator, and show stock moving live until "
                                           "Ctrl-C, which stops everything it started.")
    demo.add_argument("--workers", type=int, default=2, choices=range(1, 9), metavar="N",
                      help="how many workers share the partitions (1-8, default 2)")
    demo.add_argument("--network", metavar="FILE", help="network YAML to apply (default deploy/network.yaml)")
    demo.add_argument("--view-port", type=int, choices=range(1, 65536), default=6060, metavar="PORT",
                      help="port of the live web page on 127.0.0.1 (default 6060)")
    _simulation_options(demo, duration=3600.0)
    demo.set_defaults(handler=_demo)

    simulate = commands.add_parser("simulate", help="drive the running workers with a simulated retail network",
                                   description="Stores with POS (one goes offline and uploads late), web shop and "
                                               "app orders as reservations that get paid, cancelled or expire, "
                                               "marketplaces, warehouse receipts, transfers, counts and returns. "
                                               "Seeded: the same seed sends the same movements.")
    simulate.add_argument("--network", metavar="FILE", help="network YAML (default: the network applied)")
    simulate.add_argument("--linger-ms", type=_non_negative, default=20.0, metavar="MS",
                          help="how long a channel client packs movements before sending (default 20)")
    simulate.add_argument("--quiet", action="store_true", help="no progress lines")
    _simulation_options(simulate, duration=60.0)
    simulate.set_defaults(handler=_simulate)

    query = commands.add_parser("query", help="ask a worker's query API (any worker: it routes by SKU)",
                                description="Positions, a channel's available-to-sell, or a sourcing plan, as "
                                            "JSON from a running worker.")
    query.add_argument("--url", help="a worker's API (default http://127.0.0.1:STOCKSYNC_WEB_PORT)")
    what = query.add_subparsers(dest="what", required=True, metavar="WHAT")
    positions = what.add_parser("positions", help="a SKU's positions, or one position",
                                description="Every location's figures for a SKU, or one location's.")
    positions.add_argument("sku")
    positions.add_argument("location", nargs="?")
    ats = what.add_parser("ats", help="a channel's available-to-sell for a SKU",
                          description="What the channel may sell of the SKU now.")
    ats.add_argument("channel")
    ats.add_argument("sku")
    source = what.add_parser("source", help="where to fill an order line from",
                             description="A ranked fulfilment plan for an order line and a customer position, "
                                         "split across locations when one cannot fill it.")
    source.add_argument("sku")
    source.add_argument("--channel", required=True)
    source.add_argument("--quantity", type=int, required=True)
    source.add_argument("--lat", type=float, required=True, help="customer latitude")
    source.add_argument("--lon", type=float, required=True, help="customer longitude")
    source.add_argument("--mode", choices=["ship", "pickup"], default="ship")
    query.set_defaults(handler=_query)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "network" and args.action in ("apply", "check") and not args.file:
        parser.error(f"network {args.action} needs a FILE")
    if args.command == "catalog" and args.action == "apply" and not args.file:
        parser.error("catalog apply needs a FILE")
    if args.command not in ("worker", "demo", "simulate"):
        # A one-shot command says what went wrong in one line (explain_failure); librdkafka's retries would repeat
        # it on every attempt.
        logging.getLogger("librdkafka").setLevel(logging.CRITICAL)
    try:
        settings = load_settings()
        return int(args.handler(args, settings))
    except StocksyncError as exc:
        print(f"stocksync: error: {exc}", file=sys.stderr)
        return 2
    except KafkaException as exc:  # Kafka unreachable, or refusing us: one line, with what to fix
        print(f"stocksync: error: {_kafka_failure(exc, settings)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def connect(settings: Settings) -> KafkaConnection:
    """The configured cluster, else the local broker the CLI started (loaded only then: a development tool)."""
    if settings.bootstrap_servers:
        return kafka_cluster.connect(settings)
    from streams.dev.cluster import connect_or_local

    return connect_or_local(settings)


def _kafka_failure(exc: KafkaException, settings: Settings) -> str:
    from streams.kafka.clients import explain_failure

    return f"Kafka at {settings.bootstrap_servers or 'the local broker'}: {explain_failure(exc)}"


if __name__ == "__main__":
    sys.exit(main())
