"""The faust application: configured from Settings; agents and tables register on it (streams.agents)."""

from __future__ import annotations

import faust

from streams.broker.select import bootstrap_servers
from streams.settings import Settings


def create_app(settings: Settings, servers: str | None = None) -> faust.App:
    """A faust App wired to the configured cluster, with the settings the streaming rules ask for."""
    servers = servers or bootstrap_servers(settings)
    return faust.App(
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
        canonical_url=settings.advertised_url or f"http://{settings.web_host}:{settings.web_port}",
        consumer_auto_offset_reset="earliest",
    )
