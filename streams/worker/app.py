"""The faust application: configured from Settings; the worker registers its table, timers and pages on it
(streams.worker.bootstrap)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import faust

from streams.kafka.cluster import bootstrap_servers
from streams.settings import Settings


@dataclass
class WorkerState:
    """What the worker's timers and pages share."""

    ready: bool = False  # the table is recovered: /ready answers 200 (unless rebalancing)
    rebuild_expiries: bool = True  # partitions were assigned: index their open holds (and republish held ATS)


class StocksyncApp(faust.App):
    """faust's App, plus the worker's state (`worker_state`: faust's Service has a `state` of its own) and
    `before_stop`: coroutines run when the app stops, before faust stops its consumer and tables (the input
    reader finishes its batch there)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.worker_state = WorkerState()
        self.before_stop: list[Callable[[], Awaitable[None]]] = []

    async def on_stop(self) -> None:
        for hook in self.before_stop:
            await hook()
        await super().on_stop()

    @property
    def recovered(self) -> asyncio.Event:
        """Set once faust has recovered this worker's table partitions."""
        event: asyncio.Event = self.tables.recovery.completed  # type: ignore[attr-defined]
        return event


def create_app(settings: Settings, servers: str | None = None) -> StocksyncApp:
    """A faust App wired to the configured cluster, with the settings the streaming rules ask for."""
    servers = servers or bootstrap_servers(settings)
    return StocksyncApp(
        settings.app_id,
        broker=",".join(f"kafka://{server}" for server in servers.split(",")),
        store=settings.store,
        datadir=str(settings.data_dir),
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        # Topics come from the registry (stocksync topics create); faust only declares its changelogs.
        topic_allow_declare=True,
        broker_session_timeout=settings.broker_session_timeout_s,
        broker_heartbeat_interval=min(3.0, settings.broker_session_timeout_s / 3),
        producer_acks=-1,  # acks=all; aiokafka's default partitioner is murmur2, like Kafka's Java client
        web_port=settings.web_port,
        web_host=settings.web_host,
        web_bind=settings.web_host,  # faust binds every interface unless told
        canonical_url=settings.advertised_url or f"http://{settings.web_host}:{settings.web_port}",
        consumer_auto_offset_reset="earliest",
    )
