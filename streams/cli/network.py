"""`stocksync network`: check, apply or show the retail network (YAML)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from streams.cli.connection import connect
from streams.control.network import load_network_file, publish_network, read_network
from streams.settings import Settings


def add_parser(commands: Any) -> None:
    network = commands.add_parser("network", help="apply, check or show the retail network (YAML)",
                                  description="The network (locations with coordinates and flags; channels with "
                                              "their locations, buffer and exclusions) is data: 'apply' validates "
                                              "a YAML file, creates the topics of its channels and publishes it; "
                                              "every worker follows it live.")
    network.add_argument("action", choices=["apply", "check", "show"])
    network.add_argument("file", nargs="?", help="the network YAML file (apply, check)")
    network.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.action == "check":
        network = load_network_file(Path(args.file))
        print(f"{args.file}: valid ({len(network.locations)} locations, {len(network.channels)} channels)")
        return 0
    connection = connect(settings)
    if args.action == "show":
        found = read_network(connection.kafka, connection.registry)
        if found is None:
            print("no network applied yet", file=sys.stderr)
            return 1
        print(f"# network version {found[1]}")
        print(yaml.safe_dump(found[0].to_dict(), sort_keys=False), end="")
        return 0
    network = load_network_file(Path(args.file))
    connection.ensure_topics(connection.registry.all(network.channels))
    version = publish_network(connection.kafka, connection.registry, network)
    print(f"network version {version} applied: {len(network.locations)} locations, "
          f"{len(network.channels)} channels")
    return 0
