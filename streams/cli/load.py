"""`stocksync load`: a full stock snapshot (CSV: sku, location, on_hand) sent as counts, then what changed."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from streams.cli.arguments import as_of, iso, positive
from streams.cli.connection import connect
from streams.errors import ConfigError
from streams.settings import Settings


def add_parser(commands: Any) -> None:
    load = commands.add_parser("load", help="load a full stock snapshot (CSV: sku,location,on_hand) as counts",
                               description="Send every row of an ERP/WMS snapshot as a count of CHANNEL at the "
                               "snapshot's time, then report what changed (read from the ledger once the workers "
                               "have applied it). Plain or gzip CSV with a header naming sku, location and "
                               "on_hand. Idempotent: the event ids come from the rows.")
    load.add_argument("file", help="the snapshot (CSV, or CSV gzip)")
    load.add_argument("--channel", required=True, help="the channel whose counts these are (e.g. wms)")
    load.add_argument("--as-of", type=as_of, metavar="TIME",
                      help="when the snapshot was taken: ISO 8601 or epoch ms (default: the file's modification "
                           "time)")
    load.add_argument("--no-report", action="store_true", help="send, and do not wait for the workers")
    load.add_argument("--timeout", type=positive, default=3600.0, metavar="S",
                      help="how long to wait for the workers to apply everything (default 3600)")
    load.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from streams.channel import ChannelClient
    from streams.channel.snapshot import load_snapshot

    path = Path(args.file)
    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    taken = args.as_of if args.as_of is not None else int(path.stat().st_mtime * 1000)
    connection = connect(settings)
    network = connection.network_in_force("run 'stocksync network apply' first")
    if args.channel not in network.channels:
        raise ConfigError(f"--channel {args.channel!r} is not in the network (channels: "
                          f"{', '.join(sorted(network.channels))})")
    print(f"loading {path} as counts of {args.channel} as of {iso(taken)} (event ids from the rows: loading it "
          "again changes nothing)", file=sys.stderr)
    kafka = connection.kafka
    with ChannelClient(args.channel, kafka, settings=settings, linger_ms=20, max_batch=500) as client:
        result = load_snapshot(path, client, taken, network, kafka, settings.input_group, args.timeout,
                               report=not args.no_report)
    for line in result.lines() if not args.no_report else result.lines()[:1]:
        print(line)
    return 0
