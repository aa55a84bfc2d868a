"""`stocksync worker`: run one stream worker in this process."""

from __future__ import annotations

import argparse
from typing import Any

from streams.cli.connection import kafka_of
from streams.settings import Settings


def add_parser(commands: Any) -> None:
    worker = commands.add_parser("worker", help="run stream workers (faust)",
                                 description="Run workers of the stocksync app (one per process); start them on "
                                             "several hosts to share the partitions.")
    worker.add_argument("--loglevel", choices=["crit", "error", "warn", "info", "debug"],
                        help="default: STOCKSYNC_LOG_LEVEL (warn)")
    worker.add_argument("--processes", metavar="N|auto",
                        help="worker processes on this host (auto: one per core), under one parent that answers on "
                             "the web port for all; default: STOCKSYNC_WORKER_PROCESSES (1)")
    worker.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from streams.worker.runtime.processes import process_count, run_processes

    count = process_count(args.processes or settings.worker_processes)
    servers = kafka_of(settings)  # a bad Kafka setting is told here, once, not by every process
    loglevel = args.loglevel or settings.log_level
    if count > 1:
        return run_processes(settings, count, loglevel)
    from streams.worker.runtime.main import run_worker

    run_worker(settings, servers, loglevel=loglevel)
    return 0
