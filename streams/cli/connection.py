"""The one way a command reaches Kafka: the configured cluster, else the local broker `stocksync broker start`
runs (a development tool, loaded only then), with the topic registry, an admin client and the network in force."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from streams.control.admin import ensure_topics
from streams.control.network import read_network
from streams.domain import Network
from streams.errors import ConfigError
from streams.kafka import cluster
from streams.kafka.clients import AdminClient, new_admin
from streams.kafka.topics import TopicRegistry, TopicSpec
from streams.security import KafkaConnection
from streams.settings import Settings


def kafka_of(settings: Settings) -> KafkaConnection:
    """The configured cluster, else the local broker the CLI started."""
    if settings.bootstrap_servers:
        return cluster.connect(settings)
    from streams.dev.cluster import connect_or_local

    return connect_or_local(settings)


@dataclass
class Connection:
    settings: Settings
    kafka: KafkaConnection

    @cached_property
    def registry(self) -> TopicRegistry:
        return TopicRegistry(self.settings)

    @cached_property
    def admin(self) -> AdminClient:
        return new_admin(self.kafka)

    def ensure_topics(self, specs: list[TopicSpec]) -> None:
        ensure_topics(self.admin, specs, self.settings.replication_factor)

    def network_in_force(self, otherwise: str) -> Network:
        """The network applied last; `otherwise`: what to do when none is (the error says it)."""
        found = read_network(self.kafka, self.registry)
        if found is None:
            raise ConfigError(f"no network applied yet: {otherwise}")
        return found[0]


def connect(settings: Settings) -> Connection:
    return Connection(settings, kafka_of(settings))
