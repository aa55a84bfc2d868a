"""`stocksync demo` (the main job end to end on a local Kafka) and `stocksync simulate` (a simulated retail
network driving running workers)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from streams.cli.arguments import non_negative, positive
from streams.cli.connection import connect
from streams.cli.worker import need_worker_extra
from streams.settings import Settings


def add_parsers(commands: Any) -> None:
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
    demo.set_defaults(handler=run_demo)

    simulate = commands.add_parser("simulate", help="drive the running workers with a simulated retail network",
                                   description="Stores with POS (one goes offline and uploads late), web shop and "
                                               "app orders as reservations that get paid, cancelled or expire, "
                                               "marketplaces, warehouse receipts, transfers, counts and returns. "
                                               "Seeded: the same seed sends the same movements.")
    simulate.add_argument("--network", metavar="FILE", help="network YAML (default: the network applied)")
    simulate.add_argument("--linger-ms", type=non_negative, default=20.0, metavar="MS",
                          help="how long a channel client packs movements before sending (default 20)")
    simulate.add_argument("--quiet", action="store_true", help="no progress lines")
    _simulation_options(simulate, duration=60.0)
    simulate.set_defaults(handler=run_simulate)


def _simulation_options(parser: argparse.ArgumentParser, duration: float) -> None:
    parser.add_argument("--seed", type=int, default=7, help="the same seed sends the same movements (default 7)")
    parser.add_argument("--rate", type=positive, default=40.0, metavar="N",
                        help="customer events per second across all channels (default 40)")
    parser.add_argument("--duration", type=positive, default=duration, metavar="S",
                        help=f"seconds to simulate (default {duration:g})")
    parser.add_argument("--skus", type=int, choices=range(1, 100_001), default=40, metavar="N",
                        help="how many SKUs (default 40; a few are busy, most are not)")


def run_demo(args: argparse.Namespace, settings: Settings) -> int:
    need_worker_extra("stocksync demo")
    from streams.dev.demo import DEMO_NETWORK, DemoOptions, run_demo

    return run_demo(settings, DemoOptions(workers=args.workers, network_file=Path(args.network or DEMO_NETWORK),
                                          seed=args.seed, rate=args.rate, duration_s=args.duration,
                                          skus=args.skus, view_port=args.view_port))


def run_simulate(args: argparse.Namespace, settings: Settings) -> int:
    from streams.channel import ChannelClient
    from streams.control.network import load_network_file
    from streams.dev.simulator import Simulator, print_progress

    connection = connect(settings)
    servers = connection.kafka
    if args.network:
        network = load_network_file(Path(args.network))
    else:
        network = connection.network_in_force("run 'stocksync network apply FILE' or pass --network")
    simulator = Simulator(network, lambda channel: ChannelClient(channel, servers, settings=settings,
                                                                 linger_ms=args.linger_ms),
                          seed=args.seed, rate=args.rate, duration_s=args.duration, skus=args.skus)
    stats = simulator.run(progress=None if args.quiet else print_progress)
    print(f"sent {stats.sent} movements ({stats.late_uploads} late POS uploads); reservations accepted "
          f"{stats.accepted}, refused {stats.refused}; follow-ups skipped {stats.skipped_follow_ups}")
    return 0
