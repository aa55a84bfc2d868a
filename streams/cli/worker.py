"""`stocksync worker`: run one stream worker in this process."""

from __future__ import annotations

import argparse
from typing import Any

from streams.cli.connection import kafka_of
from streams.settings import Settings


def add_parser(commands: Any) -> None:
    worker = commands.add_parser("worker", help="run a stream worker (faust)",
                                 description="Run one faust worker of the stocksync app; start several to share "
                                             "the partitions.")
    worker.add_argument("--loglevel", choices=["crit", "error", "warn", "info", "debug"],
                        help="default: STOCKSYNC_LOG_LEVEL (warn)")
    worker.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from streams.worker.runtime.main import run_worker

    run_worker(settings, kafka_of(settings), loglevel=args.loglevel or settings.log_level)
    return 0
