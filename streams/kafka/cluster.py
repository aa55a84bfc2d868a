"""The cluster the worker and the channel client talk to: the one the settings name, and how to authenticate to it.
Nothing here starts or finds a broker: the CLI and the tests choose a development broker (streams.dev.cluster)."""

from __future__ import annotations

from streams.errors import ConfigError
from streams.security import KafkaConnection
from streams.settings import Settings


def configured_servers(settings: Settings) -> str:
    """The bootstrap servers the settings name."""
    if settings.bootstrap_servers:
        return settings.bootstrap_servers
    raise ConfigError("no Kafka to talk to: set STOCKSYNC_BOOTSTRAP_SERVERS (or KAFKA_BOOTSTRAP_SERVERS), "
                      "or run 'stocksync broker start'")


def connect(settings: Settings) -> KafkaConnection:
    """The configured cluster, and how to authenticate to it."""
    return settings.kafka_connection(configured_servers(settings))
