"""Runs one faust worker of the stocksync app in this process."""

from __future__ import annotations

from streams.app import create_app
from streams.settings import Settings


def run_worker(settings: Settings, loglevel: str = "warn") -> None:
    app = create_app(settings)
    from faust.worker import Worker

    Worker(app, loglevel=loglevel).execute_from_commandline()
