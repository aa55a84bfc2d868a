"""The `stocksync` parser, made of each command group's, and the one place a command's error becomes one line."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from importlib import metadata

from streams.cli import acl, broker, catalog, load, network, query, schemas, simulation, topics, worker
from streams.errors import StocksyncError
from streams.kafka.clients import KafkaException, explain_failure
from streams.settings import Settings, load_settings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stocksync",
        description="One live stock truth per SKU and location, streamed to every sales channel over Kafka. "
                    "Settings come from STOCKSYNC_* environment variables.")
    parser.add_argument("--version", action="version", version=f"stocksync {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in (broker, topics, schemas, worker, network, acl, catalog, load):
        group.add_parser(commands)
    simulation.add_parsers(commands)
    query.add_parser(commands)
    return parser


def _version() -> str:
    try:
        return metadata.version("stocksync")
    except metadata.PackageNotFoundError:  # run from a checkout that is not installed
        return "(not installed)"


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


def _kafka_failure(exc: KafkaException, settings: Settings) -> str:
    return f"Kafka at {settings.bootstrap_servers or 'the local broker'}: {explain_failure(exc)}"
