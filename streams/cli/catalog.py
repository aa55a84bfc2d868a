"""`stocksync catalog`: apply or show the aliases channels know products by."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from streams.cli.connection import connect
from streams.control.catalog import apply_catalog, load_catalog_file, read_catalog
from streams.settings import Settings


def add_parser(commands: Any) -> None:
    catalog = commands.add_parser("catalog", help="apply or show the aliases channels know products by",
                                  description="apply FILE: make the catalog exactly the aliases of FILE (CSV with a "
                                  "header channel,alias,sku, or YAML: a list of {channel, alias, sku}); channel * "
                                  "is every channel. Every worker follows it live. show: the aliases in force.")
    catalog.add_argument("action", choices=["apply", "show"])
    catalog.add_argument("file", nargs="?", help="the catalog (apply)")
    catalog.add_argument("--channel", help="show only this channel's aliases")
    catalog.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    connection = connect(settings)
    if args.action == "show":
        entries = sorted(read_catalog(connection.kafka, connection.registry).values(),
                         key=lambda e: (e.channel, e.alias))
        for entry in entries:
            if args.channel in (None, entry.channel):
                print(f"{entry.channel}\t{entry.alias}\t{entry.sku}")
        print(f"# {len(entries)} aliases in force", file=sys.stderr)
        return 0
    network = connection.network_in_force("run 'stocksync network apply' first (aliases name its channels)")
    entries = load_catalog_file(Path(args.file), network)
    connection.ensure_topics([connection.registry.catalog])
    changed, removed, unchanged = apply_catalog(connection.kafka, connection.registry, entries)
    print(f"catalog applied: {changed} aliases added or changed, {removed} removed, {unchanged} unchanged")
    return 0
