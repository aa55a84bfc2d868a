"""`stocksync worker`: run one stream worker in this process."""

from __future__ import annotations

import argparse
import importlib.util
from typing import Any

from streams.cli.connection import kafka_of
from streams.errors import ConfigError
from streams.settings import Settings

# What a worker imports that a channel's service does not install (pip install stocksync).
WORKER_MODULES = ("faust", "aiokafka", "aiohttp", "prometheus_client", "rocksdict")


def need_worker_extra(command: str) -> None:
    """A command that runs workers, on an install without the worker's extra: one line saying what to install."""
    missing = [name for name in WORKER_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        raise ConfigError(f"{command} runs workers, which need the worker extra: pip install \"stocksync[worker]\" "
                          f"({', '.join(missing)} not installed)")


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
    need_worker_extra("stocksync worker")
    from streams.worker.runtime.processes import process_count, run_processes

    count = process_count(args.processes or settings.worker_processes)
    servers = kafka_of(settings)  # a bad Kafka setting is told here, once, not by every process
    loglevel = args.loglevel or settings.log_level
    if count > 1:
        return run_processes(settings, count, loglevel)
    from streams.worker.runtime.main import run_worker

    run_worker(settings, servers, loglevel=loglevel)
    return 0
