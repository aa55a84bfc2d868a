"""`stocksync topics`: create the registry's topics idempotently, or list them."""

from __future__ import annotations

import argparse
from typing import Any

from streams.cli.connection import connect
from streams.control.admin import ensure_topics
from streams.kafka.topics import TopicRegistry
from streams.settings import Settings


def add_parser(commands: Any) -> None:
    topics = commands.add_parser("topics", help="create or list the registry's topics",
                                 description="Create every registered topic idempotently (reports a topic whose "
                                             "partitions or cleanup policy differ), or list them.")
    topics.add_argument("action", choices=["create", "list"])
    topics.add_argument("--channel", action="append", metavar="ID", help="also the topics of this channel "
                                                                           "(repeatable)")
    topics.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    specs = TopicRegistry(settings).all(args.channel or [])
    if args.action == "list":
        for spec in specs:
            print(f"{spec.name}\tkey={spec.key}\tvalue={spec.value_schema}\tpartitions={spec.partitions}\t"
                  + ",".join(f"{k}={v}" for k, v in spec.config.items()))
        return 0
    report = ensure_topics(connect(settings).admin, specs, settings.replication_factor)
    print(f"{len(report.created)} created, {len(report.existing)} already there and as registered")
    return 0
