"""The worker process around the faust app: faust's Worker without its terminal decorations (a spinner, "-INT-"
lines on Ctrl-C, a smiley when ready), with stocksync's log format, and one summary line when it stops."""

from __future__ import annotations

import logging
import signal
import time
from typing import Any

from faust.worker import Worker
from prometheus_client import REGISTRY

from streams.worker.ops.logs import use_format

log = logging.getLogger("stocksync.worker")


class WorkerProcess(Worker):
    def __init__(self, app: Any, log_format: str, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.spinner = None
        self.log_format = log_format
        self.started_at = time.monotonic()
        self.asked_to_stop = False  # Ctrl-C or SIGTERM: a clean stop, however it was asked for

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        use_format(logger, self.log_format)

    def _on_sigint(self) -> None:
        self.asked_to_stop = True
        self._flag_as_shutdown_by_signal()
        self._schedule_shutdown(signal.SIGINT)

    def _on_sigterm(self) -> None:
        self.asked_to_stop = True
        super()._on_sigterm()

    def _on_startup_end_spinner(self) -> None:
        pass  # bootstrap's announce_ready says when the worker is ready

    def _on_shutdown_immediately(self) -> None:
        pass

    def on_worker_shutdown(self) -> None:
        self._setproctitle("stopping")

    def stop_and_shutdown(self) -> None:
        super().stop_and_shutdown()
        ran, done = duration(time.monotonic() - self.started_at), what_was_done()
        if self.asked_to_stop:  # the same line whether Ctrl-C or SIGTERM asked: a clean stop is no warning
            log.info("stocksync worker stopped after %s: %s", ran, done)
        else:
            log.error("stocksync worker stopped by an error after %s: %s", ran, done)


def what_was_done() -> str:
    """This process's work, from its metrics: movements, dead letters, transactions."""
    def total(name: str, **labels: str) -> int:
        return int(sum(sample.value for metric in REGISTRY.collect() for sample in metric.samples
                       if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())))

    return (f"{total('stocksync_movements_total'):,} movements "
            f"({total('stocksync_movements_total', status='duplicate'):,} duplicates), "
            f"{total('stocksync_dead_letters_total'):,} dead letters, "
            f"{total('stocksync_transactions_total', result='committed'):,} transactions committed, "
            f"{total('stocksync_transactions_total', result='aborted'):,} aborted")


def duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"
