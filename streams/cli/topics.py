"""`stocksync topics`: create the registry's topics idempotently, or list them with what the cluster holds."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from typing import Any

from streams.cli.connection import connect
from streams.control.admin import ensure_topics
from streams.kafka.topics import CHANNEL_ID, TopicRegistry
from streams.settings import Settings


def add_parser(commands: Any) -> None:
    topics = commands.add_parser("topics", help="create the registry's topics, or list what the cluster holds",
                                 description="create: every registered topic, idempotently (reports a topic whose "
                                             "partitions or cleanup policy differ). list: every registered topic "
                                             "(the core ones and those of each channel the cluster has topics for) "
                                             "with what the cluster holds of it, and topics under this "
                                             "deployment's prefix that the registry does not name.")
    topics.add_argument("action", choices=["create", "list"])
    topics.add_argument("--channel", action="append", metavar="ID", help="also the topics of this channel "
                                                                           "(repeatable)")
    topics.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    registry = TopicRegistry(settings)
    specs = registry.all(args.channel or [])  # a bad channel id is refused before Kafka is asked
    connection = connect(settings)
    if args.action == "create":
        report = ensure_topics(connection.admin, specs, settings.replication_factor)
        print(f"{len(report.created)} created, {len(report.existing)} already there and as registered")
        return 0
    held = connection.admin.list_topics(timeout=15).topics
    channels = sorted(set(args.channel or []) | channels_in(registry, held))
    registered = registry.all(channels)
    for spec in registered:
        found = held.get(spec.name)
        there = f"in the cluster: {len(found.partitions)} partitions" if found is not None else "not in the cluster"
        print(f"{spec.name}\tkey={spec.key}\tvalue={spec.value_schema}\tpartitions={spec.partitions}\t"
              + ",".join(f"{k}={v}" for k, v in spec.config.items()) + f"\t{there}")
    names = {spec.name for spec in registered}
    for name in sorted(n for n in held if n.startswith(registry.prefix + ".") and n not in names):
        print(f"{name}\tnot in the registry: {len(held[name].partitions)} partitions")
    print(f"# {sum(spec.name in held for spec in registered)} of {len(registered)} registered topics in the cluster"
          f" ({len(channels)} channels)", file=sys.stderr)
    return 0


def channels_in(registry: TopicRegistry, topics: Iterable[str]) -> set[str]:
    """The channels the cluster holds topics of (`<prefix>.channel.<id>.<kind>`)."""
    start = f"{registry.prefix}.channel."
    found = set()
    for name in topics:
        if name.startswith(start):
            channel, _, kind = name[len(start):].rpartition(".")
            if kind in ("sales", "restock", "replies", "ats") and CHANNEL_ID.match(channel):
                found.add(channel)
    return found
